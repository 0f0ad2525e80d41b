"""The ASGI application: TensorFlow Serving's REST API over a Repository (Starlette).

  GET  /v1/models/NAME[/versions/N]              status (GetModelStatusResponse JSON)
  GET  /v1/models/NAME[/versions/N]/metadata     signature_def map (GetModelMetadataResponse JSON)
  POST /v1/models/NAME[/versions/N]:predict      "instances" | "inputs", "signature_name"
  POST /v1/pipelines/photo2anime?model=NAME      photo (JPEG/PNG body or {"b64": ...}) -> PNG
       [&version=N&hair=%23rrggbb&skin=...&eye=...&seed=N&anime_proportions=0]
  GET  /v1/models                                names and versions (not in TF Serving)

Everything that touches TensorFlow or parses a large body runs in a thread pool, never on the event
loop, so slow models do not stall other requests. With `timing`, predict responses carry a
Server-Timing header (W3C; browsers' developer tools show it): read (body), queue (wait for a
pool thread), parse (JSON, base64, checks), model (the signature call), encode (output JSON),
back (hand-over to the event loop), in milliseconds. Errors are {"error": "..."} with 400 (bad
request), 403 (cross-origin POST), 404 (no such model / version / route), 405, 408 (body too
slow), 413 (body, batch or image too large), 422 (no usable face), 500 (model failed; never
Python's text), 503 with Retry-After (queue full).

Bounds: model requests (status, metadata, :predict) and the pipeline have separate WorkQueues
(limits.py); image sizes are read from the headers before TensorFlow decodes (image_limits.py);
connections and request heads are bounded in connections.py, Host and Origin in access.py.
"""
from __future__ import annotations

import logging
import re
import socket
import time
from typing import Dict, Iterable, List, Optional

import numpy as np
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tools.serving import image_limits, tfjson
from tools.serving.limits import WorkQueue, read_body
from tools.serving.repository import Repository, ServingError, parse_number, scrub_paths

MODEL_PATH_RE = re.compile(
    r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+)|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>/metadata|:[A-Za-z]+)?/?\Z")
# A body timed out: the connection is closed. After other early answers (413, 503) uvicorn reads
# and drops the rest of the body (no memory kept), so that clients still get to read the answer.
CLOSE_AFTER = (408,)
log = logging.getLogger("tools.serving")


