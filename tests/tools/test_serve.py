"""The TF-Serving-compatible server: every endpoint and error case over real HTTP on loopback.

One server (uvicorn in a thread, a free port) serves a tiny exported tagger, a tiny pix2pix
translator (translate/export.py), hand-made models shaped like the examples of TF Serving's REST
docs, and a broken model. Request bodies in test_tf_serving_documented_requests are copied from
https://www.tensorflow.org/tfx/serving/api_rest."""
import base64
import contextlib
import concurrent.futures
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from tagnet import exporting as tagnet_export  # noqa: E402
from tests.tagnet.test_export import S, TAGS, THRESHOLDS, encode, make_tagger, sigmoid  # noqa: E402
from tools.serving.access import HostPolicy  # noqa: E402
from tools.serving.app import Server, build_app, listen_socket  # noqa: E402
from tools.serving.connections import guarded_protocol  # noqa: E402
from tools.serving.pipeline import Photo2Anime  # noqa: E402
from tools.serving.repository import Repository  # noqa: E402
from tests.helpers import ROOT

MAX_BODY = 1 << 20
MAX_PIXELS = 300_000


class HalfPlus(tf.Module):
    """TF Serving's half_plus_three toy: y = 0.5 x + b."""

    def __init__(self, b):
        super().__init__()
        self.b = tf.Variable(b, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": 0.5 * x + self.b}


class ThreeInputs(tf.Module):
    """The docs' row-format example: named inputs tag / signal / sensor."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="tag"),
                                  tf.TensorSpec([None, 5], tf.int32, name="signal"),
                                  tf.TensorSpec([None, 2, 2], tf.float32, name="sensor")])
    def serve(self, tag, signal, sensor):
        total = tf.cast(tf.reduce_sum(signal, 1), tf.float32) + tf.reduce_sum(sensor, [1, 2])
        return {"tag_bytes": tag, "total": total}


def save_version(module, base, version, signatures=None):
    tmp = os.path.join(base, f".tmp-{version}")
    tf.saved_model.save(module, tmp, signatures=signatures or {"serving_default": module.serve})
    os.rename(tmp, os.path.join(base, str(version)))


def make_translator(base):
    """A pix2pix-shaped translator (keypoints + colours -> 32 px face) through translate.export."""
    import keras

    from translate.datasets import pipelines as data
    from translate.inference import export
    keras.utils.set_random_seed(0)
    flags = {"model": "pix2pix", "image_size": S, "condition": "keypoints_colors"}
    gen = keras.Sequential([keras.Input((S, S, data.CONDITION_CHANNELS["keypoints_colors"])),
                            keras.layers.Conv2D(3, 3, padding="same", activation="tanh")])
    return export.write_saved_model(export.TranslatorModule(gen, flags), base)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    base = root / "models"
    model = make_tagger(root / "tagger_run")
    tagnet_export.export(str(root / "tagger_run"), str(base / "tagger"), verify=False)
    make_translator(str(base / "p2p"))
    os.makedirs(base / "half_plus_three")
    save_version(HalfPlus(3.0), str(base / "half_plus_three"), 123)
    os.makedirs(base / "multi")
    save_version(ThreeInputs(), str(base / "multi"), 1)
    os.makedirs(base / "broken" / "1")
    (base / "broken" / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    os.makedirs(root / "outside" / "1")  # a model outside BASE, reachable only by a symlink
    shutil.copytree(base / "multi" / "1", root / "outside" / "1", dirs_exist_ok=True)
    os.symlink(root / "outside", base / "escape")

    repo = Repository(str(base))
    server = Server(repo, max_body_bytes=MAX_BODY, max_image_pixels=MAX_PIXELS, workers=4,
                    pipeline=Photo2Anime(repo, MAX_PIXELS))
    sock = listen_socket("127.0.0.1", 0)
    app = build_app(server, HostPolicy("127.0.0.1", sock.getsockname()[1]))
    config = uvicorn.Config(app, log_level="error", http=guarded_protocol(64, 10.0, 64 << 10))
    with running(config, sock, server):
        yield {"port": sock.getsockname()[1], "base": base, "model": model, "root": root,
               "server": server}


@contextlib.contextmanager
def running(config, sock, server):
    """uvicorn serving `config` on `sock` in a thread, until the block ends."""
    userver = uvicorn.Server(config)
    thread = threading.Thread(target=userver.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not userver.started and time.time() < deadline:
        time.sleep(0.05)
    assert userver.started
    try:
        yield
    finally:
        userver.should_exit = True
        thread.join(10)
        server.shutdown()


def call(served, method, path, body=None, headers=None, timeout=60):
    """-> (status, headers, body bytes); raw paths (no client-side normalisation)."""
    conn = http.client.HTTPConnection("127.0.0.1", served["port"], timeout=timeout)
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    conn.request(method, path, body=body, headers=headers or {})
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, dict(r.getheaders()), data


def jcall(served, method, path, body=None, headers=None):
    status, _, data = call(served, method, path, body, headers)
    return status, json.loads(data)


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def test_tf_serving_documented_requests(served):
    # Status of a model (docs: "Get status of the model").
    status, body = jcall(served, "GET", "/v1/models/half_plus_three")
    assert status == 200 and body == {"model_version_status": [
        {"version": "123", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    # `curl -d '{"instances": [1.0,2.0,5.0]}' -X POST .../half_plus_three:predict`
    status, body = jcall(served, "POST", "/v1/models/half_plus_three:predict",
                         b'{"instances": [1.0,2.0,5.0]}')
    assert status == 200 and body == {"predictions": [3.5, 4.0, 5.5]}
    # Row format with three named inputs (the docs' example, with its stray "]" removed).
    rows = b"""{
     "instances": [
       {
         "tag": "foo",
         "signal": [1, 2, 3, 4, 5],
         "sensor": [[1, 2], [3, 4]]
       },
       {
         "tag": "bar",
         "signal": [3, 4, 1, 2, 5],
         "sensor": [[4, 5], [6, 8]]
       }
     ]
    }"""
    status, body = jcall(served, "POST", "/v1/models/multi:predict", rows)
    assert status == 200 and body == {"predictions": [
        {"tag_bytes": {"b64": base64.b64encode(b"foo").decode()}, "total": 25.0},
        {"tag_bytes": {"b64": base64.b64encode(b"bar").decode()}, "total": 38.0}]}
    # The same in columnar format (verbatim).
    cols = b"""{
     "inputs": {
       "tag": ["foo", "bar"],
       "signal": [[1, 2, 3, 4, 5], [3, 4, 1, 2, 5]],
       "sensor": [[[1, 2], [3, 4]], [[4, 5], [6, 8]]]
     }
    }"""
    status, body = jcall(served, "POST", "/v1/models/multi:predict", cols)
    assert status == 200 and body["outputs"]["total"] == [25.0, 38.0]
    # Binary values as {"b64": ...} (the docs' "image bytes" value), echoed as binary output.
    status, body = jcall(served, "POST", "/v1/models/multi:predict", b"""{"instances": [
        {"tag": { "b64": "aW1hZ2UgYnl0ZXM=" }, "signal": [0, 0, 0, 0, 0], "sensor": [[0, 0], [0, 0]]}]}""")
    assert status == 200 and body["predictions"][0]["tag_bytes"] == {"b64": "aW1hZ2UgYnl0ZXM="}
    # `curl -i -d '{"instances": [1.0,5.0]}' -X POST .../half:predict` -> 404 with an error
    status, headers, data = call(served, "POST", "/v1/models/half:predict", b'{"instances": [1.0,5.0]}')
    assert status == 404 and headers["content-type"] == "application/json"
    assert json.loads(data)["error"].startswith("Servable not found for request: Latest(half)")


def test_tagger_predict_metadata_and_labels(served):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 256, (2, S, S, 3), dtype=np.uint8)
    want = sigmoid(served["model"](pixels.astype(np.float32)).numpy())
    images = [encode(p) for p in pixels]
    status, body = jcall(served, "POST", "/v1/models/tagger:predict",
                         {"instances": [b64(i) for i in images]})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], want, atol=1e-4)
    # Columnar, an explicit version, the single-input shorthand, and a JPEG.
    jpeg = encode(pixels[0], "JPEG", quality=90)
    status, body = jcall(served, "POST", "/v1/models/tagger/versions/1:predict",
                         {"inputs": [b64(images[1]), b64(jpeg)]})
    assert status == 200 and np.asarray(body["outputs"]).shape == (2, 5)
    np.testing.assert_allclose(body["outputs"][0], want[1], atol=1e-4)
    decoded = tf.io.decode_image(jpeg, channels=3).numpy().astype(np.float32)
    np.testing.assert_allclose(body["outputs"][1], sigmoid(served["model"](decoded[None]).numpy())[0],
                               atol=1e-4)
    # Vocabulary and thresholds from the no-input signature.
    status, body = jcall(served, "POST", "/v1/models/tagger:predict",
                         {"signature_name": "labels", "inputs": {}})
    assert status == 200 and body["outputs"]["tags"] == TAGS
    np.testing.assert_allclose(body["outputs"]["thresholds"], THRESHOLDS, rtol=1e-6)
    # The vocabulary per row, through a signature TF Serving itself can run.
    status, body = jcall(served, "POST", "/v1/models/tagger:predict",
                         {"signature_name": "with_labels", "instances": [b64(images[0])]})
    assert status == 200 and body["predictions"][0]["tags"] == TAGS
    np.testing.assert_allclose(body["predictions"][0]["scores"], want[0], atol=1e-4)
    # Float input signature.
    status, body = jcall(served, "POST", "/v1/models/tagger:predict",
                         {"signature_name": "predict_raw", "instances": pixels.tolist()})
    assert status == 200
    np.testing.assert_allclose(body["predictions"], want, atol=1e-4)
    # Metadata: TF Serving's GetModelMetadataResponse shape.
    status, body = jcall(served, "GET", "/v1/models/tagger/metadata")
    assert status == 200 and body["model_spec"] == {"name": "tagger", "signature_name": "",
                                                    "version": "1"}
    sigs = body["metadata"]["signature_def"]["signature_def"]
    assert {"serving_default", "predict_raw", "labels"} <= set(sigs)
    image = sigs["serving_default"]["inputs"]["image"]
    assert image["dtype"] == "DT_STRING" and image["tensor_shape"]["dim"] == [{"size": "-1"}]
    assert sigs["serving_default"]["outputs"]["scores"]["tensor_shape"]["dim"] == [
        {"size": "-1"}, {"size": "5"}]
    assert sigs["serving_default"]["method_name"] == "tensorflow/serving/predict"
    status, body = jcall(served, "GET", "/v1/models")
    assert status == 200 and {"name": "tagger", "versions": ["1"]} in body["models"]


def test_translator_predict_and_photo2anime_pipeline(served):
    from PIL import Image
    from skimage import data as skdata
    kp = [[[0.38, 0.4], [0.62, 0.4], [0.5, 0.55], [0.5, 0.68], [0.5, 0.85]]]
    inst = {"keypoints": kp[0], "point_mask": [1] * 5, "colors": [[0.5, 0.2, 0.1]] * 4,
            "color_mask": [1] * 4}
    status, body = jcall(served, "POST", "/v1/models/p2p:predict", {"instances": [inst, inst]})
    assert status == 200 and len(body["predictions"]) == 2
    png = base64.b64decode(body["predictions"][0]["image_bytes"]["b64"])  # binary output as b64
    assert Image.open(io.BytesIO(png)).size == (S, S) and body["predictions"][0]["image_size"] == S

    photo = encode(skdata.astronaut(), "JPEG", quality=90)
    status, headers, data = call(served, "POST", "/v1/pipelines/photo2anime?model=p2p", photo,
                                 {"Content-Type": "image/jpeg"})
    assert status == 200, data
    assert headers["content-type"] == "image/png" and Image.open(io.BytesIO(data)).size == (S, S)
    x, y, w, h = map(int, headers["x-face-box"].split(","))
    assert 150 < x + w / 2 < 300 and 50 < y + h / 2 < 250  # the astronaut's face
    status, _, data2 = call(served, "POST", "/v1/pipelines/photo2anime?model=p2p",
                            json.dumps(b64(photo)).encode(), {"Content-Type": "application/json"})
    assert status == 200 and data2 == data  # deterministic translator, same face
    status, _, data3 = call(served, "POST", "/v1/pipelines/photo2anime?model=p2p&hair=%23ff0000"
                            "&anime_proportions=0&seed=3", photo)
    assert status == 200 and data3 != data  # another hair colour, the photo's own proportions
    cases = [
        ("?model=p2p", encode(np.full((200, 200, 3), 128, np.uint8)), 422, "no usable face"),
        ("?model=p2p", b"definitely not an image", 400, "not a JPEG, PNG, GIF, BMP or WebP image"),
        ("?model=p2p", encode(np.zeros((600, 600, 3), np.uint8)), 413, "over the limit"),
        ("", photo, 400, "?model=NAME"),
        ("?model=tagger", photo, 400, "not a translator"),
        ("?model=nope", photo, 404, "Servable not found"),
        ("?model=p2p", b'{"b64": 5}', 400, "JSON body"),
        ("?model=p2p&hair=red", photo, 400, "colour option"),
        ("?model=p2p&seed=-1", photo, 400, "seed"),
    ]
    for query, body_bytes, want_status, message in cases:
        status, headers, data = call(served, "POST", "/v1/pipelines/photo2anime" + query, body_bytes)
        assert status == want_status, (query, data)
        assert message in json.loads(data)["error"], data


def test_errors_are_4xx_json_and_the_server_keeps_serving(served):
    p = "/v1/models/half_plus_three:predict"
    big_png = encode(np.zeros((600, 600, 3), np.uint8))
    cases = [
        ("POST", p, b"{not json", 400, "invalid JSON"),
        ("POST", p, b"[1, 2]", 400, "JSON object"),
        ("POST", p, b"", 400, "empty request body"),
        ("POST", p, b'{"signature_name": "serving_default"}', 400, "exactly one of"),
        ("POST", p, b'{"instances": [1], "inputs": [1]}', 400, "exactly one of"),
        ("POST", p, b'{"instances": []}', 400, "empty batch"),
        ("POST", p, b'{"inputs": []}', 400, "empty batch"),
        ("POST", p, b'{"instances": [[1.0, 2.0]]}', 400, "rank 1"),
        ("POST", p, b'{"instances": ["a"]}', 400, "expected numbers"),
        ("POST", p, b'{"instances": [1.0], "signature_name": "nope"}', 400, "not found in signature"),
        ("POST", "/v1/models/multi:predict", b'{"instances": [{"tag": "a"}]}', 400, "missing"),
        ("POST", "/v1/models/multi:predict",
         b'{"inputs": {"tag": ["a"], "signal": [[1, 2, 3]], "sensor": [[[1, 2], [3, 4]]]}}', 400,
         "dimension 1 is 3"),
        ("POST", "/v1/models/multi:predict",
         b'{"inputs": {"tag": ["a", "b"], "signal": [[1, 2, 3, 4, 5]], "sensor": [[[1, 2], [3, 4]]]}}',
         400, "different batch sizes"),
        ("POST", "/v1/models/multi:predict",
         b'{"inputs": {"tag": [{"b64": "!!"}], "signal": [[1, 2, 3, 4, 5]], "sensor": [[[1, 2], [3, 4]]]}}',
         400, "not valid base64"),
        ("POST", "/v1/models/tagger:predict", json.dumps({"instances": [b64(b"garbage")]}).encode(),
         400, "not a JPEG, PNG, GIF, BMP or WebP image"),
        ("POST", "/v1/models/tagger:predict", json.dumps({"instances": [b64(big_png)]}).encode(),
         413, "--max_image_pixels"),
        ("POST", p, b'{"instances": [' + b"1.0, " * (MAX_BODY // 5) + b"1.0]}", 413, "--max_body_bytes"),
        ("POST", "/v1/models/tagger:predict", json.dumps({"signature_name": "labels",
                                                          "instances": [1]}).encode(), 400, "no inputs"),
        ("POST", "/v1/models/half_plus_three:classify", b"{}", 400, "not supported"),
        ("GET", "/v1/models/half_plus_three:predict", None, 405, "needs POST"),
        ("DELETE", "/v1/models/half_plus_three", None, 405, "Method Not Allowed"),
        ("GET", "/v1/models/half_plus_three/versions/7", None, 404, "Specific(half_plus_three, 7)"),
        ("POST", "/v1/models/half_plus_three/versions/x:predict", b"{}", 400, "not an integer"),
        ("GET", "/v1/models/broken/metadata", None, 500, "failed to load"),
        ("GET", "/nowhere", None, 404, "Not Found"),
        # Names resolve only to folders directly under BASE.
        ("GET", "/v1/models/..", None, 404, "Servable not found"),
        ("GET", "/v1/models/../models/half_plus_three", None, 404, "no such endpoint"),
        ("POST", "/v1/models/%2E%2E%2Fmodels%2Fhalf_plus_three:predict", b"{}", 404, ""),
        ("GET", "/v1/models/escape", None, 404, "Servable not found"),
        ("GET", "/v1/models/.hidden", None, 404, "not a valid model name"),
    ]
    for method, path, body, want_status, message in cases:
        status, headers, data = call(served, method, path, body)
        assert status == want_status, (path, body and body[:80], data[:300])
        assert headers["content-type"] == "application/json", path
        assert message in json.loads(data)["error"], (path, data[:300])
    # A broken version is reported in the status, not hidden.
    status, body = jcall(served, "GET", "/v1/models/broken")
    assert status == 200 and body["model_version_status"][0]["state"] == "END"
    assert "failed to load" in body["model_version_status"][0]["status"]["error_message"]
    status, body = jcall(served, "POST", p, b'{"instances": [1.0]}')
    assert status == 200 and body == {"predictions": [3.5]}


def test_new_version_is_picked_up_and_requests_run_concurrently(served):
    base = str(served["base"] / "half_plus_three")
    save_version(HalfPlus(4.0), base, 124)
    status, body = jcall(served, "POST", "/v1/models/half_plus_three:predict", b'{"instances": [1.0]}')
    assert status == 200 and body == {"predictions": [4.5]}
    status, body = jcall(served, "POST", "/v1/models/half_plus_three/versions/123:predict",
                         b'{"instances": [1.0]}')
    assert status == 200 and body == {"predictions": [3.5]}
    status, body = jcall(served, "GET", "/v1/models/half_plus_three")
    assert body["model_version_status"][0]["version"] == "124"

    img = encode(np.random.default_rng(5).integers(0, 256, (S, S, 3), dtype=np.uint8))
    req = json.dumps({"instances": [b64(img)]}).encode()

    def one(_):
        return jcall(served, "POST", "/v1/models/tagger:predict", req)
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(16)))
    assert all(s == 200 for s, _ in results)
    first = np.asarray(results[0][1]["predictions"])
    for _, body in results:
        np.testing.assert_allclose(body["predictions"], first, atol=1e-6)


def test_serve_cli_help_and_errors(tmp_path):
    cli = os.path.join(ROOT, "tools", "serve.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    r = subprocess.run([sys.executable, cli, "--help"], capture_output=True, text=True, env=env,
                       timeout=120)
    assert r.returncode == 0 and "--model_base_path" in r.stdout and "--rest_api_port" in r.stdout
    for args, message in ((["--max_batch_size=0"], "--max_batch_size must be at least 1"),
                          ([f"--model_base_path={tmp_path / 'none'}"], "is not a folder"),
                          ([f"--model_base_path={tmp_path}", "--rest_api_port=70000"], "not a port"),
                          ([f"--model_base_path={tmp_path}", "--tensorflow_intra_op_parallelism=-1"],
                           "--tensorflow_intra_op_parallelism must be 0")):
        r = subprocess.run([sys.executable, cli] + args, capture_output=True, text=True, env=env,
                           timeout=120)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        # our own line, wherever it is (not what TensorFlow may print around it)
        assert any(line.startswith("error:") and message in line
                   for line in r.stderr.splitlines()), r.stderr


def test_server_timing_header(served):
    """--server_timing: the phases of a :predict request, in ms, adding up to at most its latency."""
    img = encode(np.random.default_rng(6).integers(0, 256, (S, S, 3), dtype=np.uint8))
    req = {"instances": [b64(img)]}
    status, headers, _ = call(served, "POST", "/v1/models/tagger:predict", req)
    assert status == 200 and "server-timing" not in {k.lower() for k in headers}
    served["server"].timing = True
    try:
        t = time.perf_counter()
        status, headers, data = call(served, "POST", "/v1/models/tagger:predict", req)
        latency_ms = 1e3 * (time.perf_counter() - t)
    finally:
        served["server"].timing = False
    assert status == 200 and np.asarray(json.loads(data)["predictions"]).shape == (1, 5)
    timing = {k.lower(): v for k, v in headers.items()}["server-timing"]
    phases = dict(part.strip().split(";dur=") for part in timing.split(","))
    assert list(phases) == ["read", "queue", "parse", "model", "encode", "back"]
    ms = {k: float(v) for k, v in phases.items()}
    assert all(v >= 0 for v in ms.values()) and ms["model"] > 0
    assert sum(ms.values()) <= latency_ms


def test_retain_freed_memory_stops_page_faults_per_request():
    """After tuning.retain_freed_memory, memory freed by one "request" serves the next without
    page faults; glibc's defaults give it back to the kernel each time (run in subprocesses: the
    setting is per process)."""
    import platform
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt thresholds are glibc's")
    script = (
        "import resource, sys\n"
        f"sys.path.insert(0, {ROOT!r})\n"
        "from tools.serving import tuning\n"
        "if sys.argv[1] == '1':\n"
        "    assert tuning.retain_freed_memory()\n"
        "def requests(n):  # 10 MB of 200 KB blocks, written to, freed\n"
        "    for _ in range(n):\n"
        "        blocks = [b'x' * 200_000 for _ in range(50)]\n"
        "        del blocks\n"
        "requests(2)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
        "requests(20)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)\n")
    faults = {}
    for retain in ("0", "1"):
        r = subprocess.run([sys.executable, "-c", script, retain], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        faults[retain] = int(r.stdout)
    assert faults["0"] > 20 * 1000  # ~2,400 pages per round: the memory was given back each time
    assert faults["1"] < faults["0"] / 10, faults
