"""Serves every SavedModel under a folder with TensorFlow Serving's REST API.

  python tools/serve.py --model_base_path=models --rest_api_port=8501 [--host=127.0.0.1]

models/ holds one folder per model, each with integer version folders (as written by
tagnet/export.py and translate/export.py): models/NAME/<version>/saved_model.pb. The newest
version is served; a version added later is picked up on the next request, without a restart.

  curl localhost:8501/v1/models/NAME                       status
  curl localhost:8501/v1/models/NAME/metadata              signatures
  curl -d '{"instances": [{"b64": "..."}]}' localhost:8501/v1/models/NAME:predict
  curl --data-binary @photo.jpg -H 'Content-Type: image/jpeg' \\
       'localhost:8501/v1/pipelines/photo2anime?model=NAME' -o anime.png

Binds to 127.0.0.1 unless --host says otherwise. Ctrl-C stops it (requests in flight finish).
"""
from __future__ import annotations

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import sys

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model_base_path", None, "Folder with one sub-folder per model (NAME/<version>/).")
flags.DEFINE_integer("rest_api_port", 8501, "HTTP port (0 picks a free one and prints it).")
flags.DEFINE_string("host", "127.0.0.1", "Address to bind; 0.0.0.0 exposes the server to the network.")
flags.DEFINE_integer("max_body_bytes", 32 << 20, "Largest request body accepted (413 above it).")
flags.DEFINE_integer("max_image_pixels", 40_000_000, "Largest image (width x height) accepted (413).")
flags.DEFINE_integer("workers", 4, "Threads running models (requests beyond them wait in a queue).")
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
    if not FLAGS.model_base_path:
        fail("--model_base_path is required (a folder of NAME/<version>/ SavedModels)")
    if not 0 <= FLAGS.rest_api_port <= 65535:
        fail(f"--rest_api_port={FLAGS.rest_api_port} is not a port number")
    for name in ("max_body_bytes", "max_image_pixels", "workers", "max_loaded_models"):
        if getattr(FLAGS, name) < 1:
            fail(f"--{name} must be at least 1")
    for name in ("tensorflow_intra_op_parallelism", "tensorflow_inter_op_parallelism"):
        if getattr(FLAGS, name) < 0:
            fail(f"--{name} must be 0 (TF's default) or a number of threads")
    try:
        import uvicorn
        from tools.serving.app import Server, build_app, listen_socket
        from tools.serving.pipeline import Photo2Anime
        from tools.serving.repository import Repository, ServingError
    except ImportError as e:
        fail(f"{e}; install the server dependencies: pip install -e . (starlette, uvicorn)")
    from tools.serving import tuning
    if FLAGS.retain_freed_memory:
        tuning.retain_freed_memory()
    tuning.set_tf_threads(FLAGS.tensorflow_intra_op_parallelism,
                          FLAGS.tensorflow_inter_op_parallelism)
    try:
        repo = Repository(FLAGS.model_base_path, FLAGS.max_loaded_models)
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
                    timing=FLAGS.server_timing)
    config = uvicorn.Config(build_app(server), host=FLAGS.host, port=FLAGS.rest_api_port,
                            log_level=FLAGS.log_level, access_log=FLAGS.log_level in ("info", "debug"))
    userver = uvicorn.Server(config)
    try:
        sock = listen_socket(FLAGS.host, FLAGS.rest_api_port)
    except OSError as e:
        fail(f"cannot listen on {FLAGS.host}:{FLAGS.rest_api_port}: {e}")
    host, port = sock.getsockname()[:2]
    print(f"serving {len(names)} model(s) from {repo.base} ({', '.join(names) or 'none yet'}) "
          f"on http://{host}:{port}", flush=True)
    try:
        userver.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        server.pool.shutdown(wait=False, cancel_futures=True)


def run():
    cliboot.run(main)


if __name__ == "__main__":
    run()
