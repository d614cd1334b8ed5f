"""ZeroMQ ingestion: external producers push timestamped frames and audio.

Wire format (version 1). The source binds a PULL socket (default `tcp://127.0.0.1:5555`; binding to a
non-loopback address needs `allow_remote: true`); producers connect a PUSH socket and send two-part messages:

    part 0: UTF-8 JSON object (the header)
    part 1: raw payload bytes

Header fields (no others are allowed):
    "v":      1                                   (optional; only version 1 exists)
    "kind":   "video" | "audio" | "end"
    "t":      number, seconds on the producer's clock (any origin), finite, |t| < 1e10 (epoch seconds fit)
  video:
    "width", "height": int 1..8192, "format": "rgb24" (optional)
                                                  payload = height*width*3 bytes, row-major RGB
  audio:
    "rate": int (8000..192000), "channels": int (1..8), "format": "f32le" (default) | "s16le"
                                                  payload = samples*channels*4 (or *2) bytes, interleaved;
                                                  f32 samples must be finite (they are clipped to [-1, 1])
  end: no payload (part 1 may be absent or empty), "t" optional and ignored; the stream ends after it.

Refusals. `parse_message` validates every message and raises nothing but `Refused`; a refused message is
dropped and counted under one reason in `ZmqProducer.refused` (`SourceStats.refused`, every reason present):

    parts          not 1 or 2 parts (video and audio need 2)
    oversized      more than `max_message_bytes` in all parts together, or width/height beyond 8192
    header_size    header longer than 4096 bytes
    not_json       header not UTF-8 or not JSON
    nesting        header nested more than 4 levels deep (checked before parsing)
    nonfinite      NaN, Infinity, or a number that overflows to infinity, anywhere in the header
    huge_number    a number literal longer than 24 characters anywhere in the header
    bad_field      header not an object, a duplicate key, unknown version/kind/format, or a field missing,
                   of the wrong type or out of range
    unknown_field  a field not listed above
    bad_time       "t" missing, not a number, or not within +-1e10
    size_mismatch  payload size not what the header implies (or a payload on "end")
    bad_samples    f32 audio samples that are NaN or infinite
    out_of_order   "t" not after its kind's clock and not confirmed by a run (late, duplicate), see Clock
    clock_jump     "t" more than 10 s ahead of its kind's clock and not confirmed by a run, see Clock
    unexpected     a valid message that could not be converted (a bug: logged with its traceback)

`SourceStats.malformed_messages` is the sum over all reasons; `oversized_messages` and
`out_of_order_messages` are the reasons of those names.

At the socket. `zmq.MAXMSGSIZE` is `max_message_bytes`: libzmq refuses a larger message part when it reads
the part's size, before holding any of it, and closes that producer's connection. A PUSH producer reconnects
by itself and continues; the oversized message (and whatever was in flight behind it on that connection) is
lost. Such a message never reaches the source as a message: each closed producer connection is counted in
`peer_disconnects` (`SourceStats.peer_disconnects`) and logged.

Clock, per kind ("video" and "audio" each). The first message sets the clock. A message is on the clock when
0 < t - clock <= 10 s: it is delivered and moves the clock. Any other message (late, duplicate, a jump back
such as a restarted producer, a jump ahead by more than 10 s) is held as a candidate. Candidates that follow
one another (0 < t - previous <= 10 s) form a run; when a run reaches 3 messages the clock moves to it
(`clock_resyncs`) and the run is delivered in order, so a restarted producer loses nothing. A message on the
old clock, or a candidate that does not continue the run, discards the run: its messages are refused as
`out_of_order` (t not after the clock) or `clock_jump` (ahead of it), so one stray timestamp never moves the
clock. Delivered jumps are re-based by the Chunker (`streams.chunker`), which also drops a stray *first*
timestamp (it sets the clock here) as a glitch once the real clock shows. One clock per kind assumes one
producer per source, or producers that share a clock.

`send_video`, `send_audio` and `send_end` below are reference producers.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Generic, NoReturn, TypeVar

import av
import numpy as np
import zmq
from zmq.utils.monitor import recv_monitor_message

from .chunk import AUDIO_RATE
from .decode import capped_size
from .errors import SourceError
from .events import AudioSample, Event, VideoSample

log = logging.getLogger(__name__)

MAX_DIM = 8192
MAX_HEADER_BYTES = 4096
MAX_DEPTH = 4
MAX_NUMBER_CHARS = 24
MAX_ABS_T = 1e10
CLOCK_STEP = 10.0  # seconds: the largest step forward that stays on a kind's clock
RESYNC_AFTER = 3  # consecutive consistent off-clock messages that move a kind's clock

REASONS = (
    "parts",
    "oversized",
    "header_size",
    "not_json",
    "nesting",
    "nonfinite",
    "huge_number",
    "bad_field",
    "unknown_field",
    "bad_time",
    "size_mismatch",
    "bad_samples",
    "out_of_order",
    "clock_jump",
    "unexpected",
)
_FIELDS = {
    "video": frozenset({"v", "kind", "t", "width", "height", "format"}),
    "audio": frozenset({"v", "kind", "t", "rate", "channels", "format"}),
    "end": frozenset({"v", "kind", "t"}),
}
_SAMPLE_DTYPES = {"f32le": np.dtype("<f4"), "s16le": np.dtype("<i2")}


class Refused(ValueError):
    """A message that breaks the wire format; `reason` is one of `REASONS`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True, eq=False)
