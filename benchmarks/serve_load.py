"""Load on tools/serve.py over loopback, against the in-process signature call measured in the same run.

  python benchmarks/serve_load.py [--clients=8] [--duration=30] [--models=tagger,translator]
      [--tagger_backbone=mobilenet_v2] [--tagger_size=224] [--translator_size=128]

Builds random-weight models (no downloads), exports them (tagnet/export.py, translate/export.py),
starts the server as a subprocess on a free loopback port, and per model measures:
  1. in process: `signature(...)` on a batch-1 request (the tagger: a 512 px JPEG photo; the translator:
     pix2pix keypoints + colours), median time and calls/s: the baseline; alternated call by call
     with 2. one client's HTTP requests (p50 latency), so both see the same machine load.
     Server overhead per request = p50(HTTP) - median(in process), also as a share of the model
     time (goal for the tagger: <= 15%), the same from the fastest call of each kind, and the
     server's CPU time per request against the in-process call's (robust to a busy machine; it
     counts the server's CPU between requests too, measured at <= 0.2 ms in the 100 ms after a
     request, so TF's thread pools do not spin on after a call);
  3. --clients concurrent clients (keep-alive connections) for --duration s: requests/s, p50 and
     p99 latency, failed requests (must be 0), and the server's resident memory (VmRSS) after
     it and at its peak (VmHWM);
  4. with --pipeline_clients=N (needs both models): step 3 for the tagger again while N clients
     keep posting photos to /v1/pipelines/photo2anime?model=translator (the :predict figures
     under that contention, and the pipeline's answers by status: 503 is its queue refusing).
--server_args passes flags to tools/serve.py (e.g. "--workers=2 --max_queued=8").
--server_timing starts the server with its Server-Timing header and adds the median server-side
phases of step 2 (read, queue, parse, model, encode, back; the header costs < 0.05 ms), so the
model's time inside the server can be compared with the in-process call.
The last line is one JSON object with every figure.

What the overhead was: this process builds and runs the Keras model before it loads the SavedModel,
so its malloc has already grown and a signature call reuses freed memory (~10 minor page faults);
the server's glibc malloc gave the ~5 MB of activations back to the kernel after each request and
faulted them in again (~1,300 page faults, ~4 ms more CPU per request: 20% overhead instead of
~10%). tools/serve.py now keeps freed memory (--retain_freed_memory, on by default).
"""

import cliboot  # noqa: F401  (first: sys.path of the script form, TensorFlow's start-up notices)

import argparse
import base64
import http.client
import io
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOAL_OVERHEAD_SHARE = 0.15


def connect(port):
    """A keep-alive client connection with TCP_NODELAY, as urllib3 / requests set it (http.client
    sends headers and body in two writes; with Nagle on, the body waits for a delayed ACK)."""
    import socket
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    conn.connect()
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return conn


def percentile(values, q):
    import numpy as np
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def build_tagger(base, backbone, size):
    import numpy as np
    from tagnet import backbones, exporting as export, model_dir
    model = backbones.build_model(backbone, 100, size, weights=None)
    backbones.set_batch_norm_decay(model, 0.0)  # BN statistics from one batch: non-trivial outputs
    model(np.random.default_rng(0).uniform(0, 255, (4, size, size, 3)).astype(np.float32), training=True)
    src = os.path.join(os.path.dirname(base), "tagger_src")
    model_dir.save(model, src, backbone=backbone, image_size=size, tags=[f"tag{i}" for i in range(100)],
                   activation="sigmoid", task="multi_label")
    return export.export(src, os.path.join(base, "tagger"), verify=False)


def build_translator(base, size):
    from translate.datasets import pipelines as data
    from translate.inference import export
    from translate.models import pix2pix
    condition = "keypoints_colors"
    gen = pix2pix.unet_generator(size, data.CONDITION_CHANNELS[condition], ngf=32)
    module = export.TranslatorModule(gen, {"model": "pix2pix", "image_size": size, "condition": condition})
    return export.write_saved_model(module, os.path.join(base, "translator"))


def tagger_request():
    """A real photo as clients send it: scikit-image's astronaut, 512x512 JPEG at quality 90."""
    from PIL import Image
    from skimage import data
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=90)
    jpeg = buf.getvalue()
    return {"image": [jpeg]}, {"instances": [{"b64": base64.b64encode(jpeg).decode()}]}


