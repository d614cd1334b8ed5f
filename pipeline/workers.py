"""The plain classes the Ray actors host (see `pipeline.actors`); each is tested without Ray.

    SourceWorker   one stream's `streams.Source`: `next_chunk()` -> (ChunkMeta, AVChunk | None)
    EncoderWorker  one `ChunkEncoder` per stream: AVChunk -> EncodedChunkResult (CompressedChunk on CPU)
    ModelWorker    one `OmniSession` per stream: append compressed chunks, ask, yes/no probability

Per-stream state is created on first use, so a restarted actor (its constructor run again) simply
starts the stream's state afresh: the context restarts, the stream goes on.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass, field
import math
import os
from pathlib import Path
import tempfile
import threading
import time
from typing import Any

from streams import AVChunk, load_source_config, open_source

# ---- messages --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkMeta:
    """What the source worker says about its next chunk; the chunk itself travels separately.

    kind: "chunk" (a chunk follows), "idle" (none within the timeout), "end" (the stream ended)."""

    kind: str
    stream: str
    index: int = -1
    start: float = 0.0
    duration: float = 0.0
    capture_time: float = 0.0
    gap_before: bool = False
    dropped: int = 0  # source chunks dropped so far by the drop policy
    reconnects: int = 0
    queue_depth: int = 0
    state: str = ""
    pid: int = 0


@dataclass(frozen=True)
class EncodedChunkResult:
    """A compressed chunk (tensors on the CPU) and what it cost."""

    stream: str
    index: int
    compressed: Any  # operators.CompressedChunk
    preprocess: float
    encode: float
    compress: float
    pid: int


@dataclass(frozen=True)
class ChunkStats:
    """Per-chunk statistics of one stream, published after the chunk is in the model's context."""

    stream: str
    index: int
    media_time: float  # chunk start on the stream's clock
    duration: float
    capture_time: float
    lag: float  # seconds between the chunk's capture and its arrival in the context
    preprocess: float
    encode: float
    compress: float
    prefill: float
    video_before: int
    video_after: int
    audio_before: int
    audio_after: int
    cache_tokens: int
    chunks_in_context: int
    dropped: int = 0
    reconnects: int = 0
    model_pid: int = 0
    encoder_pid: int = 0
    # chunks lost so far: they left the source but will never reach the context (not delivered within
    # backpressure.restart_wait, an actor dead for good, or an actor raised on them); set by the driver
    lost: int = 0
    # the chunk was already in the context (a call that failed on the way back had applied it) and was not
    # appended again: prefill is 0, the other fields describe the chunk and the context as they are
    duplicate: bool = False

    def to_json(self) -> dict:
        return {"type": "stats", **asdict(self)}


@dataclass(frozen=True)
class Answer:
    """An answer from a stream's live context at the moment the question was asked."""

    stream: str
    question: str
    text: str
    media_time: float | None  # media time of the end of the newest chunk in the context
    lag: float  # seconds between that chunk's capture and the answer
    latency: float  # seconds the model spent answering
    chunks_in_context: int

    def to_json(self) -> dict:
        return {"type": "answer", **asdict(self)}


@dataclass(frozen=True)
class WatchEvent:
    """One evaluation of a standing question on a stream, right after chunk `index` joined the context."""

    stream: str
    question: str
    index: int
    media_time: float  # end of the chunk, on the stream's clock
    p_yes: float
    alert: bool  # p_yes >= the watch's threshold
    lag: float  # seconds between the chunk's capture and this evaluation
    watch_id: int = 0

    def to_json(self) -> dict:
        return {"type": "alert" if self.alert else "watch", **asdict(self)}


# ---- source ----------------------------------------------------------------------------------------


