"""Who may talk to the server: the Host header (DNS rebinding) and the Origin of POSTs (ASGI).

DNS rebinding: a web page on attacker.example re-points its name to 127.0.0.1 and then reads
the local server's answers as same-origin; its requests still carry `Host: attacker.example`.
So requests are answered only for Host names the server is known by: localhost, 127.0.0.1 and
[::1] (always), the bound IP address, any IP literal and this machine's name when bound to all
interfaces (0.0.0.0 / ::), each with the bound port (no port: 80), plus --allowed_hosts ("NAME"
any port, "NAME:PORT", "*" for any Host).

Cross-origin POSTs: any web page can make a browser POST to the server (a "simple" request needs
no CORS preflight), which would run models on the visitor's machine. A POST whose Origin header
is neither the server's own (http(s)://<Host>) nor in --cors_allow_origin is refused with 403;
clients that send no Origin (curl, scripts) are not affected. Allowed origins also get CORS
headers (Starlette's CORSMiddleware), so their pages can read the answers.
"""
from __future__ import annotations

import ipaddress
import json
import socket
from typing import Iterable, Optional, Set, Tuple

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "[::1]"})
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def split_host(value: str) -> Tuple[str, Optional[int]]:
    """'Name:8501' -> ('name', 8501); '[::1]' -> ('[::1]', None); a bad port -> -1."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value.partition("]")
        name, port = name + "]", rest[1:] if rest.startswith(":") else None
        if rest and not rest.startswith(":"):
            return value, -1
    elif value.count(":") == 1:
        name, port = value.split(":")
    else:
        name, port = value, None
    if port is None:
        return name, None
    return name, int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else -1


def _ip(name: str):
    try:
        return ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return None


class HostPolicy:
    """Which Host headers (name, port) the server answers (see the module docstring)."""

    def __init__(self, bind_host: str, port: int, allowed_hosts: Iterable[str] = ()):
        self.port = int(port)
        self.any_host = False
        self.names: Set[str] = set(LOOPBACK_NAMES)
        self.extra_any_port: Set[str] = set()
        self.extra: Set[Tuple[str, int]] = set()
        bound = _ip(bind_host)
        self.wildcard = bound is not None and bound.is_unspecified
        if bound is not None and not self.wildcard:
            self.names.add(f"[{bound}]" if bound.version == 6 else str(bound))
        elif bound is None:
            self.names.add(bind_host.lower())
        if self.wildcard:
            self.names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
        for entry in allowed_hosts:
            entry = entry.strip()
            if entry == "*":
                self.any_host = True
            elif entry:
                name, p = split_host(entry)
                (self.extra_any_port.add(name) if p is None else self.extra.add((name, p)))

    def allows(self, host: Optional[str]) -> bool:
        if self.any_host:
            return True
        if not host:
            return False
        name, port = split_host(host)
        if name in self.extra_any_port or (name, 80 if port is None else port) in self.extra:
            return True
        if (80 if port is None else port) != self.port:
            return False
        return name in self.names or (self.wildcard and _ip(name) is not None)


class AccessGuard:
    """ASGI middleware: 400 for a Host the server does not answer to, 403 for cross-origin
    POSTs from origins not in `cors_origins`."""

    def __init__(self, app, hosts: HostPolicy, cors_origins: Iterable[str] = ()):
        self.app = app
        self.hosts = hosts
        self.cors = {o.strip().rstrip("/").lower() for o in cors_origins if o.strip()}

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {}
        for k, v in scope["headers"]:
            headers.setdefault(k, v)
        host = headers.get(b"host", b"").decode("latin-1")
        if not self.hosts.allows(host):
            shown = host if len(host) <= 100 else host[:100] + "..."
            return await self._refuse(send, 400, f"Host header {shown!r} is not a name of this "
                                                 f"server (--allowed_hosts)")
        origin = headers.get(b"origin")
        if origin is not None and scope["method"] not in SAFE_METHODS:
            o = origin.decode("latin-1").strip().rstrip("/").lower()
            same = o in (f"http://{host.lower()}", f"https://{host.lower()}")
            if not (same or o in self.cors or "*" in self.cors):
                shown = o if len(o) <= 100 else o[:100] + "..."
                return await self._refuse(send, 403, f"cross-origin request from {shown!r} refused "
                                                     f"(--cors_allow_origin)")
        return await self.app(scope, receive, send)

    @staticmethod
    async def _refuse(send, status: int, message: str):
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})
