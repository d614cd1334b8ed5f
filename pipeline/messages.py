"""The messages of a running pipeline, in one place: what a source actor says of its next chunk, the
per-chunk statistics, answers, standing-question evaluations and stream state changes.

Frozen dataclasses with no torch and no Ray in them: they cross actor boundaries, fill the driver's
queues, and leave through ZeroMQ and the metrics as JSON (`to_json`, whose `type` is the PUB topic).
A question's `GenerationSettings` are checked here, once, wherever the question enters (the Python
API, ZeroMQ, a config). The compressed tokens themselves travel between the encoder and model actors as
`pipeline.ray.encoder_worker.CompressedChunkReply`, never through the driver.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum

import numpy as np
from pydantic import BaseModel

from omnisift.counts import TokenCounts

DEFAULT_MAX_NEW_TOKENS = 64
MAX_NEW_TOKENS_LIMIT = 4096
DEFAULT_MAX_QUESTION_TOKENS = 512  # `model.max_question_tokens` unless set
CHARS_PER_TOKEN_BOUND = 8  # a question of n tokens rarely has more characters than this times n
# A question's limits, wherever it enters (the Python API, ZeroMQ, HTTP, the OpenAI route): one set, here.
MAX_QUESTION_CHARS = CHARS_PER_TOKEN_BOUND * DEFAULT_MAX_QUESTION_TOKENS  # a request body's bound (4096); the
# pipeline's own, from `model.max_question_tokens`, is `check_question`'s
DEFAULT_TIMEOUT = 120.0  # seconds a question may take when it does not say
MAX_TIMEOUT = 600.0  # seconds a question may ask for at most
MAX_TEMPERATURE = 2.0  # OpenAI's range; sampling hotter than this is noise
MAX_TOP_K = 1_000_000
MAX_SEED = 2**63 - 1
# a stream's name, wherever one enters (config, HTTP, ZeroMQ, the dashboard's form): it is a URL path segment,
# a metric label and part of clip file names, so letters, digits, '_', '-' and '.', not starting with '.'
# (no '.' or '..'), at most 64 characters
STREAM_NAME = r"^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"


def check_question(question: object, max_tokens: int = DEFAULT_MAX_QUESTION_TOKENS) -> str:
    """The question, if it is a non-empty string of at most CHARS_PER_TOKEN_BOUND * `max_tokens`
    characters; a one-line ValueError otherwise. A cheap bound checked before anything tokenizes the
    question (a 100k-character one is refused here, not after tokenizing it); the exact bound in tokens is
    `check_question_tokens`, where the model's tokenizer is."""
    if not isinstance(question, str) or not question.strip():
        raise ValueError("question must be a non-empty string")
    limit = CHARS_PER_TOKEN_BOUND * max_tokens
    if len(question) > limit:
        raise ValueError(f"question of {len(question)} characters is too long: at most {limit} "
                         f"({max_tokens} tokens, model.max_question_tokens)")
    return question


def check_question_tokens(n_tokens: int, max_tokens: int) -> None:
    """One-line ValueError if a question of `n_tokens` tokens passes `max_tokens` (the context budget's)."""
    if n_tokens > max_tokens:
        raise ValueError(f"question of {n_tokens} tokens is too long: at most {max_tokens} "
                         "(model.max_question_tokens, counted in the context budget)")