class SourceWorker:
    """One stream's source. `next_chunk(timeout)` is the actor's single step."""

    def __init__(self, name: str, source: dict, *, queue_size: int | None = None, drop_policy: str | None = None,
                 factory=None) -> None:
        overrides = {"name": name}
        if queue_size is not None:
            overrides["queue_size"] = queue_size
        config = load_source_config({**source, **overrides})
        if drop_policy is not None and config.live:
            config = config.model_copy(update={"drop_policy": drop_policy})
        self.name = name
        self.source = open_source(config, name=name, factory=factory)

    def next_chunk(self, timeout: float = 0.5) -> tuple[ChunkMeta, AVChunk | None]:
        """The next chunk (meta, chunk); ("idle", None) after `timeout`; ("end", None) at end of stream.
        Raises the source's error if it failed."""
        try:
            chunk = self.source.get(timeout)
        except TimeoutError:
            return self._meta("idle"), None
        if chunk is None:
            return self._meta("end"), None
        return self._meta("chunk", chunk), chunk

    def _meta(self, kind: str, chunk: AVChunk | None = None) -> ChunkMeta:
        s = self.source.stats()
        extra = {}
        if chunk is not None:
            extra = dict(index=chunk.index, start=chunk.start, duration=chunk.duration,
                         capture_time=chunk.capture_time or time.time(), gap_before=chunk.flags.gap_before)
        return ChunkMeta(kind, self.name, dropped=s.chunks_dropped, reconnects=s.reconnects,
                         queue_depth=s.queue_depth, state=s.state, pid=os.getpid(), **extra)

    def stats(self) -> dict:
        return asdict(self.source.stats())

    def where(self) -> dict:
        return where()

    def close(self) -> dict:
        """Close the source; its final counters (`streams.SourceStats` as a dict)."""
        self.source.close()
        return self.stats()


# ---- model loading ---------------------------------------------------------------------------------

_TINY_LOCK = threading.Lock()


def resolve_model_path(spec: dict) -> tuple[str, bool]:
    """(path, is_tiny): the configured model if its weights can be found, else (with `fallback_tiny`)
    a tiny random Qwen2.5-Omni written to a temporary folder. Resolve once, in the driver, so every
    actor loads the same weights."""
    path = spec.get("path", "Qwen/Qwen2.5-Omni-7B")
    if Path(path).exists() or not spec.get("fallback_tiny"):
        return path, False
    try:
        from huggingface_hub import try_to_load_from_cache

        if isinstance(try_to_load_from_cache(path, "config.json"), str):
            return path, False
    except Exception:  # noqa: BLE001 - not a hub id, or no hub library: not available
        pass
    from omnisift.testing import make_tiny_omni

    with _TINY_LOCK:
        return str(make_tiny_omni(Path(tempfile.mkdtemp(prefix="omnisift-tiny-")))), True


def load_omni(spec: dict, *, towers_only: bool = False):
    """Load the `OmniModel` a model spec (a `ModelSpec` dump) names; `towers_only` for the encoder."""
    from omnisift.loading import load_model
    from operators import COMPRESSORS

    compressor = COMPRESSORS.get(spec.get("compressor", "omnisift"))
    return load_model(spec["path"], selector=spec.get("selector"), device=spec.get("device"),
                      dtype=spec.get("dtype"), compress=compressor is None or compressor.needs_selector,
                      local_files_only=spec.get("local_files_only", False), towers_only=towers_only)


def new_session(model, spec: dict):
    """An empty `OmniSession` over an already loaded model, with the spec's compression and window."""
    from pipeline.session import OmniSession

    return OmniSession.from_model(model, spec.get("compressor", "omnisift"), spec.get("retention"),
                                  spec.get("window_seconds"), rho_video=spec.get("rho_video"),
                                  rho_audio=spec.get("rho_audio"), **spec.get("compressor_options", {}))


def check_compression(spec: dict) -> None:
    """Raise the session's one-line ValueError if the spec's compression is bad (unknown compressor or
    option, bad option value, retention with ratios). Actors call it in their constructor, so a bad
    config fails when the pipeline starts, not at a stream's first chunk when its session is made."""
    from pipeline.session import check_compression as check

    check(spec.get("compressor", "omnisift"), spec.get("retention"), spec.get("rho_video"), spec.get("rho_audio"),
          spec.get("compressor_options", {}))