def error_response(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> Response:
    headers = dict(headers or {})
    if status in CLOSE_AFTER:
        headers["Connection"] = "close"
    return Response(tfjson.dumps({"error": message}), status_code=status, headers=headers,
                    media_type="application/json")


def json_response(obj, status: int = 200) -> Response:
    return Response(tfjson.dumps(obj), status_code=status, media_type="application/json")


def clean_tf_message(message: str) -> str:
    """TensorFlow's op error text without function/node/op decorations."""
    if "<stack traces unavailable>" in message:
        message = message.split("<stack traces unavailable>", 1)[1]
    message = message.replace("Graph execution error:", "")
    message = re.sub(r"\{\{function_node [^}]*\}\}", "", message)
    message = re.sub(r"\[\[.*?\]\]", "", message, flags=re.S)
    message = re.sub(r"\[Op:[^\]]*\]", "", message)
    return " ".join(message.split()).strip(" :") or "the model rejected the input"


def check_image(data, max_pixels: int, where: str) -> None:
    """400 for bytes that are not a sizable JPEG/PNG/GIF/BMP/WebP, 413 over `max_pixels`
    (frames x width x height, read from the header as the decoder will, before decoding)."""
    if not isinstance(data, bytes):
        raise ServingError(400, f"{where}: expected image bytes")
    try:
        w, h, frames = image_limits.image_pixels(data)
    except image_limits.UnsizableImage as e:
        raise ServingError(400, f"{where}: {e}") from None
    if w * h * frames > max_pixels:
        size = f"{w}x{h}" + (f" x {frames} frames" if frames > 1 else "")
        raise ServingError(413, f"{where}: image of {size} = {w * h * frames} pixels is over the "
                                f"limit of {max_pixels} (--max_image_pixels)")


def check_image_sizes(arrays: Dict[str, np.ndarray], image_inputs: List[str], max_pixels: int) -> None:
    """check_image for every element of the inputs that the signature decodes as images."""
    for name in image_inputs:
        arr = arrays.get(name)
        if arr is None:
            continue
        for i, b in enumerate(np.asarray(arr, dtype=object).reshape(-1)):
            check_image(b, max_pixels, f"input {name!r} element {i}")


class Server:
    """Request handlers with their limits; the blocking parts run in two bounded WorkQueues."""

    def __init__(self, repository: Repository, max_body_bytes: int = 32 << 20,
                 max_image_pixels: int = 40_000_000, workers: int = 4, pipeline=None,
                 timing: bool = False, max_batch_size: int = 64, max_queued: int = 16,
                 pipeline_workers: int = 1, pipeline_max_queued: int = 2,
                 body_timeout: float = 60.0):
        self.repo = repository
        self.timing = bool(timing)
        self.max_body_bytes = int(max_body_bytes)
        self.max_image_pixels = int(max_image_pixels)
        self.max_batch_size = int(max_batch_size)
        self.body_timeout = float(body_timeout)
        self.models_queue = WorkQueue("model", workers, max_queued, "--workers, --max_queued")
        self.pipeline_queue = WorkQueue("photo2anime", pipeline_workers, pipeline_max_queued,
                                        "--pipeline_workers, --pipeline_max_queued")
        self.pool = self.models_queue.pool
        self.pipeline = pipeline

    async def offload(self, fn, *args):
        return await self.models_queue.run(fn, *args)

    async def read_body(self, request: Request) -> bytes:
        return await read_body(request, self.max_body_bytes, self.body_timeout)

    def shutdown(self) -> None:
        self.models_queue.shutdown()
        self.pipeline_queue.shutdown()

    # --- /v1/models/... ---------------------------------------------------------------------
    async def models(self, request: Request) -> Response:
        rest = request.scope["path"][len("/v1/models/"):]  # not path_params: its ".*" stops at "\n"
        m = MODEL_PATH_RE.match(rest)
        if not m:
            raise ServingError(404, f"no such endpoint: {request.url.path}")
        name, version, verb = m["name"], m["version"], m["verb"] or ""
        if m["label"] is not None:
            raise ServingError(404, "version labels are not supported here; use /versions/N")
        if version is not None:
            version = parse_number(version, "version")
        with self.models_queue.admit():
            return await self._models(request, name, version, verb)

    async def _models(self, request: Request, name: str, version: Optional[int], verb: str):
        if request.method == "GET":
            if verb == "/metadata":
                return json_response(await self.offload(self.metadata, name, version))
            if verb == "":
                return json_response(await self.offload(self.status, name, version))
            raise ServingError(405, f"{verb.lstrip(':/')} needs POST")
        if verb == ":predict":
            if self.timing:
                return await self.timed_predict(request, name, version)
            body = await self.read_body(request)
            return Response(await self.offload(self.predict, name, version, body),
                            media_type="application/json")
        if verb in (":classify", ":regress"):
            raise ServingError(400, f"{verb[1:]} is not supported by this server; use :predict")
        raise ServingError(405 if verb in ("", "/metadata") else 404,
                           f"no POST endpoint {request.url.path} (use :predict)")

    def status(self, name: str, version: Optional[int]) -> Dict:
        self.repo.model_dir(name)
        if version is not None:
            try:
                self.repo.get(name, version)
            except ServingError as e:
                if e.status == 404:
                    raise
            return {"model_version_status": [self._version_status(name, version)]}
        try:
            self.repo.get(name)  # a real readiness check: the served version is loaded
        except ServingError as e:
            if e.status == 404:
                raise
        self.repo.forget_missing(name)
        shown = [v for v in reversed(self.repo.versions(name))
                 if self.repo.loaded(name, v) or self.repo.failure(name, v)]
        served = self.repo.served_version(name)
        if served is not None and served not in shown:  # gone from disk, served from memory
            shown = sorted(shown + [served], reverse=True)
        return {"model_version_status": [self._version_status(name, v) for v in shown]}

    def _version_status(self, name: str, version: int) -> Dict:
        failed = self.repo.failure(name, version)
        if failed:
            return {"version": str(version), "state": "END",
                    "status": {"error_code": "UNKNOWN", "error_message": failed}}
        return {"version": str(version), "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""}}

    def metadata(self, name: str, version: Optional[int]) -> Dict:
        model = self.repo.get(name, version)
        return {"model_spec": {"name": name, "signature_name": "", "version": str(model.version)},
                "metadata": {"signature_def": model.metadata}}

    async def timed_predict(self, request: Request, name: str, version: Optional[int]) -> Response:
        """predict with a Server-Timing header (see the module docstring)."""
        marks = [time.perf_counter()]
        body = await self.read_body(request)
        marks.append(time.perf_counter())

        def job():
            marks.append(time.perf_counter())
            return self.predict(name, version, body, marks)
        out = await self.offload(job)
        marks.append(time.perf_counter())
        phases = ("read", "queue", "parse", "model", "encode", "back")
        header = ", ".join(f"{p};dur={1e3 * (b - a):.3f}" for p, a, b in zip(phases, marks, marks[1:]))
        return Response(out, media_type="application/json", headers={"Server-Timing": header})

    def predict(self, name: str, version: Optional[int], body: bytes, marks=None) -> bytes:
        """One :predict request -> the response JSON. `marks`, when a list, gets the times at which
        parsing, the model call and encoding end (for timed_predict)."""
        req = tfjson.parse_json(body)
        model = self.repo.get(name, version)
        sig = req.get("signature_name") or "serving_default"
        if not isinstance(sig, str) or sig not in model.signatures:
            shown = sig if isinstance(sig, str) and len(sig) <= 100 else "(not a short string)"
            raise ServingError(400, f"serving signature name {shown!r} not found in signature def; "
                                    f"this model has {sorted(model.signatures)}")
        try:
            arrays, rows = tfjson.parse_predict(req, model.inputs[sig], self.max_batch_size)
        except RecursionError:
            raise ServingError(400, "the request's values are nested too deeply") from None
        check_image_sizes(arrays, model.image_inputs.get(sig, []), self.max_image_pixels)
        if marks is not None:
            marks.append(time.perf_counter())
        outputs = run_signature(model, sig, arrays)
        if marks is not None:
            marks.append(time.perf_counter())
        out = tfjson.dumps(tfjson.format_outputs(outputs, rows))
        if marks is not None:
            marks.append(time.perf_counter())
        return out

    async def list_models(self, request: Request) -> Response:
        def listing():
            return {"models": [{"name": n, "versions": [str(v) for v in self.repo.versions(n)]}
                               for n in self.repo.model_names()]}
        with self.models_queue.admit():
            return json_response(await self.offload(listing))

    # --- /v1/pipelines/photo2anime ----------------------------------------------------------
    async def photo2anime(self, request: Request) -> Response:
        if self.pipeline is None:
            raise ServingError(404, "the photo2anime pipeline is not enabled on this server")
        model = request.query_params.get("model")
        version = request.query_params.get("version")
        if version is not None:
            version = parse_number(version, "version")
        options = {k: request.query_params[k] for k in ("hair", "skin", "eye", "seed",
                                                          "anime_proportions")
                   if k in request.query_params}
        with self.pipeline_queue.admit():
            body = await self.read_body(request)
            png, headers = await self.pipeline_queue.run(
                self.pipeline.run, body, request.headers.get("content-type", ""), model,
                version, options)
        return Response(png, media_type="image/png", headers=headers)


def run_signature(model, sig: str, arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """Calls a signature; TF's input errors become 400, other failures 500, named by model and
    version, without server paths."""
    import tensorflow as tf
    specs = model.inputs[sig]
    where = f"model {model.name} version {model.version}"
    try:
        tensors = {n: tf.constant(a, dtype=specs[n].dtype) for n, a in arrays.items()}
        out = model.signatures[sig](**tensors)
    except tf.errors.InvalidArgumentError as e:
        raise ServingError(400, scrub_paths(clean_tf_message(e.message))) from None
    except (tf.errors.ResourceExhaustedError, MemoryError):
        raise ServingError(413, "the input is too large for this model (out of memory)") from None
    except tf.errors.OpError as e:
        raise ServingError(500, f"{where} failed: {scrub_paths(clean_tf_message(e.message))}") from None
    except (TypeError, ValueError) as e:
        raise ServingError(400, f"the inputs do not fit signature {sig!r}: "
                                f"{scrub_paths(str(e))[:300]}") from None
    return {k: v.numpy() for k, v in out.items()}


def listen_socket(host: str, port: int) -> socket.socket:
    """A bound TCP socket for uvicorn's `sockets=`. Created with proto=IPPROTO_TCP on purpose:
    asyncio only disables Nagle (TCP_NODELAY) on connections whose socket says so, and
    without it every keep-alive request waits for a delayed ACK (tens of ms)."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(2048)  # connections queue from here on, before the event loop starts
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def build_app(server: Server, hosts=None, cors_origins: Iterable[str] = ()):
    """The ASGI app; with `hosts` (an access.HostPolicy) wrapped in access.AccessGuard, and in
    Starlette's CORSMiddleware for `cors_origins`."""
    async def on_serving_error(request, exc: ServingError):
        return error_response(exc.status, exc.message, exc.headers)

    async def on_http_error(request, exc: HTTPException):
        return error_response(exc.status_code, exc.detail or "error")

    async def on_error(request, exc: Exception):
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return error_response(500, "internal error (see the server log)")

    routes = [
        Route("/v1/models", server.list_models, methods=["GET"]),
        Route("/v1/models/{rest:path}", server.models, methods=["GET", "POST"]),
        Route("/v1/pipelines/photo2anime", server.photo2anime, methods=["POST"]),
    ]
    app = Starlette(routes=routes, exception_handlers={
        ServingError: on_serving_error, HTTPException: on_http_error, Exception: on_error})
    app.state.server = server
    cors_origins = [o for o in cors_origins if o]
    if cors_origins:
        from starlette.middleware.cors import CORSMiddleware
        app = CORSMiddleware(app, allow_origins=cors_origins, allow_methods=["GET", "POST"],
                             allow_headers=["Content-Type"], max_age=600)
    if hosts is not None:
        from tools.serving.access import AccessGuard
        app = AccessGuard(app, hosts, cors_origins)
    return app