@dataclass(frozen=True)
class GenerationSettings:
    """One question's decoding settings: greedy unless `do_sample`. Invalid values raise a one-line
    ValueError naming the field (so `max_new_tokens: true` from a config or a request is refused)."""

    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None
    # seconds the model may spend on the answer, counted from when the model actor receives the question;
    # past it generation stops in the model (the asker gets a TimeoutError). None: no limit
    timeout: float | None = None

    def __post_init__(self) -> None:
        _check_int("max_new_tokens", self.max_new_tokens, 1, MAX_NEW_TOKENS_LIMIT)
        if not isinstance(self.do_sample, bool):
            raise ValueError(f"do_sample must be true or false, got {self.do_sample!r}")
        _check_float("temperature", self.temperature, 0.0, MAX_TEMPERATURE)
        _check_float("top_p", self.top_p, 0.0, 1.0)
        _check_int("top_k", self.top_k, 0, MAX_TOP_K)
        if self.seed is not None:
            _check_int("seed", self.seed, 0, MAX_SEED)
        if self.timeout is not None:
            _check_float("timeout", self.timeout, 0.0, MAX_TIMEOUT)
            if self.timeout == 0:
                raise ValueError(f"timeout must be a number > 0, got {self.timeout!r}")

    @classmethod
    def of(cls, max_new_tokens: int | None = None, **generation) -> GenerationSettings:
        """Settings from keyword arguments, `max_new_tokens=None` taking the default."""
        unknown = sorted(set(generation) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(f"unknown generation setting {unknown[0]!r}; known: "
                             f"{', '.join(cls.__dataclass_fields__)}")
        return cls(max_new_tokens=DEFAULT_MAX_NEW_TOKENS if max_new_tokens is None else max_new_tokens, **generation)


def _check_int(name: str, value: object, lo: int, hi: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo or (hi is not None and value > hi):
        span = f"[{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be an integer {span}, got {value!r}")


def _check_float(name: str, value: object, lo: float, hi: float | None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < lo or (hi is not None and value > hi):
        span = f"within [{lo}, {hi}]" if hi is not None else f">= {lo}"
        raise ValueError(f"{name} must be a number {span}, got {value!r}")


class ChunkKind(StrEnum):
    """What a source actor's step found."""

    CHUNK = "chunk"  # a chunk follows
    IDLE = "idle"  # none within the timeout
    END = "end"  # the stream ended


@dataclass(frozen=True)
class ChunkMeta:
    """What the source worker says about its next chunk; the chunk itself travels separately."""

    kind: ChunkKind
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
    # messages the source refused so far, by reason (a ZeroMQ source's `SourceStats.refused`, nonzero
    # reasons only; empty for other sources)
    refused: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ChunkKind(self.kind))


@dataclass(frozen=True, kw_only=True)
class ChunkStats(TokenCounts):
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
    cache_tokens: int
    chunks_in_context: int
    dropped: int = 0
    reconnects: int = 0
    # media is missing before this chunk (a reconnect, an outage, a jump in the producer's clock), and how
    # many chunks so far had such a gap; set by the driver from the source's word
    gap_before: bool = False
    gaps: int = 0
    model_pid: int = 0
    encoder_pid: int = 0
    # chunks lost so far: they left the source but will never reach the context (not delivered within
    # backpressure.restart_wait, an actor dead for good, or an actor raised on them); set by the driver
    lost: int = 0
    # the chunk was already in the context (a call that failed on the way back had applied it) and was not
    # appended again: prefill is 0, the other fields describe the chunk and the context as they are
    duplicate: bool = False
    # set by the driver: the model replica (its id, `model.replicas`) whose context the chunk is in, and
    # whether that context started afresh with this chunk because the stream moved there from a replica
    # dead for good (what came before is not in it: a gap in the context, counted in `snapshot()` as moves)
    replica: int = 0
    fresh_context: bool = False
    # chunks (this one included, of any streams) in the encoder forward and in the prefill forward that took
    # this chunk: how much the replicas batch (`model.encoder_batch`, `model.model_batch`); prefill_batch is
    # 0 for a duplicate (no forward)
    encode_batch: int = 1
    prefill_batch: int = 1

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
    end: str = "stop"  # why the answer ended: "stop" (the model ended it) or "length" (max_new_tokens cut it)

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
    # an alert's clip (`pipeline.serve.clips`): its file name in the clips folder, written shortly after
    clip: str | None = None

    def to_json(self) -> dict:
        return {"type": "alert" if self.alert else "watch", **asdict(self)}


@dataclass(frozen=True)
class StreamChange:
    """A stream entered a new state (`pipeline.ray.state.Status`), with a one-line reason if any."""

    stream: str
    state: str
    detail: str
    time: float  # wall clock

    def to_json(self) -> dict:
        return {"type": "stream", **asdict(self)}


@dataclass(frozen=True)
class SourceEvent:
    """Something a stream's source reported with a chunk: it reconnected (`kind` "reconnect", `detail`
    the count so far) or media is missing before the chunk (`kind` "gap")."""

    stream: str
    kind: str  # "reconnect" | "gap"
    index: int  # the chunk it came with
    media_time: float  # that chunk's start on the stream's clock
    detail: str
    time: float  # wall clock

    def to_json(self) -> dict:
        return {"type": "source", **asdict(self)}


@dataclass(frozen=True, eq=False)
class KeptLayout:
    """What the compressor kept of a stream's newest chunk (a few KB), for the dashboard's picture.

    video: [steps, rows, cols] bool, kept merged tokens of each visual frame (1 s), or None without video.
    audio: [n_audio] bool, kept audio tokens (40 ms each), or None without audio."""

    stream: str
    index: int
    video: np.ndarray | None
    audio: np.ndarray | None


Message = ChunkStats | Answer | WatchEvent | StreamChange | SourceEvent


class StreamSnapshot(BaseModel):
    """One stream's state and counters now: an entry of `OmniStream.snapshot()["streams"]` (as a dict) and
    what the HTTP API returns for a stream, the one shape of both."""

    name: str
    state: str
    detail: str
    chunks: int
    dropped: int
    lost: int
    reconnects: int
    gaps: int = 0  # chunks with media missing before them (an outage, a reconnect)
    refused: dict[str, int] = {}  # messages the source refused, by reason (ZeroMQ sources)
    lag: float | None
    media_time: float | None
    cache_tokens: int | None
    kept: dict[str, int] | None  # of the newest chunk: video_before/after, audio_before/after
    replica: dict[str, int | str | None] | None = None  # where it runs: model and encoder replica ids, node
    moves: dict[str, int] | None = None  # moves off replicas dead for good, per kind (model: a fresh context)
    source: dict | None = None  # the source's final counters, once it is closed (the stream ended or failed)
