"""The server's limits against crafted input (issue 17, items 1-7), over real HTTP on loopback.

One small server (uvicorn in a thread, a free 127.0.0.1 port, tight limits) serves a model that
decodes images, TF Serving's half_plus_three, a broken model and a model that reads a missing
file, with a stand-in photo2anime pipeline that only sleeps (the queues are what is tested).
Repository behaviour (failed versions, symlinks) is tested on the Repository directly."""
import asyncio
import base64
import concurrent.futures
import http.client
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
pytest.importorskip("starlette")
uvicorn = pytest.importorskip("uvicorn")

from tools.serving import image_limits, pipeline as pipeline_mod, repository  # noqa: E402
from tools.serving.access import AccessGuard, HostPolicy  # noqa: E402
from tools.serving.app import Server, build_app, listen_socket  # noqa: E402
from tools.serving.connections import guarded_protocol  # noqa: E402
from tools.serving.repository import Repository, ServingError  # noqa: E402
from tests.helpers import ROOT  # noqa: E402
from tests.tools.test_serve import HalfPlus, running, call as serve_call  # noqa: E402

MAX_PIXELS = 1_000_000
MAX_BATCH = 8
HEADER_TIMEOUT = 1.0
BODY_TIMEOUT = 1.5
MAX_CONNECTIONS = 12
PIPELINE_SECONDS = 1.5


class ImageShape(tf.Module):
    """[B] encoded images -> [B, 3] decoded shapes (tf.io.decode_image, as the exporters use)."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="image")])
    def serve(self, image):
        shapes = tf.map_fn(lambda b: tf.shape(tf.io.decode_image(b, channels=3, expand_animations=False)),
                           image, fn_output_signature=tf.int32)
        return {"shape": shapes}


class ReadsFile(tf.Module):
    """A model whose graph reads a file on the server (what a hostile SavedModel could do)."""

    def __init__(self, path):
        super().__init__()
        self.path = path

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32, name="x")])
    def serve(self, x):
        return {"y": x + tf.cast(tf.strings.length(tf.io.read_file(self.path)), tf.float32)}


def save(module, folder):
    tmp = folder + ".tmp"
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    os.rename(tmp, folder)


class SlowPipeline:
    """Stands in for Photo2Anime: holds its thread for PIPELINE_SECONDS."""

    def run(self, body, content_type, model, version, options):
        time.sleep(PIPELINE_SECONDS)
        return b"\x89PNG", {}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("harden")
    base = root / "models"
    save(ImageShape(), str(base / "img" / "1"))
    save(HalfPlus(3.0), str(base / "half" / "1"))
    save(ReadsFile(str(root / "secret" / "missing.txt")), str(base / "reader" / "1"))
    os.makedirs(base / "broken" / "1")
    (base / "broken" / "1" / "saved_model.pb").write_bytes(b"not a protobuf")
    # a model-level symlink and a version-level symlink leading outside BASE
    shutil.copytree(base / "half" / "1", root / "outside" / "7")
    os.symlink(root / "outside", base / "escape")
    os.makedirs(base / "sneaky")
    os.symlink(root / "outside" / "7", base / "sneaky" / "7")

    repo = Repository(str(base))
    server = Server(repo, max_body_bytes=1 << 20, max_image_pixels=MAX_PIXELS, workers=2,
                    pipeline=SlowPipeline(), max_batch_size=MAX_BATCH, max_queued=2,
                    pipeline_workers=1, pipeline_max_queued=1, body_timeout=BODY_TIMEOUT)
    sock = listen_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    app = build_app(server, HostPolicy("127.0.0.1", port))
    config = uvicorn.Config(app, log_level="critical", limit_concurrency=MAX_CONNECTIONS,
                            timeout_keep_alive=2, h11_max_incomplete_event_size=8192,
                            http=guarded_protocol(MAX_CONNECTIONS, HEADER_TIMEOUT, 8192))
    with running(config, sock, server):
        yield {"port": port, "base": base, "root": root, "server": server}


def call(served, method, path, body=None, headers=None, timeout=30):
    """test_serve's call with lower-case header names."""
    status, response_headers, data = serve_call(served, method, path, body, headers, timeout)
    return status, {k.lower(): v for k, v in response_headers.items()}, data


