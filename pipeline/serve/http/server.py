"""Serving the app with uvicorn inside the pipeline's event loop, on a socket bound before it starts (so
a port in use fails the start in one line, and port 0 gives a free port at once)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket

import uvicorn

from pipeline.config import HttpConfig

log = logging.getLogger(__name__)


def check_exposure(spec: HttpConfig, token: str | None) -> None:
    """Refuse to serve beyond loopback without a bearer token (one line naming the variable to set)."""
    if not spec.loopback and not token:
        raise ValueError(f"http.host {spec.host} is not loopback: set a bearer token in the environment "
                         f"variable {spec.token_env} (the server does not start without one)")


class _Server(uvicorn.Server):
    """uvicorn without its signal handlers: the pipeline's owner (the CLI, a user's program) keeps Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield

    def install_signal_handlers(self) -> None:  # older uvicorn
        return


class HttpServer:
    """uvicorn serving `app` on `host:port` (0: a free port) until `aclose()`."""

    def __init__(self, app, host: str, port: int) -> None:
        self.host = host.strip("[]")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind((self.host, port))
        except OSError as e:
            self.sock.close()
            raise OSError(f"http: cannot bind {host}:{port}: {e.strerror or e}") from None
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                                timeout_graceful_shutdown=3, ws="none")
        self.server = _Server(config)
        self.task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    async def start(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 - a bound on the start
        self.task = asyncio.create_task(self.server.serve(sockets=[self.sock]), name="http")
        for _ in range(int(timeout / 0.02)):
            if self.server.started or self.task.done():
                break
            await asyncio.sleep(0.02)
        if not self.server.started:
            await self.aclose()
            raise OSError(f"http: the server on {self.url} did not start")

    async def aclose(self) -> None:
        if self.task is not None:
            self.server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self.task), 5.0)
            except Exception:  # noqa: BLE001 - it did not stop in time, or stopped with an error: force it
                self.server.force_exit = True
                self.task.cancel()
                await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        self.sock.close()
