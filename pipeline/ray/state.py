"""The driver's bookkeeping of a running pipeline: one `StreamState` per stream, the standing questions
(`Watch`), and the actor processes seen (`RestartTracker`), from which `OmniStream.snapshot()` is made.

Plain data, no Ray and no I/O: the stream loops (`pipeline.ray.loops`) update it, the API reads it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from pipeline.config import StreamConfig, WatchConfig
from pipeline.messages import ChunkMeta, ChunkStats, StreamSnapshot
from pipeline.serve.requests import Conflict


class Status(StrEnum):
    """A stream's state as the driver sees it (its string is what `snapshot()` and the events say).

        STARTING -> RUNNING <-> PAUSED, either -> ERROR (an actor raised on a chunk; the stream goes on)
        any of those -> ENDED (the source ended) | FAILED (source or actor failed for good)
        any state but REMOVED/CLOSED -> REMOVED (remove_stream) | CLOSED (the pipeline closed)

    FAILED is final: a chunk still in flight that ends or errors afterwards does not hide why the stream
    stopped, and a failed stream that is removed stays failed. A state may be entered again to change
    its `detail` (e.g. "model actor restarted")."""

    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"
    ERROR = "error"
    ENDED = "ended"
    FAILED = "failed"
    REMOVED = "removed"
    CLOSED = "closed"


_LIVE = frozenset({Status.RUNNING, Status.PAUSED, Status.ERROR})
_OUT = frozenset({Status.ENDED, Status.FAILED, Status.REMOVED, Status.CLOSED})
TRANSITIONS: dict[Status, frozenset[Status]] = {
    Status.STARTING: _LIVE | _OUT,
    Status.RUNNING: _LIVE | _OUT,
    Status.PAUSED: _LIVE | _OUT,
    Status.ERROR: _LIVE | _OUT,
    Status.ENDED: frozenset({Status.ENDED, Status.FAILED, Status.REMOVED, Status.CLOSED}),
    Status.FAILED: frozenset({Status.FAILED}),
    Status.REMOVED: frozenset(),
    Status.CLOSED: frozenset(),
}
ACTIVE_STATES = frozenset({Status.STARTING}) | _LIVE  # a stream in one of these may yield more
OVER_STATES = _OUT  # a stream in one of these yields nothing more


@dataclass
class Watch:
    """A standing yes/no question and, per stream, the media time of its next evaluation."""

    id: int
    spec: WatchConfig
    next_due: dict[str, float] = field(default_factory=dict)
    origin: str = "subscriber"  # config | api | subscriber (an `OmniStream.watch()` iterator)

    def due(self, stream: str, end: float) -> bool:
        """Whether to evaluate now that `stream`'s context reaches media time `end`; if so, the next
        evaluation is booked `every` seconds of media later (so a slow model never piles them up)."""
        if self.spec.stream not in (None, stream):
            return False
        due = self.next_due.get(stream)
        if due is not None and end < due - 1e-6:
            return False
        self.next_due[stream] = end + self.spec.every
        return True


FINISHED = (Status.FAILED, Status.ENDED)  # states in which pause and resume no longer apply


@dataclass
class StreamState:
    """One stream as the driver sees it: its source actor, state (with `detail`, the one-line reason of
    a "failed" or "error" state), the queue between its two loops, and its counters. `dropped` and
    `reconnects` are the source's own (a restarted source counts from 0 again); `lost` counts chunks that
    left the source but never reached the context: the encoder or model actor raised on them, did not come
    back from a restart within `backpressure.restart_wait` seconds, or is dead for good (which fails the
    stream: the chunks already past the source are lost, and no more are taken from it)."""

    spec: StreamConfig
    source: Any = None
    state: Status = Status.STARTING
    detail: str = ""
    resumed: asyncio.Event = field(default_factory=asyncio.Event)
    queue: asyncio.Queue | None = None
    tasks: list[asyncio.Task] = field(default_factory=list)
    chunks: int = 0
    last: ChunkStats | None = None
    dropped: int = 0
    lost: int = 0
    reconnects: int = 0
    gaps: int = 0  # chunks in the context with media missing before them (`ChunkStats.gap_before`)
    refused: dict[str, int] = field(default_factory=dict)  # the source's refused messages by reason
    source_where: dict | None = None  # node id and pid of the source actor as it started (pipeline.ray.workers.where)
    source_final: dict | None = None  # the source's own counters (streams.SourceStats) when it was closed
    # the last `keep_media` chunks in the context, as (meta, object ref): holding the refs keeps those chunks
    # in Ray's object store for the dashboard's picture and alert clips (pipeline.ray.media), and no more
    keep_media: int = 1
    recent: deque = field(init=False)
    picture: tuple | None = None  # ((pid, index, capture time), JPEG) of the newest chunk, once drawn
    last_clip: tuple[int, str] | None = None  # (chunk index, file name) of the last alert clip

    def __post_init__(self) -> None:
        self.recent = deque(maxlen=max(1, self.keep_media))

    def keep(self, meta: ChunkMeta, chunk_ref: Any) -> None:
        """Hold a chunk that just joined the context (the oldest held goes)."""
        self.recent.append((meta, chunk_ref))

    def to(self, state: Status | str, detail: str = "") -> bool:
        """Enter `state` (with its one-line `detail`) if `TRANSITIONS` allows it; whether it did."""
        state = Status(state)
        if state not in TRANSITIONS[Status(self.state)]:
            return False
        self.state, self.detail = state, detail
        return True

    def require_live(self, action: str) -> None:
        """Raise a one-line ValueError if the stream has failed or ended: `action` cannot apply to it."""
        if self.state in FINISHED:
            reason = f" ({self.detail})" if self.detail else ""
            raise Conflict(f"cannot {action} stream {self.spec.name!r}: it has {self.state}{reason}; "
                             "remove it and add it again")

    def appended(self, stats: ChunkStats, meta: ChunkMeta) -> ChunkStats:
        """Count a chunk now in the context; its stats, completed with what only the driver knows (losses,
        and from the source's `meta`, a gap before it)."""
        self.chunks += 1
        self.gaps += meta.gap_before
        self.last = replace(stats, lost=self.lost, gap_before=meta.gap_before, gaps=self.gaps)
        return self.last

    def snapshot(self, **placement) -> StreamSnapshot:
        """This stream's counters now (as a dict, one entry of `OmniStream.snapshot()`); `placement`: its
        `replica` and `moves`, which the replicas know."""
        last = self.last
        return StreamSnapshot(
            name=self.spec.name, state=str(self.state), detail=self.detail, chunks=self.chunks, dropped=self.dropped,
            lost=self.lost, reconnects=self.reconnects, gaps=self.gaps, refused=dict(self.refused),
            lag=None if last is None else last.lag,
            media_time=None if last is None else last.media_time + last.duration,
            cache_tokens=None if last is None else last.cache_tokens,
            kept=None if last is None else {"video_before": last.video_before, "video_after": last.video_after,
                                            "audio_before": last.audio_before, "audio_after": last.audio_after},
            source=self.source_final, **placement)


class RestartTracker:
    """Counts actor restarts from the process id every reply carries: a new pid from the same actor
    means Ray ran its constructor again. `counts` is what `OmniStream.restarts` shows."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {"source": 0, "encoder": 0, "model": 0}
        self._pids: dict[str, int] = {}

    def seen(self, actor: str, stream: str, pid: int, replica: int = 0) -> bool:
        """Record that `actor` (of `stream`, for a source; replica `replica` of an encoder or model) answered
        from `pid`; True if it restarted."""
        key = f"{actor}:{replica}" if actor != "source" else f"source:{stream}"
        old = self._pids.get(key)
        self._pids[key] = pid
        if old is not None and old != pid and pid:
            self.counts[actor] += 1
            return True
        return False
