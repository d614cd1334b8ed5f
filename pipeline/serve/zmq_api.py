"""ZeroMQ faces of a running pipeline.

PUB (`zmq.pub`): two-frame messages `[topic, json]`, topic one of `answer`, `watch`, `alert`, `stats`,
`stream`, `source`. Every JSON object has `type` (= topic) and `stream`; the rest by type:

    answer  {question, text, media_time, lag, latency, chunks_in_context}
    watch   {question, index, media_time, p_yes, alert, lag, watch_id}   (every evaluation)
    alert   the same fields, only when p_yes >= the watch's threshold, and `clip` (its file name, when
            alert clips are on: GET /api/clips/<clip> over HTTP)
    stats   {index, media_time, duration, capture_time, lag, preprocess, encode, compress, prefill,
             video_before, video_after, audio_before, audio_after, cache_tokens, chunks_in_context,
             dropped, reconnects, model_pid, encoder_pid, lost, duplicate}  (one per chunk; `duplicate`:
             the model already held this chunk and skipped the copy sent again)
    stream  {state, detail}   (added, paused, resumed, removed, ended, failed, restarted)
    source  {kind, index, media_time, detail, time}   (kind "reconnect" or "gap", before chunk `index`)

Times are seconds; media_time is on the stream's own clock; lag is wall-clock seconds behind capture.

REP (`zmq.rep`): a request is one JSON object, the reply one JSON object.

    {"question": "...", "stream": "door", "max_new_tokens": 32, "timeout": 30}
        -> {"ok": true, "answer": {...answer fields...}}
    {"command": "streams"}  -> {"ok": true, "streams": {"door": "running", ...}}
    anything else           -> {"ok": false, "error": "one line"}

Both bind to loopback by default; a non-loopback bind needs `zmq.curve` (or an explicit opt-out).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import zmq
import zmq.asyncio

from pipeline.config import CurveSpec

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024


def _start_auth(ctx: zmq.Context, curve: CurveSpec):
    """Start the CURVE authenticator: clients whose public certificate is in `clients_dir` (or any)."""
    from zmq import auth as zmq_auth
    from zmq.auth.asyncio import AsyncioAuthenticator

    auth = AsyncioAuthenticator(ctx)  # needs the running event loop
    auth.start()
    auth.configure_curve(domain="*", location=curve.clients_dir or zmq_auth.CURVE_ALLOW_ANY)
    return auth


class ZmqFrontend:
    """PUB for events and REP for questions on one asyncio context."""

    def __init__(self, pub: str | None, rep: str | None, handler: Callable[[dict], Awaitable[dict]],
                 curve: CurveSpec | None = None) -> None:
        self.ctx = zmq.asyncio.Context()
        self.handler = handler
        self.pub = self.rep = None
        self.endpoints: dict[str, str] = {}
        self._auth = None
        self._task: asyncio.Task | None = None
        try:
            if curve is not None:
                self._auth = _start_auth(self.ctx, curve)
            if pub:
                self.pub = self.ctx.socket(zmq.PUB)
                self.pub.setsockopt(zmq.SNDHWM, 1000)
                self.pub.setsockopt(zmq.LINGER, 0)
                if curve is not None:
                    _set_server_keys(self.pub, curve)
                self.pub.bind(pub)
                self.endpoints["pub"] = self.pub.getsockopt_string(zmq.LAST_ENDPOINT)
            if rep:
                self.rep = self.ctx.socket(zmq.REP)
                self.rep.setsockopt(zmq.LINGER, 0)
                self.rep.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
                if curve is not None:
                    _set_server_keys(self.rep, curve)
                self.rep.bind(rep)
                self.endpoints["rep"] = self.rep.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as e:
            self.close()
            raise OSError(f"zmq: cannot bind {pub if 'pub' not in self.endpoints else rep}: {e}") from None

    def start(self) -> None:
        if self.rep is not None:
            self._task = asyncio.create_task(self._serve(), name="zmq-rep")

    def publish(self, message: dict) -> None:
        """Send one event without waiting (dropped if subscribers are behind by SNDHWM messages)."""
        if self.pub is None:
            return
        try:
            self.pub.send_multipart([message["type"].encode(), json.dumps(message).encode()], flags=zmq.NOBLOCK)
        except zmq.Again:
            pass

    async def _serve(self) -> None:
        while True:
            raw = await self.rep.recv()
            try:
                request = json.loads(raw)
                if not isinstance(request, dict):
                    raise ValueError("request must be a JSON object")
                reply = await self.handler(request)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - every bad request gets a one-line error reply
                reply = {"ok": False, "error": _one_line(e)}
            await self.rep.send(json.dumps(reply).encode())

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        self.close()

    def close(self) -> None:
        for s in (self.pub, self.rep):
            if s is not None:
                s.close(0)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()


def _set_server_keys(sock: zmq.Socket, curve: CurveSpec) -> None:
    from zmq import auth as zmq_auth

    public, secret = zmq_auth.load_certificate(curve.server_secret_file)
    if secret is None:
        raise ValueError(f"zmq.curve.server_secret_file {curve.server_secret_file!r} holds no secret key")
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True


def _one_line(err: BaseException) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"request is not JSON: {err.msg}"
    return " ".join(str(err).split()) or type(err).__name__


def request(endpoint: str, message: dict, timeout: float = 60.0, *, server_public_file: str | None = None,
            client_secret_file: str | None = None) -> dict:
    """Send one request to a pipeline's REP socket and return its reply (blocking; for `omnisift ask`).
    Raises TimeoutError when nothing answers within `timeout` seconds."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        if server_public_file:
            from zmq import auth as zmq_auth

            server_public, _ = zmq_auth.load_certificate(server_public_file)
            if client_secret_file:
                public, secret = zmq_auth.load_certificate(client_secret_file)
            else:
                public, secret = zmq.curve_keypair()
            sock.curve_serverkey, sock.curve_publickey, sock.curve_secretkey = server_public, public, secret
        sock.connect(endpoint)
        sock.send(json.dumps(message).encode())
        if not sock.poll(int(timeout * 1000)):
            raise TimeoutError(f"no reply from {endpoint} within {timeout:g}s (is `omnisift run` running?)")
        return json.loads(sock.recv())
    finally:
        sock.close(0)
        ctx.term()


def write_certificates(folder: str | Path, name: str) -> tuple[Path, Path]:
    """(public, secret) certificate files for CURVE, made with `zmq.auth.create_certificates`."""
    from zmq import auth as zmq_auth

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    public, secret = zmq_auth.create_certificates(str(folder), name)
    return Path(public), Path(secret)