def error_of(data: bytes) -> str:
    return json.loads(data)["error"]


def b64(data: bytes) -> dict:
    return {"b64": base64.b64encode(data).decode()}


def encode(arr, fmt, **kw) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_with_tem(h, w) -> bytes:
    """A JPEG with a TEM marker right after SOI: libjpeg skips it, Pillow cannot open it."""
    jpeg = encode(np.zeros((h, w, 3), np.uint8), "JPEG")
    return jpeg[:2] + b"\xff\x01" + jpeg[2:]


def png_with_bad_ancillary_crc(h, w) -> bytes:
    """A PNG whose tEXt chunk has its CRC zeroed: libpng warns and decodes, Pillow refuses."""
    from PIL import PngImagePlugin
    info = PngImagePlugin.PngInfo()
    info.add_text("k", "v")
    png = encode(np.zeros((h, w, 3), np.uint8), "PNG", pnginfo=info)
    k = png.index(b"tEXt")
    crc = k + 4 + struct.unpack(">I", png[k - 4:k])[0]
    return png[:crc] + b"\0\0\0\0" + png[crc + 4:]


def animated(fmt, frames, side) -> bytes:
    from PIL import Image
    imgs = [Image.fromarray(np.full((side, side, 3), 40 * i, np.uint8)) for i in range(frames)]
    buf = io.BytesIO()
    imgs[0].save(buf, format=fmt, save_all=True, append_images=imgs[1:])
    return buf.getvalue()


JXL_CODESTREAM = b"\xff\x0a\xfa\x7f\x01\x90\x08\x06\x01\x00"  # a JPEG XL header (2000x2000 claimed)
JXL_CONTAINER = b"\x00\x00\x00\x0cJXL \r\n\x87\n" + b"\x00" * 32


# --- 1. image sizes --------------------------------------------------------------------------------
def test_header_sizes_match_what_tensorflow_decodes():
    cases = {"tem": jpeg_with_tem(120, 90), "badcrc": png_with_bad_ancillary_crc(70, 50),
             "gif": animated("GIF", 3, 40),
             "webp1": encode(np.zeros((30, 50, 3), np.uint8), "WEBP"),
             "webpl": encode(np.zeros((30, 50, 3), np.uint8), "WEBP", lossless=True),
             "bmp": encode(np.zeros((30, 50, 3), np.uint8), "BMP"),
             "progressive": encode(np.zeros((33, 65, 3), np.uint8), "JPEG", progressive=True)}
    for name, data in cases.items():
        w, h, frames = image_limits.image_pixels(data)
        decoded = tf.io.decode_image(data, expand_animations=True).shape
        frames_tf, h_tf, w_tf = (decoded[0], decoded[1], decoded[2]) if len(decoded) == 4 else \
            (1, decoded[0], decoded[1])
        assert (w, h, frames) == (w_tf, h_tf, frames_tf), name
    h, w = tf.io.extract_jpeg_shape(cases["tem"]).numpy()[:2]
    assert image_limits.image_pixels(cases["tem"])[:2] == (w, h)
    # never handed to TensorFlow: its WebP decoder aborts the process on small animations
    with pytest.raises(image_limits.UnsizableImage, match="animated WebP"):
        image_limits.image_pixels(animated("WEBP", 3, 40))
    for bad in (JXL_CODESTREAM, JXL_CONTAINER, b"II*\x00", b"plain text", b""):
        with pytest.raises(image_limits.UnsizableImage, match="not a JPEG, PNG, GIF, BMP or WebP"):
            image_limits.image_pixels(bad)
    jpeg = encode(np.zeros((8, 8, 3), np.uint8), "JPEG")
    sos = jpeg.index(b"\xff\xda")
    for bad in (b"\x89PNG\r\n\x1a\n\x00\x00", jpeg[:2] + jpeg[sos:], b"\xff\xd8\xff", b"GIF89a\x01",
                b"BM" + b"\x00" * 30, b"RIFF\x00\x00\x00\x00WEBPVP8 "):
        with pytest.raises(image_limits.UnsizableImage, match="cannot read the size"):
            image_limits.image_pixels(bad)