def translator_request():
    kp = [[0.38, 0.40], [0.62, 0.40], [0.5, 0.55], [0.5, 0.68], [0.5, 0.85]]
    inst = {"keypoints": kp, "point_mask": [1.0] * 5, "colors": [[0.6, 0.3, 0.2]] * 4,
            "color_mask": [1.0] * 4}
    import numpy as np
    arrays = {k: np.asarray([v], np.float32) for k, v in inst.items()}
    return arrays, {"instances": [inst]}


def in_process_caller(path, arrays):
    """A function making one batch-1 `signature(...)` call in this process (warmed up)."""
    import tensorflow as tf
    fn = tf.saved_model.load(path).signatures["serving_default"]
    specs = fn.structured_input_signature[1]

    def call():
        out = fn(**{k: tf.constant(v, dtype=specs[k].dtype) for k, v in arrays.items()})
        return {k: v.numpy() for k, v in out.items()}
    for _ in range(3):
        call()
    return call


class Client:
    """One keep-alive connection posting one payload; failures are recorded, never raised."""

    def __init__(self, port, path, payload):
        self.port, self.path, self.payload = port, path, payload
        self.conn = connect(port)
        self.failures = []
        self.phases = {}  # Server-Timing phase -> [ms, ...] (when the server sends the header)

    def post(self) -> float:
        """One request; -> its latency in seconds."""
        t = time.perf_counter()
        try:
            self.conn.request("POST", self.path, body=self.payload,
                              headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            data = r.read()
            if r.status != 200:
                self.failures.append(f"{r.status}: {data[:200]!r}")
            for part in (r.getheader("Server-Timing") or "").split(","):
                phase, _, ms = part.strip().partition(";dur=")
                if ms:
                    self.phases.setdefault(phase, []).append(float(ms))
        except (OSError, http.client.HTTPException) as e:
            self.failures.append(f"{type(e).__name__}: {e}")
            self.conn.close()
            self.conn = connect(self.port)
        return time.perf_counter() - t

    def close(self):
        self.conn.close()


def process_cpu_seconds(pid):
    """User + system CPU seconds of a process (Linux /proc), or None."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def paired(inproc, port, path, body, seconds, server_pid):
    """Alternates one in-process call and one HTTP request (one client, keep-alive), so both
    see the same machine load. -> (in-process times, HTTP latencies, failures, in-process CPU s
    per call, server CPU s per request or None). CPU time does not count waiting for a CPU, so
    it stays meaningful on a busy machine."""
    client = Client(port, path, json.dumps(body).encode())
    t_in, t_http, cpu_in = [], [], 0.0
    cpu_server = process_cpu_seconds(server_pid)
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end or len(t_in) < 5:
        t, c = time.perf_counter(), time.process_time()
        inproc()
        t_in.append(time.perf_counter() - t)
        cpu_in += time.process_time() - c
        t_http.append(client.post())
    client.close()
    end = process_cpu_seconds(server_pid)
    per_request = (end - cpu_server) / len(t_http) if end is not None and cpu_server is not None else None
    phases = {k: percentile(v, 50) for k, v in client.phases.items()}
    return t_in, t_http, client.failures, cpu_in / len(t_in), per_request, phases


def load(port, path, body, clients, seconds):
    """`clients` threads, each with one keep-alive connection, posting for `seconds`."""
    lat, failures, lock = [], [], threading.Lock()
    payload = json.dumps(body).encode()
    t_end = time.perf_counter() + seconds

    def client():
        c = Client(port, path, payload)
        mine = []
        while time.perf_counter() < t_end:
            mine.append(c.post())
        c.close()
        with lock:
            lat.extend(mine)
            failures.extend(c.failures)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return {"requests": len(lat), "failed": len(failures), "rps": len(lat) / wall,
            "p50_ms": 1e3 * percentile(lat, 50), "p99_ms": 1e3 * percentile(lat, 99),
            "first_failures": failures[:3]}


def memory_mb(pid):
    """(VmRSS, VmHWM) of a process in MB (Linux /proc), or (None, None)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return tuple(int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
    except (OSError, KeyError, ValueError):
        return None, None


def photo_request():
    """The astronaut photo (one face) as JPEG bytes, for the photo2anime pipeline."""
    from PIL import Image
    from skimage import data
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def with_pipeline_load(port, path, body, clients, seconds, pipeline_clients):
    """load() while `pipeline_clients` threads post photos to the pipeline; -> (load() result,
    {pipeline status: count})."""
    photo, stop, statuses, lock = photo_request(), threading.Event(), {}, threading.Lock()

    def pipeline_client():
        conn = connect(port)
        while not stop.is_set():
            try:
                conn.request("POST", "/v1/pipelines/photo2anime?model=translator", body=photo,
                             headers={"Content-Type": "image/jpeg"})
                r = conn.getresponse()
                r.read()
                key = str(r.status)
                if r.status == 503:
                    time.sleep(float(r.getheader("Retry-After") or 1))
            except (OSError, http.client.HTTPException) as e:
                key = type(e).__name__
                conn.close()
                conn = connect(port)
            with lock:
                statuses[key] = statuses.get(key, 0) + 1
        conn.close()
    threads = [threading.Thread(target=pipeline_client) for _ in range(pipeline_clients)]
    for t in threads:
        t.start()
    time.sleep(2.0)  # the pipeline is busy before :predict is measured
    try:
        result = load(port, path, body, clients, seconds)
    finally:
        stop.set()
        for t in threads:
            t.join(120)
    return result, statuses


def start_server(base, server_timing=False, server_args=()):
    proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "tools", "serve.py"),
                             f"--model_base_path={base}", "--rest_api_port=0"]
                            + (["--server_timing"] if server_timing else []) + list(server_args),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    m = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not m:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, int(m.group(1))

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of concurrent load per model")
    ap.add_argument("--single_duration", type=float, default=None,
                    help="seconds of alternated in-process / one-client calls (default: duration / 2)")
    ap.add_argument("--models", default="tagger,translator")
    ap.add_argument("--tagger_backbone", default="mobilenet_v2")
    ap.add_argument("--tagger_size", type=int, default=224)
    ap.add_argument("--translator_size", type=int, default=128)
    ap.add_argument("--server_timing", action="store_true",
                    help="report the server's own per-phase times (Server-Timing header)")
    ap.add_argument("--pipeline_clients", type=int, default=0,
                    help="clients posting to the photo2anime pipeline during a repeat of the "
                         "tagger's concurrent load (needs both models)")
    ap.add_argument("--server_args", default="", help="extra tools/serve.py flags, space-separated")
    args = ap.parse_args()
    single = args.single_duration or args.duration / 2
    models = [m for m in args.models.split(",") if m]
    unknown = set(models) - {"tagger", "translator"}
    if unknown or not models:
        raise SystemExit(f"error: --models takes tagger and/or translator, not {sorted(unknown)}")

    results = {"clients": args.clients, "duration_s": args.duration,
               "loadavg_1min_start": os.getloadavg()[0],
               "goal_overhead_share": GOAL_OVERHEAD_SHARE}
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "models")
        paths, requests = {}, {}
        if "tagger" in models:
            paths["tagger"] = build_tagger(base, args.tagger_backbone, args.tagger_size)
            requests["tagger"] = tagger_request()
        if "translator" in models:
            paths["translator"] = build_translator(base, args.translator_size)
            requests["translator"] = translator_request()
        callers = {name: in_process_caller(paths[name], requests[name][0]) for name in models}
        proc, port = start_server(base, args.server_timing, args.server_args.split())
        try:
            for name in models:
                path = f"/v1/models/{name}:predict"
                body = requests[name][1]
                load(port, path, body, 1, 1.0)  # warm-up (the server's first call traces)
                results.setdefault("request_bytes", {})[name] = len(json.dumps(body))
                t_in, t_http, bad, cpu_in, cpu_server, phases = paired(callers[name], port, path, body,
                                                               single, proc.pid)
                many = load(port, path, body, args.clients, args.duration)
                med_in, med_http = percentile(t_in, 50), percentile(t_http, 50)
                r = results[name] = {
                    "inproc_ms": 1e3 * med_in, "inproc_per_s": len(t_in) / sum(t_in),
                    "c1_p50_ms": 1e3 * med_http, "c1_p99_ms": 1e3 * percentile(t_http, 99),
                    "c1_requests": len(t_http)}
                r["overhead_ms"] = r["c1_p50_ms"] - r["inproc_ms"]
                r["overhead_share"] = r["overhead_ms"] / r["inproc_ms"]
                # Best-case figures: the fastest call of each kind, least disturbed by other
                # processes (on a busy machine every hand-over between the client, the event
                # loop and the model thread waits for a CPU, which inflates the medians).
                r["inproc_min_ms"], r["c1_min_ms"] = 1e3 * min(t_in), 1e3 * min(t_http)
                r["overhead_min_ms"] = r["c1_min_ms"] - r["inproc_min_ms"]
                r["overhead_min_share"] = r["overhead_min_ms"] / r["inproc_min_ms"]
                r["inproc_cpu_ms"] = 1e3 * cpu_in
                if cpu_server is not None:  # CPU per request in the server beyond the model's
                    r["server_cpu_ms"] = 1e3 * cpu_server
                    r["overhead_cpu_share"] = (cpu_server - cpu_in) / cpu_in
                if phases:
                    r["server_phases_ms"] = phases
                r.update({f"c{args.clients}_{k}": v for k, v in many.items() if k != "first_failures"})
                r["server_rss_mb"], r["server_peak_rss_mb"] = memory_mb(proc.pid)
                r["failed"] = len(bad) + many["failed"]
                r["server_vs_inproc_rate"] = many["rps"] / r["inproc_per_s"]
                print(f"{name}: in process {r['inproc_ms']:.2f} ms per batch-1 call "
                      f"({r['inproc_per_s']:.1f}/s); 1 client p50 {r['c1_p50_ms']:.2f} ms -> server "
                      f"overhead {r['overhead_ms']:.2f} ms = {100 * r['overhead_share']:.1f}% of the "
                      f"model time (best calls: {r['inproc_min_ms']:.2f} vs {r['c1_min_ms']:.2f} ms, "
                      f"{100 * r['overhead_min_share']:.1f}%; CPU per request "
                      f"{r['inproc_cpu_ms']:.1f} ms in process vs {r.get('server_cpu_ms', float('nan')):.1f} "
                      f"ms in the server, {100 * r.get('overhead_cpu_share', float('nan')):.1f}%); "
                      f"{args.clients} clients: {many['rps']:.1f} req/s "
                      f"({r['server_vs_inproc_rate']:.2f}x the in-process rate), p50 "
                      f"{many['p50_ms']:.1f} ms, p99 {many['p99_ms']:.1f} ms, failed {r['failed']}; "
                      f"server RSS {r['server_rss_mb'] or float('nan'):.0f} MB "
                      f"(peak {r['server_peak_rss_mb'] or float('nan'):.0f} MB)", flush=True)
                if phases:
                    print(f"  inside the server (medians, ms): "
                          + ", ".join(f"{k} {v:.2f}" for k, v in phases.items())
                          + f"; model {phases.get('model', float('nan')):.2f} in the server vs "
                          f"{r['inproc_ms']:.2f} in process", flush=True)
                for f in bad[:3] + many["first_failures"]:
                    print(f"  failure: {f}", flush=True)
            if args.pipeline_clients and {"tagger", "translator"} <= set(models):
                path, body = "/v1/models/tagger:predict", requests["tagger"][1]
                many, statuses = with_pipeline_load(port, path, body, args.clients, args.duration,
                                                    args.pipeline_clients)
                rss, peak = memory_mb(proc.pid)
                results["tagger_with_pipeline"] = {
                    "pipeline_clients": args.pipeline_clients, "pipeline_statuses": statuses,
                    **{f"c{args.clients}_{k}": v for k, v in many.items() if k != "first_failures"},
                    "server_rss_mb": rss, "server_peak_rss_mb": peak}
                print(f"tagger with {args.pipeline_clients} photo2anime clients: {many['rps']:.1f} "
                      f"req/s, p50 {many['p50_ms']:.1f} ms, p99 {many['p99_ms']:.1f} ms, failed "
                      f"{many['failed']}; pipeline answers {statuses}; server RSS "
                      f"{rss or float('nan'):.0f} MB (peak {peak or float('nan'):.0f} MB)", flush=True)
                for f in many["first_failures"]:
                    print(f"  failure: {f}", flush=True)
        finally:
            proc.terminate()
            proc.wait(30)
    results["loadavg_1min_end"] = os.getloadavg()[0]
    print(f"machine load average (1 min) at the end: {results['loadavg_1min_end']:.1f} on "
          f"{os.cpu_count()} CPUs; figures are noisy when it is far above the CPU count", flush=True)
    ok = all(results[n]["failed"] == 0 for n in models)
    if "tagger_with_pipeline" in results:
        ok = ok and results["tagger_with_pipeline"][f"c{args.clients}_failed"] == 0
    if "tagger" in models:
        ok = ok and results["tagger"]["overhead_share"] <= GOAL_OVERHEAD_SHARE
    results["ok"] = ok
    print(json.dumps(results))


if __name__ == "__main__":
    main()
