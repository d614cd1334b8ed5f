"""ZeroMQ ingestion: external producers push timestamped frames and audio.

Wire format (version 1). The source binds a PULL socket (default `tcp://127.0.0.1:5555`; binding to a
non-loopback address needs `allow_remote: true`); producers connect a PUSH socket and send two-part messages:

    part 0: UTF-8 JSON object (the header)
    part 1: raw payload bytes

Header fields:
    "v":      1                                   (optional; only version 1 exists)
    "kind":   "video" | "audio" | "end"
    "t":      float, seconds on the producer's clock (monotonic per kind; any origin)
  video:
    "width", "height": int, "format": "rgb24"     payload = height*width*3 bytes, row-major RGB
  audio:
    "rate": int (8000..192000), "channels": int (1..8),
    "format": "f32le" | "s16le"                   payload = samples*channels*4 (or *2) bytes, interleaved
  end: no payload (part 1 may be absent or empty); the stream ends after it.

Every message is validated. Dropped and counted (`SourceStats`): malformed (wrong part count, bad JSON,
missing/wrong-typed field, payload size not matching the header), oversized (more than `max_message_bytes`,
or frame dimensions beyond 8192), out-of-order (`t` not greater than the previous `t` of the same kind).
Oversized and out-of-order messages are also counted in `malformed_messages`. `send_video`, `send_audio`
and `send_end` below are reference producers.
"""

from __future__ import annotations

from collections.abc import Iterator
from fractions import Fraction
import json
import logging
import math
import threading
import time

import av
import numpy as np
import zmq

from .chunk import AUDIO_RATE
from .decode import capped_size
from .errors import SourceError
from .events import AudioSample, Event, VideoSample

log = logging.getLogger(__name__)

MAX_DIM = 8192
_SAMPLE_BYTES = {"f32le": 4, "s16le": 2}


class Malformed(ValueError):
    kind = "malformed"


class Oversized(Malformed):
    kind = "oversized"


def _field(h: dict, key: str, typ, lo=None, hi=None):
    v = h.get(key)
    if isinstance(v, bool) or not isinstance(v, typ):
        raise Malformed(f"field {key!r} missing or not {typ}")
    if isinstance(v, float) and not math.isfinite(v):
        raise Malformed(f"field {key!r} not finite")
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise (Oversized if hi is not None and v > hi and key in ("width", "height") else Malformed)(f"field {key!r} out of range: {v}")
    return v