def test_image_pixel_limit_cannot_be_bypassed(served):
    p = "/v1/models/img:predict"
    refused = [
        ("JPEG with TEM after SOI, 3000x2000", jpeg_with_tem(2000, 3000), 413, "3000x2000"),
        ("PNG with a zeroed ancillary CRC, 2000x2000", png_with_bad_ancillary_crc(2000, 2000), 413,
         "2000x2000"),
        ("GIF, 5 frames of 600x600", animated("GIF", 5, 600), 413, "5 frames"),
        ("animated WebP, 3 frames of 40x40", animated("WEBP", 3, 40), 400, "animated WebP"),
        ("JPEG XL codestream", JXL_CODESTREAM, 400, "not a JPEG, PNG, GIF, BMP or WebP image"),
        ("JPEG XL container", JXL_CONTAINER, 400, "not a JPEG, PNG, GIF, BMP or WebP image"),
        ("truncated PNG", b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0dIH", 400, "cannot read the size"),
    ]
    for what, data, want, message in refused:
        status, _, body = call(served, "POST", p, {"instances": [b64(data)]})
        assert status == want and message in error_of(body), (what, body)
    # the same crafted files under the limit are decoded by the model: the sizes were right
    status, _, body = call(served, "POST", p, {"instances": [b64(jpeg_with_tem(300, 200)),
                                                             b64(png_with_bad_ancillary_crc(100, 80))]})
    assert status == 200 and json.loads(body)["predictions"] == [[300, 200, 3], [100, 80, 3]]
    # the pipeline reads the photo's size the same way
    with pytest.raises(ServingError) as e:
        pipeline_mod.decode_photo(jpeg_with_tem(2000, 3000), MAX_PIXELS)
    assert e.value.status == 413 and "3000x2000" in e.value.message
    with pytest.raises(ServingError) as e:
        pipeline_mod.decode_photo(JXL_CODESTREAM, MAX_PIXELS)
    assert e.value.status == 400


def test_bomb_413_reports_the_real_size(tmp_path):
    """Issue 17 item 9: a bomb's 413 said "2147483648x1" when the size came from Pillow's header
    read (a BMP width of 0x80000000 read unsigned; TensorFlow reads it signed and refuses it).
    Sizes now come from image_limits, as the decoder reads them; above Pillow's own limit the
    pipeline answers 413 with that size too, not 400 with DecompressionBombError."""
    from tests.helpers import bomb_png

    bomb = open(bomb_png(tmp_path / "bomb.png", 30000, 30000), "rb").read()
    with pytest.raises(ServingError) as e:
        pipeline_mod.decode_photo(bomb, MAX_PIXELS)
    assert e.value.status == 413 and "30000x30000 = 900000000 pixels" in e.value.message
    with pytest.raises(ServingError) as e:  # --max_image_pixels above Pillow's limit
        pipeline_mod.decode_photo(bomb, 10**10)
    assert e.value.status == 413 and "30000x30000 = 900000000 pixels" in e.value.message

    def bmp(w, h):
        return (b"BM" + struct.pack("<IHHI", 0, 0, 0, 54)
                + struct.pack("<IiiHHIIiiII", 40, w, h, 1, 24, 0, 0, 0, 0, 0, 0) + b"\0" * 64)

    with pytest.raises(ServingError) as e:  # width 0x80000000: not 2147483648 wide, unreadable
        pipeline_mod.decode_photo(bmp(-2**31, 1), MAX_PIXELS)
    assert e.value.status == 400 and "2147483648" not in e.value.message
    with pytest.raises(ServingError) as e:
        pipeline_mod.decode_photo(bmp(30000, -30000), MAX_PIXELS)  # top-down rows
    assert e.value.status == 413 and "30000x30000 = 900000000 pixels" in e.value.message


# --- 2. batch size ---------------------------------------------------------------------------------
def test_max_batch_size(served):
    p = "/v1/models/half:predict"
    status, _, body = call(served, "POST", p, {"instances": [1.0] * MAX_BATCH})
    assert status == 200 and len(json.loads(body)["predictions"]) == MAX_BATCH
    for req in ({"instances": [1.0] * (MAX_BATCH + 1)}, {"inputs": [1.0] * 5000},
                {"inputs": {"x": [1.0] * (MAX_BATCH + 1)}}):
        status, _, body = call(served, "POST", p, req)
        assert status == 413 and "--max_batch_size" in error_of(body), body


# --- 3. versions -----------------------------------------------------------------------------------
def half_written_copy(src, dest):
    """A version folder as a slow copy leaves it: saved_model.pb there, the variables not yet."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("variables.data-*", "variables.index"))


def test_half_written_version_is_served_once_complete(tmp_path):
    good = tmp_path / "src"
    save(HalfPlus(5.0), str(good))
    base = tmp_path / "models"
    save(HalfPlus(3.0), str(base / "m" / "1"))
    repo = Repository(str(base))
    assert repo.get("m").version == 1
    half_written_copy(good, base / "m" / "2")
    assert repo.get("m").version == 1  # the broken newest does not hide the good older one
    assert "model m version 2 failed to load" in repo.failure("m", 2)
    assert str(tmp_path) not in repo.failure("m", 2)
    shutil.rmtree(base / "m" / "1")  # the older version goes: the last good one stays in service
    assert repo.get("m").version == 1
    shutil.copytree(good / "variables", base / "m" / "2" / "variables", dirs_exist_ok=True)
    model = repo.get("m")  # the copy finished (saved_model.pb unchanged): loaded on the next request
    assert model.version == 2 and repo.failure("m", 2) is None
    out = model.signatures["serving_default"](x=tf.constant([1.0]))["y"].numpy()
    np.testing.assert_allclose(out, [5.5])


def test_failed_version_is_retried_after_backoff(tmp_path, monkeypatch):
    monkeypatch.setattr(repository, "RETRY_FIRST_S", 0.2)
    base = tmp_path / "models"
    save(HalfPlus(3.0), str(base / "m" / "1"))
    os.makedirs(base / "m" / "2")
    (base / "m" / "2" / "saved_model.pb").write_bytes(b"broken")
    repo = Repository(str(base))
    assert repo.get("m").version == 1
    calls = []
    real = repository.LoadedModel

    def counting(*args):
        calls.append(args[1])
        return real(*args)
    monkeypatch.setattr(repository, "LoadedModel", counting)
    repo.get("m")
    assert calls == []  # within the backoff: not retried, the older version answers at once
    time.sleep(0.25)
    repo.get("m")
    assert calls == [2]  # retried after the backoff (and failed again: the next wait doubles)
    with pytest.raises(ServingError) as e:
        repo.get("m", 2)
    assert e.value.status == 500 and "model m version 2" in e.value.message


def test_version_symlinks_leading_outside_are_refused(served):
    repo = served["server"].repo
    assert repo.versions("sneaky") == [] and "sneaky" not in repo.model_names()
    assert "escape" not in repo.model_names()
    status, _, body = call(served, "GET", "/v1/models")
    names = [m["name"] for m in json.loads(body)["models"]]
    assert status == 200 and "half" in names and "escape" not in names and "sneaky" not in names
    status, _, body = call(served, "POST", "/v1/models/sneaky/versions/7:predict", {"instances": [1.0]})
    assert status == 404


# --- 4. bounds -------------------------------------------------------------------------------------
def raw_connection(served, timeout=10):
    s = socket.create_connection(("127.0.0.1", served["port"]), timeout=timeout)
    return s


def read_until_closed(s, limit=5.0) -> bytes:
    s.settimeout(limit)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def test_slow_and_oversized_request_heads_are_cut_off(served):
    t = time.perf_counter()
    idle = raw_connection(served)  # sends nothing at all
    slow = raw_connection(served)  # trickles its headers
    slow.sendall(b"POST /v1/models/half:predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    assert b"408" in read_until_closed(slow).split(b"\r\n", 1)[0]
    assert b"408" in read_until_closed(idle).split(b"\r\n", 1)[0]
    assert time.perf_counter() - t < HEADER_TIMEOUT + 3
    big = raw_connection(served)
    big.sendall(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20000)
    assert b"431" in read_until_closed(big).split(b"\r\n", 1)[0]
    for s in (idle, slow, big):
        s.close()


def test_slow_body_times_out(served):
    s = raw_connection(served)
    host = f"127.0.0.1:{served['port']}"
    s.sendall(f"POST /v1/models/half:predict HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n"
              f"Content-Type: application/json\r\n\r\n".encode() + b'{"instances": [')
    t = time.perf_counter()
    reply = read_until_closed(s, BODY_TIMEOUT + 5)
    s.close()
    assert reply.startswith(b"HTTP/1.1 408") and b"--body_timeout" in reply
    assert time.perf_counter() - t < BODY_TIMEOUT + 3


def test_connections_are_capped(served):
    socks = [raw_connection(served) for _ in range(MAX_CONNECTIONS + 3)]
    try:
        time.sleep(0.3)
        refused = 0
        for s in socks[MAX_CONNECTIONS:]:
            reply = read_until_closed(s, 2.0)
            refused += reply.startswith(b"HTTP/1.1 503") and b"retry-after: 1" in reply.lower()
        assert refused == 3
    finally:
        for s in socks:
            s.close()
    time.sleep(0.3)
    status, _, _ = call(served, "GET", "/v1/models/half")
    assert status == 200


def test_full_queue_is_503_and_the_pipeline_does_not_starve_predict(served):
    """Pipeline: 1 thread + 1 waiting place. Four concurrent requests: two are refused at once
    with Retry-After; while the others run, :predict answers as fast as without them."""
    p2a = "/v1/pipelines/photo2anime?model=x"

    def pipeline_request(_):
        return call(served, "POST", p2a, b"photo")
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(pipeline_request, i) for i in range(4)]
        time.sleep(0.4)
        t = time.perf_counter()
        for _ in range(5):
            status, _, body = call(served, "POST", "/v1/models/half:predict", {"instances": [1.0]})
            assert status == 200 and json.loads(body) == {"predictions": [3.5]}
        predict_s = (time.perf_counter() - t) / 5
        results = [f.result() for f in futures]
    assert predict_s < PIPELINE_SECONDS / 3, predict_s
    statuses = sorted(r[0] for r in results)
    assert statuses == [200, 200, 503, 503], statuses
    busy = [r for r in results if r[0] == 503]
    assert all(r[1].get("retry-after") == "1" and "--pipeline_max_queued" in error_of(r[2])
               for r in busy)


def test_model_queue_is_bounded(served, monkeypatch):
    server = served["server"]
    real = server.predict
    monkeypatch.setattr(server, "predict", lambda *a: (time.sleep(1.0), real(*a))[1])
    with concurrent.futures.ThreadPoolExecutor(6) as pool:  # 2 workers + 2 waiting places
        results = list(pool.map(lambda _: call(served, "POST", "/v1/models/half:predict",
                                                {"instances": [1.0]}), range(6)))
    statuses = sorted(r[0] for r in results)
    assert statuses == [200] * 4 + [503] * 2, statuses
    assert all(r[1].get("retry-after") == "1" for r in results if r[0] == 503)


# --- 5. malformed numbers --------------------------------------------------------------------------
def test_malformed_numbers_are_400_and_internal_errors_say_nothing(served, monkeypatch):
    long = "9" * 5000
    for path in ("/v1/models/half/versions/%C2%B2", f"/v1/models/half/versions/{long}",
                 "/v1/models/half/versions/%C2%B2/metadata"):
        status, headers, body = call(served, "GET", path)
        assert status == 400 and "not an integer" in error_of(body) and len(body) < 300, (path, body)
    status, _, body = call(served, "GET", "/v1/models/half/versions/1%0A")  # "1\n" is not "1"
    assert status == 400 and "not an integer" in error_of(body)
    status, _, body = call(served, "POST", "/v1/models/half/versions/%C2%B2:predict", {"instances": [1.0]})
    assert status == 400
    for query in ("version=%C2%B2", f"version={long}", "version="):
        status, _, body = call(served, "POST", f"/v1/pipelines/photo2anime?model=x&{query}", b"photo")
        assert status == 400 and "version" in error_of(body), (query, body)
    for seed in ("²", long, "", "-1"):
        with pytest.raises(ServingError) as e:
            pipeline_mod.Photo2Anime.parse_options({"seed": seed})
        assert e.value.status == 400 and "seed" in e.value.message
    deep = b"[" * 100_000 + b"]" * 100_000
    status, _, body = call(served, "POST", "/v1/models/half:predict", b'{"instances": ' + deep + b"}")
    assert status == 400 and "nested too deeply" in error_of(body)
    nested = b"[" * 900 + b"1.0" + b"]" * 900  # parses, then is deeper than any tensor
    status, _, body = call(served, "POST", "/v1/models/half:predict", b'{"instances": ' + nested + b"}")
    assert status == 400, body
    with pytest.raises(ServingError) as e:
        pipeline_mod.image_bytes(b'{"b64": ' + deep + b"}", "application/json")
    assert e.value.status == 400
    # an internal error is a 500 that names nothing of the code
    server = served["server"]
    monkeypatch.setattr(server, "predict", lambda *a: {}["secret /srv/code.py line 3"])
    status, _, body = call(served, "POST", "/v1/models/half:predict", {"instances": [1.0]})
    assert status == 500 and error_of(body) == "internal error (see the server log)"


# --- 6. paths --------------------------------------------------------------------------------------
def test_errors_name_model_and_version_not_paths(served):
    root = str(served["root"])
    status, _, body = call(served, "GET", "/v1/models/broken/metadata")
    assert status == 500 and "model broken version 1 failed to load" in error_of(body)
    status, _, body = call(served, "GET", "/v1/models/broken")
    assert status == 200 and "model broken version 1" in body.decode()
    status, _, body = call(served, "POST", "/v1/models/reader:predict", {"instances": [1.0]})
    assert status == 500 and "model reader version 1" in error_of(body), body
    for path in ("/v1/models/broken/metadata", "/v1/models/broken", "/v1/models/reader:predict"):
        status, _, body = call(served, "POST" if "predict" in path else "GET", path,
                               {"instances": [1.0]} if "predict" in path else None)
        assert root not in body.decode() and "/tmp/" not in body.decode(), body


# --- 7. trust and origin ---------------------------------------------------------------------------
def test_host_header_is_checked(served):
    port = served["port"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST:{port}"):
        status, _, _ = call(served, "GET", "/v1/models/half", headers={"Host": host})
        assert status == 200, host
    for host in (f"attacker.example:{port}", "attacker.example", f"127.0.0.1:{port + 1}",
                 "127.0.0.1", f"10.0.0.1:{port}"):
        status, _, body = call(served, "POST", "/v1/models/half:predict", {"instances": [1.0]},
                               headers={"Host": host})
        assert status == 400 and "--allowed_hosts" in error_of(body), host
    s = raw_connection(served)  # HTTP/1.0 without a Host header
    s.sendall(b"GET /v1/models/half HTTP/1.0\r\n\r\n")
    assert read_until_closed(s).startswith(b"HTTP/1.1 400")
    s.close()


def test_host_policy_rules():
    loop = HostPolicy("127.0.0.1", 8501, ["api.example", "proxy.example:443"])
    assert loop.allows("localhost:8501") and loop.allows("api.example") and loop.allows("api.example:1")
    assert loop.allows("proxy.example:443") and not loop.allows("proxy.example:8501")
    assert not loop.allows("other.example:8501") and not loop.allows(None) and not loop.allows("")
    assert not loop.allows("127.0.0.1:x") and not loop.allows("[::1]x")
    web = HostPolicy("0.0.0.0", 80)
    assert web.allows("192.168.1.5") and web.allows("[fe80::1]") and web.allows(socket.gethostname())
    assert not web.allows("attacker.example") and not web.allows("192.168.1.5:8080")
    assert HostPolicy("127.0.0.1", 1, ["*"]).allows("anything.example:9")


def test_cross_origin_posts_do_not_run_models(served):
    port = served["port"]
    p = "/v1/models/half:predict"
    for origin in ("http://attacker.example", "null", f"http://localhost:{port + 1}"):
        status, headers, body = call(served, "POST", p, {"instances": [1.0]}, headers={"Origin": origin})
        assert status == 403 and "--cors_allow_origin" in error_of(body), origin
        assert "access-control-allow-origin" not in headers
    status, _, body = call(served, "POST", "/v1/pipelines/photo2anime?model=x", b"photo",
                           headers={"Origin": "http://attacker.example"})
    assert status == 403
    status, _, _ = call(served, "POST", p, {"instances": [1.0]}, headers={"Origin": f"http://127.0.0.1:{port}"})
    assert status == 200  # the server's own origin
    status, _, _ = call(served, "GET", "/v1/models/half", headers={"Origin": "http://attacker.example"})
    assert status == 200  # reads are harmless (the browser hides the answer without CORS)


def asgi_call(app, method, headers):
    """One request straight into an ASGI app -> (status, headers dict)."""
    sent = []

    async def receive():
        return {"type": "http.request", "body": b'{"instances": [1.0]}', "more_body": False}

    async def send(message):
        sent.append(message)
    scope = {"type": "http", "method": method, "path": "/", "raw_path": b"/", "query_string": b"",
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "http_version": "1.1", "scheme": "http", "server": ("127.0.0.1", 8501),
             "client": ("127.0.0.1", 5), "root_path": ""}
    asyncio.run(app(scope, receive, send))
    start = sent[0]
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


def test_cors_allow_origin_lets_listed_pages_in():
    from starlette.middleware.cors import CORSMiddleware
    from starlette.responses import JSONResponse

    async def inner(scope, receive, send):
        await JSONResponse({"ran": True})(scope, receive, send)
    app = AccessGuard(CORSMiddleware(inner, allow_origins=["https://app.example"],
                                     allow_methods=["GET", "POST"], allow_headers=["Content-Type"]),
                      HostPolicy("127.0.0.1", 8501), ["https://app.example"])
    host = {"Host": "127.0.0.1:8501"}
    status, headers = asgi_call(app, "POST", {**host, "Origin": "https://app.example"})
    assert status == 200 and headers["access-control-allow-origin"] == "https://app.example"
    status, _ = asgi_call(app, "POST", {**host, "Origin": "https://other.example"})
    assert status == 403
    status, headers = asgi_call(app, "OPTIONS", {**host, "Origin": "https://app.example",
                                                 "Access-Control-Request-Method": "POST",
                                                 "Access-Control-Request-Headers": "content-type"})
    assert status == 200 and "POST" in headers["access-control-allow-methods"]


def test_help_says_the_model_base_path_is_trusted_like_code():
    cli = os.path.join(ROOT, "tools", "serve.py")
    r = subprocess.run([sys.executable, cli, "--help"], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert r.returncode == 0 and "trusted like code" in r.stdout
    for flag in ("--max_batch_size", "--max_queued", "--pipeline_workers", "--max_connections",
                 "--header_timeout", "--body_timeout", "--allowed_hosts", "--cors_allow_origin"):
        assert flag in r.stdout, flag


def test_serve_cli_applies_the_bounds(tmp_path):
    """tools/serve.py wires the limits into uvicorn: Host check, head timeout, connection cap."""
    import re
    base = tmp_path / "models"
    save(HalfPlus(3.0), str(base / "half" / "1"))
    cli = os.path.join(ROOT, "tools", "serve.py")
    proc = subprocess.Popen([sys.executable, cli, f"--model_base_path={base}", "--rest_api_port=0",
                             "--header_timeout=1", "--max_connections=3", "--log_level=critical"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        m = None
        deadline = time.time() + 120
        while m is None and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert m, "the server did not start"
        served = {"port": int(m.group(1))}
        status, _, body = call(served, "POST", "/v1/models/half:predict", {"instances": [1.0]})
        assert status == 200 and json.loads(body) == {"predictions": [3.5]}
        status, _, _ = call(served, "GET", "/v1/models/half", headers={"Host": "attacker.example"})
        assert status == 400
        idle = [raw_connection(served) for _ in range(4)]
        replies = [read_until_closed(s, 4.0) for s in idle]
        assert sum(r.startswith(b"HTTP/1.1 503") for r in replies) == 1, replies
        assert sum(r.startswith(b"HTTP/1.1 408") for r in replies) == 3, replies
        for s in idle:
            s.close()
    finally:
        proc.terminate()
        proc.wait(30)
