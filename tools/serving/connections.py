"""Connection-level bounds uvicorn does not have: open connections, request-head time and size.

uvicorn answers 503 once `limit_concurrency` connections or tasks exist, but still accepts and
keeps every further connection, and it times out only idle keep-alive connections: a client that
connects and sends nothing, or trickles its headers, holds a socket (a file descriptor) forever.
`guarded_protocol(...)` returns uvicorn's own HTTP protocol class with additions, passed to
uvicorn as `Config(http=...)`:
  - connections beyond `max_connections` get a 503 with Retry-After and are closed at once;
  - the head of each request (request line and headers) must arrive within `header_timeout` s
    of the connection or of the request's first byte (keep-alive), else 408 and close;
  - a head over `max_header_bytes` gets 431 and the connection is closed.
The head bounds need httptools' parser callbacks (on_message_begin / on_headers_complete); with
uvicorn's h11 fallback only the connection cap applies, and uvicorn's own
h11_max_incomplete_event_size bounds the head size.
"""
from __future__ import annotations

import json

from uvicorn.protocols.http.auto import AutoHTTPProtocol

HEAD_CALLBACKS = hasattr(AutoHTTPProtocol, "on_message_begin") and hasattr(AutoHTTPProtocol,
                                                                           "on_headers_complete")


def raw_response(status: int, reason: str, message: str, retry_after: int = 0) -> bytes:
    body = json.dumps({"error": message}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json",
            f"content-length: {len(body)}", "connection: close"]
    if retry_after:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def guarded_protocol(max_connections: int, header_timeout: float, max_header_bytes: int):
    """uvicorn's HTTP protocol class with the bounds of the module docstring."""

    class GuardedProtocol(AutoHTTPProtocol):
        _head_timer = None
        _in_head = False
        _head_bytes = 0

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                transport.write(raw_response(503, "Service Unavailable",
                                             f"the server has {max_connections} connections open "
                                             "(--max_connections); retry later", retry_after=1))
                transport.close()
                return
            if HEAD_CALLBACKS:
                self._start_head_timer()

        def _start_head_timer(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout, self._head_timed_out)

        def _stop_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _refuse(self, status: int, reason: str, message: str) -> None:
            self._stop_head_timer()
            if not self.transport.is_closing():
                self.transport.write(raw_response(status, reason, message))
                self.transport.close()

        def _head_timed_out(self) -> None:
            self._head_timer = None
            self._refuse(408, "Request Timeout",
                         f"the request headers did not arrive within {header_timeout:g} s")

        def on_message_begin(self) -> None:  # httptools: the first byte of a request
            super().on_message_begin()
            self._in_head, self._head_bytes = True, 0
            self._start_head_timer()

        def on_headers_complete(self) -> None:
            self._in_head = False
            self._stop_head_timer()
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            if self.transport.is_closing():
                return
            super().data_received(data)
            if self._in_head:  # still in the head after this chunk: all of it was head
                self._head_bytes += len(data)
                if self._head_bytes > max_header_bytes:
                    self._refuse(431, "Request Header Fields Too Large",
                                 f"request headers over {max_header_bytes} bytes")

        def connection_lost(self, exc) -> None:
            self._stop_head_timer()
            super().connection_lost(exc)

    return GuardedProtocol