def parse_message(parts: list[bytes], max_bytes: int) -> tuple[str, float, dict, bytes]:
    """Validate one multipart message; returns (kind, t, header, payload) or raises Malformed/Oversized."""
    size = sum(len(p) for p in parts)
    if size > max_bytes:
        raise Oversized(f"{size} bytes")
    if not 1 <= len(parts) <= 2:
        raise Malformed(f"{len(parts)} parts")
    try:
        h = json.loads(parts[0].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Malformed(f"header is not JSON: {e}") from None
    if not isinstance(h, dict):
        raise Malformed("header is not an object")
    if h.get("v", 1) != 1:
        raise Malformed(f"unknown version {h.get('v')!r}")
    kind = h.get("kind")
    payload = parts[1] if len(parts) == 2 else b""
    if kind == "end":
        return kind, 0.0, h, b""
    if kind not in ("video", "audio"):
        raise Malformed(f"unknown kind {kind!r}")
    if len(parts) != 2:
        raise Malformed("missing payload")
    t = float(_field(h, "t", (int, float)))
    if kind == "video":
        w = _field(h, "width", int, 1, MAX_DIM)
        hgt = _field(h, "height", int, 1, MAX_DIM)
        if h.get("format", "rgb24") != "rgb24":
            raise Malformed(f"video format {h.get('format')!r}")
        if len(payload) != w * hgt * 3:
            raise Malformed(f"payload {len(payload)} bytes, header says {w}x{hgt}x3")
    else:
        _field(h, "rate", int, 8000, 192000)
        ch = _field(h, "channels", int, 1, 8)
        fmt = h.get("format", "f32le")
        if fmt not in _SAMPLE_BYTES:
            raise Malformed(f"audio format {fmt!r}")
        if len(payload) == 0 or len(payload) % (_SAMPLE_BYTES[fmt] * ch):
            raise Malformed(f"payload {len(payload)} bytes is not whole {fmt} samples x {ch} channels")
    return kind, t, h, payload


class ZmqProducer:
    """Receives the wire format above and yields media events; counts what it drops."""

    def __init__(
        self,
        endpoint: str,
        *,
        bind: bool = True,
        video: bool = True,
        audio: bool = True,
        max_message_bytes: int = 64 << 20,
        max_width: int | None = None,
        max_height: int | None = None,
        idle_timeout: float | None = None,
        context: zmq.Context | None = None,
    ) -> None:
        self.has_video, self.has_audio = video, audio
        self.origin = None
        self.malformed = self.oversized = self.out_of_order = 0
        self._max_bytes = max_message_bytes
        self._max_w, self._max_h = max_width, max_height
        self._idle = idle_timeout
        self._stop = threading.Event()
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 64)
        try:
            (self._sock.bind if bind else self._sock.connect)(endpoint)
        except zmq.ZMQError as e:
            self._sock.close(0)
            raise SourceError(f"zmq {endpoint}: cannot {'bind' if bind else 'connect'}: {e}") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self._last_t: dict[str, float] = {}
        self._resampler: av.AudioResampler | None = None
        self._audio_fmt: tuple | None = None

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[Event]:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        last_msg = time.monotonic()
        try:
            while not self._stop.is_set():
                if not poller.poll(100):
                    if self._idle is not None and time.monotonic() - last_msg > self._idle:
                        return
                    continue
                parts = self._sock.recv_multipart(copy=True)
                last_msg = time.monotonic()
                wall = time.time()
                try:
                    kind, t, h, payload = parse_message(parts, self._max_bytes)
                except Malformed as e:
                    self._count(e)
                    continue
                if kind == "end":
                    yield from self._flush_audio(wall)
                    return
                if kind in self._last_t and t <= self._last_t[kind]:
                    self.out_of_order += 1
                    self.malformed += 1
                    log.debug("zmq: out-of-order %s t=%s after %s", kind, t, self._last_t[kind])
                    continue
                self._last_t[kind] = t
                if kind == "video" and self.has_video:
                    yield VideoSample(t, self._image(h, payload), wall)
                elif kind == "audio" and self.has_audio:
                    yield from self._audio(t, h, payload, wall)
        finally:
            self._sock.close(0)

    def _count(self, e: Malformed) -> None:
        self.malformed += 1
        if isinstance(e, Oversized):
            self.oversized += 1
        log.debug("zmq: dropped %s message: %s", e.kind, e)

    def _image(self, h: dict, payload: bytes) -> np.ndarray:
        img = np.frombuffer(payload, np.uint8).reshape(h["height"], h["width"], 3)
        w, hh = capped_size(h["width"], h["height"], self._max_w, self._max_h)
        if (w, hh) != (h["width"], h["height"]):
            img = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24").to_ndarray(format="rgb24", width=w, height=hh)
        return img

    def _audio(self, t: float, h: dict, payload: bytes, wall: float) -> Iterator[Event]:
        rate, ch, fmt = h["rate"], h["channels"], h.get("format", "f32le")
        x = np.frombuffer(payload, np.float32 if fmt == "f32le" else np.int16).reshape(-1, ch)
        if x.dtype == np.int16:
            x = x.astype(np.float32) / 32768.0
        if rate == AUDIO_RATE and ch == 1:
            yield AudioSample(t, x[:, 0].copy(), wall)
            return
        if self._audio_fmt != (rate, ch):
            self._audio_fmt = (rate, ch)
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.reshape(1, -1)), format="flt", layout=f"{ch}c" if ch > 2 else ("mono" if ch == 1 else "stereo"))
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = round(t * rate)
        for out in self._resampler.resample(frame):
            if out.time is not None:
                yield AudioSample(out.time, out.to_ndarray().reshape(-1).astype(np.float32, copy=False), wall)

    def _flush_audio(self, wall: float) -> Iterator[Event]:
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                if out.time is not None:
                    yield AudioSample(out.time, out.to_ndarray().reshape(-1), wall)


# -- reference producer side ------------------------------------------------------------------------------


def send_video(sock: zmq.Socket, t: float, image: np.ndarray) -> None:
    """Send one RGB uint8 [H, W, 3] frame stamped `t` seconds."""
    img = np.ascontiguousarray(image, dtype=np.uint8)
    h = {"v": 1, "kind": "video", "t": float(t), "width": img.shape[1], "height": img.shape[0], "format": "rgb24"}
    sock.send_multipart([json.dumps(h).encode(), img.tobytes()])


def send_audio(sock: zmq.Socket, t: float, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    """Send float32 samples ([N] mono or [N, C] interleaved) starting at `t` seconds."""
    x = np.ascontiguousarray(samples, dtype=np.float32)
    ch = 1 if x.ndim == 1 else x.shape[1]
    h = {"v": 1, "kind": "audio", "t": float(t), "rate": rate, "channels": ch, "format": "f32le"}
    sock.send_multipart([json.dumps(h).encode(), x.tobytes()])


def send_end(sock: zmq.Socket) -> None:
    sock.send_multipart([json.dumps({"v": 1, "kind": "end"}).encode()])