def _threads(num_cpus: float | None) -> None:
    if num_cpus:
        import torch

        torch.set_num_threads(max(1, math.ceil(num_cpus)))


def where() -> dict:
    """Node id and pid of the process this runs in (the Ray node when inside Ray)."""
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001
        pass
    return {"node_id": node, "pid": os.getpid()}


# ---- encoder ---------------------------------------------------------------------------------------


def chunk_key(chunk: AVChunk) -> tuple[int, float, float]:
    """What tells one chunk of a stream from another: index, media start and capture time (a restarted
    source numbers its chunks from 0 again, captured later)."""
    return chunk.index, chunk.start, chunk.capture_time


class EncoderWorker:
    """Preprocess + encode + compress, one `ChunkEncoder` per stream; only compressed tokens leave.

    `encode` is idempotent. The driver sends a chunk again when a call failed without Ray knowing
    whether it ran; on an encoder that was only unreachable it had, and encoding it again would advance
    the compressor's state (the carried previous frame, a random generator, a frame window) a second
    time. So each stream's last `remember` results are kept and a chunk seen again gets its stored
    result. A chunk is sent again while the newer ones sent after it wait: at most `max_in_flight` in
    the queue and one more held by the pump, so `remember` = max_in_flight + 2 keeps every chunk that can
    come again (`pipeline.actors.start_encoder` passes that; the default fits max_in_flight 2).
    """

    def __init__(self, spec: dict, *, model=None, num_cpus: float | None = None, remember: int = 4) -> None:
        check_compression(spec)
        _threads(num_cpus)
        self.spec = spec
        self.model = model if model is not None else load_omni(spec, towers_only=True)
        self.encoders: dict[str, Any] = {}
        self.remember = remember
        self.recent: dict[str, OrderedDict[tuple, EncodedChunkResult]] = {}  # per stream, oldest first

    def encode(self, chunk: AVChunk) -> EncodedChunkResult:
        """The chunk compressed; a chunk among the stream's last `remember` gets its stored result."""
        recent = self.recent.setdefault(chunk.stream, OrderedDict())
        key = chunk_key(chunk)
        if key not in recent:
            recent[key] = self._encode(chunk)
            while len(recent) > self.remember:
                recent.popitem(last=False)
        return recent[key]

    def _encode(self, chunk: AVChunk) -> EncodedChunkResult:
        enc = self.encoders.get(chunk.stream)
        if enc is None:
            enc = self.encoders[chunk.stream] = new_session(self.model, self.spec).chunk_encoder
        compressed = enc.process(chunk)
        compressed.tokens = compressed.tokens.detach().cpu()
        compressed.positions = compressed.positions.cpu()
        compressed.is_video = compressed.is_video.cpu()
        t = enc.last_times
        return EncodedChunkResult(chunk.stream, chunk.index, compressed, t.preprocess, t.encode, t.compress,
                                  os.getpid())

    def remove(self, stream: str) -> None:
        self.encoders.pop(stream, None)
        self.recent.pop(stream, None)

    def where(self) -> dict:
        return where()


# ---- model -----------------------------------------------------------------------------------------


@dataclass
class _StreamContext:
    session: Any
    last_meta: ChunkMeta | None = None  # of the last chunk applied
    chunks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    applied_to: Any = None  # the session's LiveContext that chunk went into (a reset session makes a new one)

    def holds(self, meta: ChunkMeta) -> bool:
        """Whether the chunk is already in the context: the session's context is still the one the last
        chunk went into, and this chunk comes from the same source process (a restarted source numbers
        its chunks from 0 again) with an index at most that chunk's."""
        last = self.last_meta
        return (last is not None and self.applied_to is not None and self.session.context is self.applied_to
                and meta.pid == last.pid and meta.index <= last.index)

    def applied(self, meta: ChunkMeta) -> None:
        """Remember the chunk just appended to the session's context."""
        self.last_meta, self.applied_to = meta, self.session.context
        self.chunks += 1


