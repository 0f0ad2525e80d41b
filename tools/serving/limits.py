"""Bounded work queues and body reading for the request handlers (all used on the event loop).

A WorkQueue is a thread pool with a cap on admitted requests (running + waiting): a request is
admitted before its body is read, so a full server neither queues without end nor buffers the
bodies of requests it cannot run soon; beyond the cap the answer is 503 with Retry-After. The
server has one queue for model requests and one for the photo2anime pipeline, so slow pipeline
requests never take the threads or queue places of :predict.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib

from tools.serving.repository import ServingError

RETRY_AFTER_S = 1


class WorkQueue:
    def __init__(self, name: str, workers: int, max_queued: int, flags: str = ""):
        self.name = name
        self.workers = max(1, int(workers))
        self.capacity = self.workers + max(0, int(max_queued))
        self.flags = flags
        self.admitted = 0
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers,
                                                          thread_name_prefix=name)

    @contextlib.contextmanager
    def admit(self):
        """Holds a place for one request; 503 with Retry-After when none is free."""
        if self.admitted >= self.capacity:
            raise ServingError(503, f"the server is busy: {self.capacity} {self.name} requests are "
                                    f"running or waiting ({self.flags}); retry later",
                               headers={"Retry-After": str(RETRY_AFTER_S)})
        self.admitted += 1
        try:
            yield
        finally:
            self.admitted -= 1

    async def run(self, fn, *args):
        """fn(*args) on a pool thread. If the request is cancelled, its place is kept until the
        thread is done, so cancelled requests cannot pile work up behind the cap."""
        job = asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)
        try:
            return await asyncio.shield(job)
        except asyncio.CancelledError:
            await asyncio.wait([job])
            raise

    def shutdown(self, wait: bool = False) -> None:
        self.pool.shutdown(wait=wait, cancel_futures=True)


async def read_body(request, max_bytes: int, timeout: float) -> bytes:
    """The request body: 413 over `max_bytes` (declared or streamed), 408 when it takes longer
    than `timeout` seconds."""
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and len(declared) < 20 and int(declared) > max_bytes:
        raise ServingError(413, f"request body of {int(declared)} bytes is over the limit of "
                                f"{max_bytes} bytes (--max_body_bytes)")

    async def collect() -> bytes:
        chunks, n = [], 0
        async for chunk in request.stream():
            n += len(chunk)
            if n > max_bytes:
                raise ServingError(413, f"request body is over the limit of {max_bytes} bytes "
                                        f"(--max_body_bytes)")
            chunks.append(chunk)
        return b"".join(chunks)
    try:
        return await asyncio.wait_for(collect(), timeout)
    except asyncio.TimeoutError:
        raise ServingError(408, f"the request body did not arrive within {timeout:g} s "
                                f"(--body_timeout)") from None