class Message:
    """One valid message: what `parse_message` returns."""

    kind: str  # "video" | "audio" | "end"
    t: float = 0.0  # seconds on the producer's clock (0.0 for "end")
    image: np.ndarray | None = None  # video: [H, W, 3] uint8, a view of the payload
    samples: np.ndarray | None = None  # audio: [N, C] float32 in [-1, 1]
    rate: int = 0  # audio: samples per second per channel


# -- parsing: total over any bytes ------------------------------------------------------------------------


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _depth(text: str) -> int:
    """Deepest nesting of JSON arrays/objects in `text` (brackets inside strings do not count)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return 0  # cannot be deeper than the limit: skip the scan
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _refuse_constant(name: str) -> NoReturn:
    raise Refused("nonfinite", f"{name} in the header")


def _int_literal(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise Refused("huge_number", f"a {len(text)}-character integer in the header")
    return int(text)


def _float_literal(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise Refused("huge_number", f"a {len(text)}-character number in the header")
    value = float(text)
    if not math.isfinite(value):
        raise Refused("nonfinite", f"{text} overflows")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise Refused("bad_field", "a key appears twice")
    return obj


def _parse_header(raw: bytes | memoryview) -> dict[str, Any]:
    if len(raw) > MAX_HEADER_BYTES:
        raise Refused("header_size", f"{len(raw)} bytes > {MAX_HEADER_BYTES}")
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("not_json", "header is not UTF-8") from None
    if _depth(text) > MAX_DEPTH:
        raise Refused("nesting", f"header nested deeper than {MAX_DEPTH}")
    try:
        header = json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_int_literal,
            parse_float=_float_literal,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as e:
        raise Refused("not_json", f"header is not JSON ({e.msg} at {e.pos})") from None
    if not isinstance(header, dict):
        raise Refused("bad_field", f"header is a {type(header).__name__}, not an object")
    return header


def _kind(header: dict[str, Any]) -> str:
    version = header.get("v", 1)
    if type(version) is not int or version != 1:
        raise Refused("bad_field", f"unknown version {_short(version)}")
    kind = header.get("kind")
    if not isinstance(kind, str) or kind not in _FIELDS:
        raise Refused("bad_field", f"unknown kind {_short(kind)}")
    unknown = sorted(set(header) - _FIELDS[kind])
    if unknown:
        raise Refused("unknown_field", f"{kind} has unknown field {_short(unknown[0])}")
    return kind


def _time(header: dict[str, Any]) -> float:
    t = header.get("t")
    if type(t) not in (int, float) or not abs(t) < MAX_ABS_T:
        raise Refused("bad_time", f"t = {_short(t)} is not a number within +-{MAX_ABS_T:g}")
    return float(t)


def _int_field(header: dict[str, Any], key: str, lo: int, hi: int, *, above: str = "bad_field") -> int:
    value = header.get(key)
    if type(value) is not int:
        raise Refused("bad_field", f"{key!r} missing or not an integer: {_short(value)}")
    if value < lo or value > hi:
        raise Refused(above if value > hi else "bad_field", f"{key!r} = {value} not in {lo}..{hi}")
    return value


def _video(header: dict[str, Any], t: float, payload: bytes | memoryview) -> Message:
    width = _int_field(header, "width", 1, MAX_DIM, above="oversized")
    height = _int_field(header, "height", 1, MAX_DIM, above="oversized")
    if header.get("format", "rgb24") != "rgb24":
        raise Refused("bad_field", f"video format {_short(header.get('format'))}")
    if len(payload) != width * height * 3:
        raise Refused("size_mismatch", f"payload {len(payload)} bytes, header says {width}x{height}x3")
    return Message("video", t, image=np.frombuffer(payload, np.uint8).reshape(height, width, 3))


def _audio(header: dict[str, Any], t: float, payload: bytes | memoryview) -> Message:
    rate = _int_field(header, "rate", 8000, 192000)
    channels = _int_field(header, "channels", 1, 8)
    fmt = header.get("format", "f32le")
    if not isinstance(fmt, str) or fmt not in _SAMPLE_DTYPES:
        raise Refused("bad_field", f"audio format {_short(fmt)}")
    dtype = _SAMPLE_DTYPES[fmt]
    if len(payload) == 0 or len(payload) % (dtype.itemsize * channels):
        raise Refused("size_mismatch", f"payload {len(payload)} bytes is not whole {fmt} samples x {channels} channels")
    x = np.frombuffer(payload, dtype).reshape(-1, channels)
    if dtype.kind == "f":
        if not np.isfinite(x).all():
            raise Refused("bad_samples", "NaN or infinite audio samples")
        x = np.clip(x, -1.0, 1.0).astype(np.float32)
    else:
        x = x.astype(np.float32) / 32768.0
    return Message("audio", t, samples=x, rate=rate)


def parse_message(parts: Sequence[bytes | memoryview], max_bytes: int) -> Message:
    """Validate one multipart message; returns a `Message` or raises `Refused` (see the module docstring)."""
    if not 1 <= len(parts) <= 2:
        raise Refused("parts", f"{len(parts)} parts")
    size = sum(len(p) for p in parts)
    if size > max_bytes:
        raise Refused("oversized", f"{size} bytes > {max_bytes}")
    header = _parse_header(parts[0])
    kind = _kind(header)
    payload = parts[1] if len(parts) == 2 else b""
    if kind == "end":
        if len(payload):
            raise Refused("size_mismatch", f"end with a {len(payload)}-byte payload")
        return Message("end")
    if len(parts) != 2:
        raise Refused("parts", f"{kind} without a payload part")
    t = _time(header)
    return _video(header, t, payload) if kind == "video" else _audio(header, t, payload)


# -- the clock of one kind --------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass
class Verdict(Generic[T]):
    """What `KindClock.offer` decided: items to deliver in order, reasons for items refused, a resync."""

    deliver: list[T] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    resynced: bool = False


class KindClock(Generic[T]):
    """The per-kind timestamp rule of the module docstring ("Clock"), over any items stamped `t`."""

    def __init__(self, step: float = CLOCK_STEP, resync_after: int = RESYNC_AFTER) -> None:
        self.step, self.resync_after = step, resync_after
        self.clock: float | None = None
        self._run: list[tuple[float, T]] = []

    def offer(self, t: float, item: T) -> Verdict[T]:
        if self.clock is None or self.clock < t <= self.clock + self.step:
            verdict = Verdict(refused=self.discard())
            self.clock = t
            verdict.deliver.append(item)
            return verdict
        verdict = Verdict()
        if not (self._run and self._run[-1][0] < t <= self._run[-1][0] + self.step):
            verdict.refused = self.discard()
        self._run.append((t, item))
        if len(self._run) >= self.resync_after:
            verdict.deliver = [i for _, i in self._run]
            self.clock = self._run[-1][0]
            self._run = []
            verdict.resynced = True
        return verdict

    def discard(self) -> list[str]:
        """Drop the pending run; the refusal reason of each of its items."""
        reasons = ["out_of_order" if self.clock is not None and t <= self.clock else "clock_jump" for t, _ in self._run]
        self._run = []
        return reasons


# -- the receiver -----------------------------------------------------------------------------------------


class ZmqProducer:
    """Receives the wire format above and yields media events; counts what it refuses, by reason."""

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
        self.refused: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.clock_resyncs = 0
        self.peer_disconnects = 0
        self._max_bytes = max_message_bytes
        self._max_w, self._max_h = max_width, max_height
        self._idle = idle_timeout
        self._stop = threading.Event()
        self._clocks: dict[str, KindClock[Message]] = {"video": KindClock(), "audio": KindClock()}
        self._ctx = context or zmq.Context.instance()
        self._sock = self._ctx.socket(zmq.PULL)
        self._sock.setsockopt(zmq.LINGER, 0)
        self._sock.setsockopt(zmq.RCVHWM, 64)
        self._sock.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
        try:
            (self._sock.bind if bind else self._sock.connect)(endpoint)
        except zmq.ZMQError as e:
            self._sock.close(0)
            raise SourceError(f"zmq {endpoint}: cannot {'bind' if bind else 'connect'}: {e}") from None
        self.endpoint = self._sock.getsockopt_string(zmq.LAST_ENDPOINT) if bind else endpoint
        self._monitor = self._sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._resampler: av.AudioResampler | None = None
        self._audio_fmt: tuple[int, int] | None = None

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[Event]:
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        poller.register(self._monitor, zmq.POLLIN)
        last_msg = time.monotonic()
        try:
            while not self._stop.is_set():
                ready = dict(poller.poll(100))
                if self._monitor in ready:
                    self._read_monitor()
                if self._sock not in ready:
                    if self._idle is not None and time.monotonic() - last_msg > self._idle:
                        return
                    continue
                parts = self._recv_parts()
                last_msg = time.monotonic()
                events = self._handle(parts, time.time())
                if events is None:
                    yield from self._flush_audio(time.time())
                    return
                yield from events
        finally:
            for clock in self._clocks.values():
                self._count(clock.discard())
            self._sock.disable_monitor()
            self._monitor.close(0)
            self._sock.close(0)

    def _recv_parts(self) -> list[memoryview]:
        """One whole message; parts beyond the third are received and dropped (it is refused for its count)."""
        frames = []
        more = True
        while more:
            frame = self._sock.recv(copy=False)
            more = bool(self._sock.getsockopt(zmq.RCVMORE))
            if len(frames) < 3:
                frames.append(frame.buffer)
        return frames

    def _read_monitor(self) -> None:
        while True:
            try:
                event = recv_monitor_message(self._monitor, zmq.NOBLOCK)
            except zmq.Again:
                return
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self.peer_disconnects += 1
                log.info("zmq %s: a producer connection closed (libzmq closes one that sends a part over %d bytes)",
                         self.endpoint, self._max_bytes)  # fmt: skip

    def _handle(self, parts: list[memoryview], wall: float) -> list[Event] | None:
        """Events for one message: [] if refused or held, None at "end"."""
        try:
            msg = parse_message(parts, self._max_bytes)
            if msg.kind == "end":
                return None
            verdict = self._clocks[msg.kind].offer(msg.t, msg)
            self._count(verdict.refused)
            if verdict.resynced:
                self.clock_resyncs += 1
                log.info("zmq %s: %s clock moved to t=%.3f (producer restarted or jumped)", self.endpoint, msg.kind,
                         msg.t)
            return [e for m in verdict.deliver for e in self._events(m, wall)]
        except Refused as e:
            self._count([e.reason])
            log.debug("zmq %s: refused message: %s", self.endpoint, e)
        except Exception:  # a message must never end the stream; this is a bug, so it is logged
            self._count(["unexpected"])
            log.warning("zmq %s: could not convert a valid message", self.endpoint, exc_info=True)
        return []

    def _count(self, reasons: list[str]) -> None:
        for reason in reasons:
            self.refused[reason] += 1

    def _events(self, msg: Message, wall: float) -> list[Event]:
        if msg.kind == "video":
            return [VideoSample(msg.t, self._image(msg.image), wall)] if self.has_video else []
        return list(self._audio(msg, wall)) if self.has_audio else []

    def _image(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        cw, ch = capped_size(w, h, self._max_w, self._max_h)
        if (cw, ch) != (w, h):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            img = frame.to_ndarray(format="rgb24", width=cw, height=ch)
        return img

    def _audio(self, msg: Message, wall: float) -> Iterator[Event]:
        x, rate = msg.samples, msg.rate
        ch = x.shape[1]
        if rate == AUDIO_RATE and ch == 1:
            yield AudioSample(msg.t, x[:, 0].copy(), wall)
            return
        if self._audio_fmt != (rate, ch):
            self._audio_fmt = (rate, ch)
            self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
        layout = f"{ch}c" if ch > 2 else ("mono" if ch == 1 else "stereo")
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(x.reshape(1, -1)), format="flt", layout=layout)
        frame.sample_rate = rate
        frame.time_base = Fraction(1, rate)
        frame.pts = round(msg.t * rate)
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