class UnknownStreamError(ValueError):
    """A request named a stream the pipeline does not have."""


class ModelWorker:
    """One `OmniSession` per stream over one loaded model. Thread-safe: appends and questions of one
    stream take turns (the session's lock); different streams run side by side."""

    YES, NO = "Yes", "No"

    def __init__(self, spec: dict, *, model=None, num_cpus: float | None = None) -> None:
        check_compression(spec)
        _threads(num_cpus)
        self.spec = spec
        self.model = model if model is not None else load_omni(spec)
        self.contexts: dict[str, _StreamContext] = {}
        self._lock = threading.Lock()

    def _context(self, stream: str, create: bool = True) -> _StreamContext:
        with self._lock:
            ctx = self.contexts.get(stream)
            if ctx is None:
                if not create:
                    raise UnknownStreamError(f"no context for stream {stream!r} yet")
                ctx = self.contexts[stream] = _StreamContext(new_session(self.model, self.spec))
            return ctx

    def append(self, meta: ChunkMeta, encoded: EncodedChunkResult) -> ChunkStats:
        """Prefill one compressed chunk into its stream's context. Idempotent: a chunk the context already
        holds (sent again after a call that failed but had run) is skipped, its stats marked `duplicate`."""
        started = time.perf_counter()
        ctx = self._context(meta.stream)
        c = encoded.compressed
        with ctx.lock:
            duplicate = ctx.holds(meta)
            prefill = 0.0
            if not duplicate:
                prefill = ctx.session.append_compressed(c)
                ctx.applied(meta)
            cache = len(ctx.session.context)
            in_context = len(ctx.session.context.chunks)
        pad = self.spec.get("min_append_seconds", 0.0) - (time.perf_counter() - started)
        if pad > 0 and not duplicate:
            time.sleep(pad)
        return ChunkStats(
            meta.stream, meta.index, meta.start, meta.duration, meta.capture_time,
            max(0.0, time.time() - meta.capture_time), encoded.preprocess, encoded.encode, encoded.compress,
            prefill, c.video_before, c.video_after, c.audio_before, c.audio_after, cache, in_context,
            meta.dropped, meta.reconnects, os.getpid(), encoded.pid, duplicate=duplicate,
        )

    def ask(self, stream: str, question: str, max_new_tokens: int | None = None, **generation) -> Answer:
        """Answer from the stream's live context as it is now."""
        ctx = self._context(stream)
        started = time.perf_counter()
        text = ctx.session.ask(question, max_new_tokens=max_new_tokens or self.spec.get("max_new_tokens", 32),
                               **generation)
        return self._answer(ctx, stream, question, text, time.perf_counter() - started)

    def yes_probability(self, stream: str, question: str) -> float:
        """p("Yes") / (p("Yes") + p("No")) as the answer to `question` on the live context."""
        session = self._context(stream).session
        yes, no = session.score(question, self.YES), session.score(question, self.NO)
        return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, no - yes))))

    def _answer(self, ctx: _StreamContext, stream: str, question: str, text: str, latency: float) -> Answer:
        m = ctx.last_meta
        media = None if m is None else m.start + m.duration
        lag = 0.0 if m is None else max(0.0, time.time() - m.capture_time)
        chunks = 0 if ctx.session.context is None else len(ctx.session.context.chunks)
        return Answer(stream, question, text, media, lag, latency, chunks)

    def remove(self, stream: str) -> None:
        with self._lock:
            self.contexts.pop(stream, None)

    def cache_tokens(self) -> dict[str, int]:
        return {s: (0 if c.session.context is None else len(c.session.context)) for s, c in list(self.contexts.items())}

    def where(self) -> dict:
        return where()
