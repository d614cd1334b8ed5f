"""Which replica serves which stream: the assignment of streams to model (or encoder) replicas, the load
score it is chosen by, and the reassignment when a replica dies for good. Plain data, no Ray: the driver
(`pipeline.ray.replicas`) keeps one `Sharding` per kind of actor and feeds it what the stream loops see.

The load score of a replica is the sum over its streams of

    load(stream) = chunks_per_second + context_tokens / TOKENS_PER_LOAD

`chunks_per_second` is the stream's rate of chunks into the context over the last `RATE_WINDOW` seconds,
smoothed towards the real-time rate (`NOMINAL_RATE`, one 2-second chunk every 2 seconds) with a prior worth
`PRIOR_SECONDS`: a stream that has just started counts as a real-time stream, a file read at 4x real time
climbs to its measured rate within tens of seconds. It stands for the model's prefill work. `context_tokens`
is the stream's KV cache (tokens held by the replica; zero for encoders, which hold none) and stands for
memory and the attention cost of every prefill: `TOKENS_PER_LOAD` tokens weigh as much as one chunk per
second (a real-time stream at the real 7B widths keeps about 209 tokens per chunk, so a 120-second window
of about 12.5k tokens weighs about 3 chunks per second). A new stream goes to the alive replica with the
least load, ties broken by fewer streams, then the lower replica id; it stays there until that replica
dies for good. Then each of its streams, the heaviest first, goes to the least-loaded replica left.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

NOMINAL_RATE = 0.5  # chunks per second of a real-time stream
PRIOR_SECONDS = 10.0  # how much the nominal rate weighs in a stream's measured rate
RATE_WINDOW = 30.0  # seconds of appends a stream's rate is measured over
TOKENS_PER_LOAD = 4096  # context tokens that weigh as much as one chunk per second


class NoReplicaLeft(RuntimeError):
    """Every replica of a kind is dead for good: the stream cannot go on."""


def resolve_replicas(setting: int | str | None, cluster_gpus: float, default: int | None = None) -> int:
    """A replica count from the config: an integer as is, "auto" one per GPU of the Ray cluster (at least
    1), None `default` (the model replicas' count, for the encoders)."""
    if setting is None:
        if default is None:
            raise ValueError("a replica count of None needs a default")
        return default
    if setting == "auto":
        return max(1, int(cluster_gpus))
    return int(setting)


@dataclass
class StreamLoad:
    """One stream's share of its replica's load: its recent appends and its context tokens."""

    replica: int
    since: float  # when the stream was first assigned (its rate is measured from then)
    tokens: int = 0
    appends: deque = field(default_factory=deque)  # times of the appends within RATE_WINDOW

    def rate(self, now: float) -> float:
        """Chunks per second over the last RATE_WINDOW seconds, smoothed towards NOMINAL_RATE."""
        while self.appends and self.appends[0] < now - RATE_WINDOW:
            self.appends.popleft()
        elapsed = min(max(0.0, now - self.since), RATE_WINDOW)
        return (len(self.appends) + NOMINAL_RATE * PRIOR_SECONDS) / (elapsed + PRIOR_SECONDS)

    def load(self, now: float, tokens_per_load: float) -> float:
        return self.rate(now) + self.tokens / tokens_per_load


@dataclass
class Replica:
    """One actor of a kind: its id (its index), the node it started on, and whether it is still alive."""

    id: int
    node: str | None = None
    alive: bool = True


class Sharding:
    """Streams -> replicas of one kind of actor ("model" or "encoder"): least-load assignment, sticky,
    and failover of a dead replica's streams to the others."""

    def __init__(self, kind: str, count: int, *, nodes: list[str | None] | None = None,
                 tokens_per_load: float = TOKENS_PER_LOAD, clock: Callable[[], float] = time.monotonic) -> None:
        if count < 1:
            raise ValueError(f"{kind} replicas must be at least 1, got {count}")
        nodes = nodes or [None] * count
        self.kind = kind
        self.replicas = [Replica(i, nodes[i]) for i in range(count)]
        self.streams: dict[str, StreamLoad] = {}
        self.tokens_per_load = tokens_per_load
        self.clock = clock

    def load(self, replica: int) -> float:
        """The replica's load score: the sum of its streams' (module docstring)."""
        now = self.clock()
        return sum(s.load(now, self.tokens_per_load) for s in self.streams.values() if s.replica == replica)

    def streams_of(self, replica: int) -> list[str]:
        return sorted(name for name, s in self.streams.items() if s.replica == replica)

    def least_loaded(self) -> int:
        """The alive replica with the least load (then fewer streams, then the lower id)."""
        alive = [r.id for r in self.replicas if r.alive]
        if not alive:
            raise NoReplicaLeft(f"no {self.kind} replica left ({len(self.replicas)} started, all dead for good)")
        return min(alive, key=lambda r: (self.load(r), len(self.streams_of(r)), r))

    def assign(self, stream: str) -> int:
        """The stream's replica: the one it has, or (new stream) the least-loaded alive one from now on."""
        s = self.streams.get(stream)
        if s is None:
            s = self.streams[stream] = StreamLoad(self.least_loaded(), self.clock())
        return s.replica

    def replica_of(self, stream: str) -> int | None:
        s = self.streams.get(stream)
        return None if s is None else s.replica

    def appended(self, stream: str, tokens: int = 0) -> None:
        """A chunk of `stream` joined the context; `tokens` is its context's size now."""
        s = self.streams.get(stream)
        if s is not None:
            s.appends.append(self.clock())
            s.tokens = tokens

    def remove(self, stream: str) -> None:
        self.streams.pop(stream, None)

    def fail(self, replica: int) -> dict[str, int]:
        """Replica `replica` is dead for good: each of its streams, heaviest first, moves to the least-loaded
        replica left, with an empty context (tokens 0; its rate goes along). Returns {stream: new replica};
        empty if the replica was already known dead. Raises NoReplicaLeft (marking it dead all the same)."""
        r = self.replicas[replica]
        if not r.alive:
            return {}
        r.alive = False
        now = self.clock()
        moving = sorted(self.streams_of(replica), key=lambda n: -self.streams[n].load(now, self.tokens_per_load))
        moved = {}
        for name in moving:
            s = self.streams[name]
            s.replica, s.tokens = self.least_loaded(), 0
            moved[name] = s.replica
        return moved

    def view(self) -> list[dict]:
        """Per replica: id, node, alive, its streams, load score and context tokens (snapshot and metrics)."""
        now = self.clock()
        out = []
        for r in self.replicas:
            mine = [s for s in self.streams.values() if s.replica == r.id]
            out.append({"id": r.id, "node": r.node, "alive": r.alive, "streams": self.streams_of(r.id),
                        "load": round(sum(s.load(now, self.tokens_per_load) for s in mine), 4),
                        "context_tokens": sum(s.tokens for s in mine)})
        return out
