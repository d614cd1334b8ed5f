"""What the HTTP API checks before any route: the `Host` a request names, the `Origin` of a page that changes
state, and how often one client adds streams and standing questions.

DNS rebinding: a page on `evil.example` whose name is made to resolve to 127.0.0.1 reaches a loopback server
with `Host: evil.example`; only names the server answers to pass (`allowed_hosts`, below). A cross-site form
or script that POSTs to the API carries its page's `Origin`; a state-changing request (anything but GET, HEAD,
OPTIONS) with an `Origin` passes only if that origin is the server's own or one the operator lists. Clients
that are not browsers (curl, the openai client) send no `Origin` and are not affected.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from pipeline.config import HttpConfig
from pipeline.serve.http.errors import error
from pipeline.serve.requests import TooManyRequests
from streams.net import host_is_loopback

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARDS = ("0.0.0.0", "::", "")


def allowed_hosts(spec: HttpConfig) -> frozenset[str] | None:
    """The names a request's Host may give: the bound address, loopback's names when bound there, and
    `http.allowed_hosts`. None (any) for a wildcard bind with no `allowed_hosts` (its token guards it)."""
    host = spec.host.strip("[]").lower()
    names = {h.strip("[]").lower() for h in spec.allowed_hosts}
    if host in WILDCARDS:
        return frozenset(names | set(LOOPBACK_NAMES)) if names else None
    if host_is_loopback(host):
        names |= set(LOOPBACK_NAMES)
    return frozenset(names | {host})


def _host_of(value: str) -> str:
    """The host of a Host header (`name`, `name:port`, `[v6]:port`), lower case, without brackets."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class SameOrigin:
    """ASGI middleware: 403 for a request whose Host is not one of `hosts` (None: any), and for a
    state-changing request whose Origin is neither on those hosts nor one of `origins`."""

    def __init__(self, app: ASGIApp, hosts: frozenset[str] | None, origins: Iterable[str] = ()) -> None:
        self.app = app
        self.hosts = hosts
        self.origins = frozenset(o.rstrip("/").lower() for o in origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        problem = self._problem(scope["method"], headers)
        if problem is not None:
            return await error(403, problem)(scope, receive, send)
        await self.app(scope, receive, send)

    def _problem(self, method: str, headers: dict[str, str]) -> str | None:
        host = _host_of(headers.get("host", ""))
        if self.hosts is not None and host not in self.hosts:
            return (f"Host header {headers.get('host', '')[:80]!r} is not a name this server answers to "
                    "(http.allowed_hosts)")
        origin = headers.get("origin")
        if method in SAFE_METHODS or origin is None:
            return None
        parts = urlsplit(origin.strip().lower())
        own = parts.hostname is not None and (parts.hostname in self.hosts if self.hosts is not None
                                              else parts.hostname == host)
        if not own and origin.strip().rstrip("/").lower() not in self.origins:
            return f"Origin {origin[:80]!r} may not change this server's state (http.allowed_origins)"
        return None


class RateLimit:
    """At most `per_minute` events per key in any 60 seconds (a sliding window of their times). Keys
    whose window is empty are forgotten, so many one-off clients do not grow it."""

    WINDOW = 60.0

    def __init__(self, per_minute: int, what: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self.what = what
        self.clock = clock
        self._times: dict[str, deque[float]] = {}

    def take(self, key: str) -> None:
        """Count one event of `key`; TooManyRequests (nothing counted) if it would pass the limit."""
        now = self.clock()
        for k in [k for k, q in self._times.items() if q[-1] <= now - self.WINDOW]:
            del self._times[k]
        times = self._times.setdefault(key, deque())
        while times and times[0] <= now - self.WINDOW:
            times.popleft()
        if len(times) >= self.per_minute:
            wait = times[0] + self.WINDOW - now
            raise TooManyRequests(f"more than {self.per_minute} {self.what} a minute from {key} "
                                  f"(limits.adds_per_minute); try again in {wait:.0f}s", wait)
        times.append(now)
