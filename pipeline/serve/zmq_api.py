"""ZeroMQ faces of a running pipeline.

PUB (`zmq.pub`): two-frame messages `[topic, json]`, topic one of `answer`, `watch`, `alert`, `stats`,
`stream`, `source`. Every JSON object has `type` (= topic) and `stream`; the rest by type:

    answer  {question, text, media_time, lag, latency, chunks_in_context, end}   (end: "stop" or "length")
    watch   {question, index, media_time, p_yes, alert, lag, watch_id}   (every evaluation)
    alert   the same fields, only when p_yes >= the watch's threshold, and `clip` (its file name, when
            alert clips are on: GET /api/clips/<clip> over HTTP)
    stats   {index, media_time, duration, capture_time, lag, preprocess, encode, compress, prefill,
             video_before, video_after, audio_before, audio_after, cache_tokens, chunks_in_context,
             dropped, reconnects, gap_before, gaps, model_pid, encoder_pid, lost, duplicate}  (one per
             chunk; `gap_before`: media is missing before it, `gaps` such chunks so far; `duplicate`: the
             model already held this chunk and skipped the copy sent again)
    stream  {state, detail}   (added, paused, resumed, removed, ended, failed, restarted)
    source  {kind, index, media_time, detail, time}   (kind "reconnect" or "gap", before chunk `index`)

Times are seconds; media_time is on the stream's own clock; lag is wall-clock seconds behind capture.

REP (`zmq.rep`): a request is one JSON object in one message part, the reply one JSON object.

    {"question": "...", "stream": "door", "max_new_tokens": 32, "timeout": 30}
        -> {"ok": true, "answer": {...answer fields...}}
    {"command": "streams"}  -> {"ok": true, "streams": {"door": "running", ...}}
    anything else           -> {"ok": false, "error": "one line"}

Clients use REQ sockets; the server side is a ROUTER, so requests are served concurrently (a slow
question does not hold up `streams`, `stats` or other streams' questions) and each reply goes to the
client that asked. At most `max_concurrent` requests run at once; one beyond that is answered at once
with `{"ok": false, "error": "busy: ..."}`. The loop is total: a request of several parts, one that does
not parse (`pipeline.serve.requests.parse_request`) or one the pipeline refuses gets a one-line error, a
reply that cannot be sent (the client left) is dropped; refusals are counted by reason (`refused`), the
first of each reason logged.

Both bind to loopback by default; a non-loopback bind needs `zmq.curve` (or an explicit opt-out).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import zmq
import zmq.asyncio

from streams.errors import one_line

if TYPE_CHECKING:  # not at run time: `omnisift ask` loads this module without the config's imports (torch)
    from pipeline.config import CurveConfig

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 64 * 1024
MAX_CONCURRENT = 16  # requests served at once by one REP endpoint; more are refused as "busy"


def _start_auth(ctx: zmq.Context, curve: CurveConfig):
    """Start the CURVE authenticator: clients whose public certificate is in `clients_dir` (or any)."""
    from zmq import auth as zmq_auth
    from zmq.auth.asyncio import AsyncioAuthenticator

    auth = AsyncioAuthenticator(ctx)  # needs the running event loop
    auth.start()
    auth.configure_curve(domain="*", location=curve.clients_dir or zmq_auth.CURVE_ALLOW_ANY)
    return auth


class ZmqFrontend:
    """PUB for events and REP (a ROUTER socket) for questions on one asyncio context. `handler` takes a
    request's bytes and returns the reply; it raises ValueError (`requests.BadRequest` with its `reason`)
    for one it refuses."""

    def __init__(self, pub: str | None, rep: str | None, handler: Callable[[bytes], Awaitable[dict]],
                 curve: CurveConfig | None = None, *, max_concurrent: int = MAX_CONCURRENT) -> None:
        self.ctx = zmq.asyncio.Context()
        self.handler = handler
        self.max_concurrent = max_concurrent
        self.pub = self.rep = None
        self.endpoints: dict[str, str] = {}
        self.refused: Counter[str] = Counter()  # reason -> requests refused (answered with an error)
        self.served = 0  # requests answered with ok
        self._auth = None
        self._task: asyncio.Task | None = None
        self._requests: set[asyncio.Task] = set()
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
                self.rep = self.ctx.socket(zmq.ROUTER)
                self.rep.setsockopt(zmq.LINGER, 0)
                self.rep.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
                if curve is not None:
                    _set_server_keys(self.rep, curve)
                self.rep.bind(rep)
                self.endpoints["rep"] = self.rep.getsockopt_string(zmq.LAST_ENDPOINT)
        except zmq.ZMQError as e:
            self.close()
            where = pub if pub and "pub" not in self.endpoints else rep
            raise OSError(f"zmq: cannot bind {where}: {zmq.strerror(e.errno)}") from None

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
        """Receive requests for ever; each runs in a task of its own (at most `max_concurrent`)."""
        while True:
            frames = await self.rep.recv_multipart()
            envelope, parts = _split_envelope(frames)
            if len(parts) != 1:
                await self._reply(envelope, self._refusal("parts", f"a request is one message part, got {len(parts)}"))
            elif len(self._requests) >= self.max_concurrent:
                await self._reply(envelope, self._refusal(
                    "busy", f"busy: {self.max_concurrent} requests are being answered; try again shortly"))
            else:
                task = asyncio.create_task(self._answer(envelope, parts[0]), name="zmq-request")
                self._requests.add(task)
                task.add_done_callback(self._requests.discard)

    async def _answer(self, envelope: list[bytes], raw: bytes) -> None:
        try:
            reply = await self.handler(raw)
            self.served += 1
        except ValueError as e:  # a bad request (`BadRequest.reason`) or one the pipeline refuses
            reply = self._refusal(getattr(e, "reason", "refused"), _one_line(e))
        except TimeoutError:
            reply = self._refusal("timeout", "no answer within the request's timeout")
        except asyncio.CancelledError:
            raise
        except Exception as e:  # the loop goes on; the client gets one line, the log the rest
            log.exception("zmq rep: a request failed")
            reply = self._refusal("internal", f"internal error ({type(e).__name__}); see the pipeline's log")
        await self._reply(envelope, reply)

    def _refusal(self, reason: str, message: str) -> dict:
        """The error reply of a refused request, counted by `reason`; the first of each reason is logged."""
        self.refused[reason] += 1
        if self.refused[reason] == 1:
            log.warning("zmq rep: refused a request (%s): %s (later ones of this kind are counted, not logged)",
                        reason, message)
        return {"ok": False, "error": message}

    async def _reply(self, envelope: list[bytes], reply: dict) -> None:
        """Send `reply` to the client `envelope` names; a client that left loses it (never raises)."""
        try:
            body = json.dumps(reply, allow_nan=False, default=str).encode()
        except ValueError:
            body = json.dumps({"ok": False, "error": "the reply held a value JSON cannot carry"}).encode()
        try:
            await self.rep.send_multipart([*envelope, body], flags=zmq.NOBLOCK)
        except zmq.ZMQError as e:
            log.debug("zmq rep: a reply could not be sent (%s)", e)

    def stats(self) -> dict:
        """Requests answered, refused by reason, and being answered now."""
        return {"served": self.served, "refused": dict(self.refused), "in_progress": len(self._requests)}

    async def aclose(self) -> None:
        tasks = [t for t in (self._task, *self._requests) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.close()

    def close(self) -> None:
        for s in (self.pub, self.rep):
            if s is not None:
                s.close(0)
        if self._auth is not None:
            self._auth.stop()
        self.ctx.term()


def _set_server_keys(sock: zmq.Socket, curve: CurveConfig) -> None:
    from zmq import auth as zmq_auth

    public, secret = zmq_auth.load_certificate(curve.server_secret_file)
    if secret is None:
        raise ValueError(f"zmq.curve.server_secret_file {curve.server_secret_file!r} holds no secret key")
    sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True


def _split_envelope(frames: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    """(routing envelope, message parts) of what a ROUTER received: the envelope is the client's
    identity and, from a REQ client, the empty delimiter frame after it."""
    if len(frames) >= 2 and frames[1] == b"":
        return frames[:2], frames[2:]
    return frames[:1], frames[1:]  # a DEALER client without the delimiter


def _one_line(err: BaseException) -> str:
    if isinstance(err, json.JSONDecodeError):
        return f"request is not JSON: {err.msg}"
    return one_line(err)


def encode_request(message: dict) -> bytes:
    """The request's bytes; one-line ValueError for one over MAX_REQUEST_BYTES (the server would drop the
    connection unanswered)."""
    body = json.dumps(message).encode()
    if len(body) > MAX_REQUEST_BYTES:
        raise ValueError(f"request of {len(body)} bytes is too large: a pipeline takes at most {MAX_REQUEST_BYTES}"
                         " (ask a shorter question)")
    return body


def request(endpoint: str, message: dict, timeout: float = 60.0, *, server_public_file: str | None = None,
            client_secret_file: str | None = None) -> dict:
    """Send one request to a pipeline's REP socket and return its reply (blocking; for `omnisift ask`).
    Raises ValueError (one line) for a request over MAX_REQUEST_BYTES (the server would drop the
    connection unanswered) or an endpoint ZeroMQ cannot use, TimeoutError when nothing answers within
    `timeout` seconds."""
    body = encode_request(message)
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
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as e:
            raise ValueError(f"endpoint {endpoint!r}: {e} (expected e.g. tcp://127.0.0.1:5561)") from None
        sock.send(body)
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
