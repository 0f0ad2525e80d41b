"""Serves every SavedModel under a folder with TensorFlow Serving's REST API.

  python tools/serve.py --model_base_path=models --rest_api_port=8501 [--host=127.0.0.1]

models/ holds one folder per model, each with integer version folders (as written by
tagnet/export.py and translate/export.py): models/NAME/<version>/saved_model.pb. The newest
version is served; a version added later is picked up on the next request, without a restart.
Without --model_base_path it serves the models the packages ship (the example tagger as
`tagger`), exported once into ~/.cache/anime-face-kit.

  curl localhost:8501/v1/models/NAME                       status
  curl localhost:8501/v1/models/NAME/metadata              signatures
  curl -d '{"instances": [{"b64": "..."}]}' localhost:8501/v1/models/NAME:predict
  curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' \\
       'localhost:8501/v1/pipelines/photo2anime?model=NAME' -o anime.png

Binds to 127.0.0.1 unless --host says otherwise. Ctrl-C stops it (requests in flight finish).

Trust: --model_base_path must be trusted like code. A SavedModel runs whatever TensorFlow ops it
holds (reading and writing files included) and versions are picked up without a restart, so
only people allowed to run code as this user may write there. Version folders that are symlinks
leading outside the base path are ignored. The server answers only requests whose Host header
names it (localhost, the bound address; --allowed_hosts adds names), against DNS rebinding, and
refuses POSTs from other web origins unless --cors_allow_origin lists them.
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_base_path", None,
                    "Folder with one sub-folder per model (NAME/<version>/). Must be trusted like "
                    "code: a SavedModel runs arbitrary TensorFlow ops (file reads and writes "
                    "included), and new versions are loaded without a restart. Default: the "
                    "models this installation ships (exported once into a cache folder).")
flags.DEFINE_integer("rest_api_port", 8501, "HTTP port (0 picks a free one and prints it).")
flags.DEFINE_string("host", "127.0.0.1", "Address to bind; 0.0.0.0 exposes the server to the network.")
flags.DEFINE_integer("max_body_bytes", 32 << 20, "Largest request body accepted (413 above it).")
flags.DEFINE_integer("max_image_pixels", 40_000_000,
                     "Largest image accepted, width x height x frames as read from its header "
                     "(413 above; 400 for bytes that are not a JPEG, PNG, GIF, BMP or WebP image).")
flags.DEFINE_integer("max_batch_size", 64, "Most instances in one :predict request (413 above).")
flags.DEFINE_integer("workers", 4, "Threads running models (requests beyond them wait in a queue).")
flags.DEFINE_integer("max_queued", 16, "Model requests waiting for a --workers thread; more get "
                     "503 with Retry-After.")
flags.DEFINE_integer("pipeline_workers", 1, "Threads running /v1/pipelines/photo2anime (apart from "
                     "--workers, so the pipeline cannot hold up :predict).")
flags.DEFINE_integer("pipeline_max_queued", 2, "Pipeline requests waiting for a thread; more get "
                     "503 with Retry-After.")
flags.DEFINE_integer("max_connections", 256, "Open connections; at the limit requests get 503, "
                     "connections beyond it are closed at once.")
flags.DEFINE_float("header_timeout", 10.0, "Seconds for a request's line and headers to arrive "
                   "(408 and close after).")
flags.DEFINE_integer("max_header_bytes", 64 << 10, "Largest request head (line and headers; 431).")
flags.DEFINE_float("body_timeout", 60.0, "Seconds for a request body to arrive (408 after).")
flags.DEFINE_integer("keep_alive_timeout", 5, "Seconds an idle keep-alive connection stays open.")
flags.DEFINE_list("allowed_hosts", [], "Host header names answered besides localhost, 127.0.0.1, "
                  "[::1] and the --host address (NAME for any port, NAME:PORT, or * for any); "
                  "others get 400 (DNS rebinding).")
flags.DEFINE_list("cors_allow_origin", [], "Web origins (e.g. https://app.example) whose pages may "
                  "POST to the server and read the answers (CORS); * for any. POSTs with another "
                  "Origin header get 403.")
flags.DEFINE_integer("max_loaded_models", 8, "Model versions kept loaded (least recently used go).")
flags.DEFINE_string("photo2anime_model", None, "Default translator for /v1/pipelines/photo2anime "
                    "when the request gives no ?model=.")
flags.DEFINE_boolean("preload", True, "Load the newest version of every model before serving.")
flags.DEFINE_integer("tensorflow_intra_op_parallelism", 0,
                     "Threads one TF op may use (0: TF's default, one per core), as in TF Serving.")
flags.DEFINE_integer("tensorflow_inter_op_parallelism", 0,
                     "Threads running independent TF ops (0: TF's default), as in TF Serving.")
flags.DEFINE_boolean("retain_freed_memory", True,
                     "Let malloc (glibc) keep freed memory for the next request instead of "
                     "returning it to the OS after each one (what that costs per request: README.md, "
                     "Export and serve); the process keeps its peak memory.")
flags.DEFINE_boolean("server_timing", False,
                     "Add a Server-Timing header to :predict responses (read, queue, parse, model, "
                     "encode, back, in ms) to see where a request's time goes.")
flags.DEFINE_enum("log_level", "warning", ["critical", "error", "warning", "info", "debug"],
                  "Server log level (info logs every request).")


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)

def main(argv):
    if not 0 <= FLAGS.rest_api_port <= 65535:
        fail(f"--rest_api_port={FLAGS.rest_api_port} is not a port number")
    for name in ("max_body_bytes", "max_image_pixels", "workers", "max_loaded_models",
                 "max_batch_size", "pipeline_workers", "max_connections", "max_header_bytes",
                 "keep_alive_timeout"):
        if getattr(FLAGS, name) < 1:
            fail(f"--{name} must be at least 1")
    for name in ("max_queued", "pipeline_max_queued"):
        if getattr(FLAGS, name) < 0:
            fail(f"--{name} must be 0 or more")
    for name in ("header_timeout", "body_timeout"):
        if not getattr(FLAGS, name) > 0:
            fail(f"--{name} must be a positive number of seconds")
    for name in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
        if getattr(FLAGS, name) < 0:
            fail(f"--{name} must be 0 (TF's default) or a number of threads")
    try:
        import uvicorn
        from tools.serving.access import HostPolicy
        from tools.serving.app import Server, build_app, listen_socket
        from tools.serving.connections import guarded_protocol
        from tools.serving.pipeline import Photo2Anime
        from tools.serving.repository import Repository, ServingError
    except ImportError as e:
        fail(f"{e}; install the server dependencies: pip install -e . (starlette, uvicorn)")
    from tools.serving import tuning
    if FLAGS.retain_freed_memory:
        tuning.retain_freed_memory()
    tuning.set_tf_threads(FLAGS.tensorflow_intra_op_parallelism,
                          FLAGS.tensorflow_inter_op_parallelism)
    model_base_path = FLAGS.model_base_path
    if not model_base_path:
        from tools.serving import shipped
        try:
            model_base_path = shipped.base_path(log=lambda m: print(m, flush=True))
        except FileNotFoundError as e:
            fail(f"{e} (a folder of NAME/<version>/ SavedModels)")
    try:
        repo = Repository(model_base_path, FLAGS.max_loaded_models)
    except ValueError as e:
        fail(str(e))
    names = repo.model_names()
    if FLAGS.preload:
        from tqdm import tqdm
        for name in tqdm(names, desc="loading models", unit="model", disable=not names):
            try:
                repo.get(name)
            except ServingError as e:
                print(f"warning: {e.message}", file=sys.stderr)
    pipeline = Photo2Anime(repo, FLAGS.max_image_pixels, FLAGS.photo2anime_model)
    server = Server(repo, FLAGS.max_body_bytes, FLAGS.max_image_pixels, FLAGS.workers, pipeline,
                    timing=FLAGS.server_timing, max_batch_size=FLAGS.max_batch_size,
                    max_queued=FLAGS.max_queued, pipeline_workers=FLAGS.pipeline_workers,
                    pipeline_max_queued=FLAGS.pipeline_max_queued, body_timeout=FLAGS.body_timeout)
    try:
        sock = listen_socket(FLAGS.host, FLAGS.rest_api_port)
    except OSError as e:
        fail(f"cannot listen on {FLAGS.host}:{FLAGS.rest_api_port}: {e}")
    host, port = sock.getsockname()[:2]
    app = build_app(server, HostPolicy(FLAGS.host, port, FLAGS.allowed_hosts), FLAGS.cors_allow_origin)
    config = uvicorn.Config(
        app, log_level=FLAGS.log_level, access_log=FLAGS.log_level in ("info", "debug"),
        http=guarded_protocol(FLAGS.max_connections, FLAGS.header_timeout, FLAGS.max_header_bytes),
        limit_concurrency=FLAGS.max_connections, timeout_keep_alive=FLAGS.keep_alive_timeout,
        h11_max_incomplete_event_size=FLAGS.max_header_bytes)
    userver = uvicorn.Server(config)
    print(f"serving {len(names)} model(s) from {repo.base} ({', '.join(names) or 'none yet'}) "
          f"on http://{host}:{port}", flush=True)
    try:
        userver.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        server.shutdown()


def run():
    cliboot.run(main)


if __name__ == "__main__":
    run()
