"""The encoder and model replicas of a pipeline, and which of them serves each stream.

`model.replicas` model actors (each holding the contexts of its streams) and `model.encoder_replicas`
encoder actors. A stream is given one of each when it is added (`pipeline.ray.sharding`: the least load)
and keeps them. The stream loops (`pipeline.ray.loops`) ask `handle` for the stream's actors before each
chunk, report each chunk (`appended`: the load), and report a replica dead for good (`failover`): every
stream of that replica then moves to the least-loaded replica left; on a new model replica the stream
starts on a fresh context. When none is left, `failover` raises `NoReplicaLeft` and the stream fails.

Plain bookkeeping over actor handles: the actors are started by `pipeline.ray.actors`, spread over the
cluster's nodes (Ray's "SPREAD" scheduling strategy) when there is more than one of a kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.ray.calls import actor_id
from pipeline.ray.sharding import NoReplicaLeft, Sharding

log = logging.getLogger(__name__)

KINDS = ("encoder", "model")

__all__ = ["KINDS", "NoReplicaLeft", "Replicas"]


class Replicas:
    """The handles of every encoder and model replica, and a `Sharding` of the streams per kind."""

    def __init__(self, encoders: Sequence[Any], models: Sequence[Any], *,
                 on_move: Callable[[str, str, int, int], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.handles = {"encoder": list(encoders), "model": list(models)}
        self.shards = {kind: Sharding(kind, len(self.handles[kind]), clock=clock) for kind in KINDS}
        self.metrics = None  # `pipeline.serve.metrics.PipelineMetrics`, once the pipeline has it
        self.on_move = on_move  # (stream, kind, old replica, new replica), for each stream moved
        self.moves: dict[str, dict[str, int]] = {}  # per stream, per kind: moves off replicas dead for good

    def all(self) -> list[Any]:
        """Every actor handle, encoders first."""
        return self.handles["encoder"] + self.handles["model"]

    def alive(self) -> bool:
        """Whether a replica of each kind is alive (not known dead for good)."""
        return all(any(r.alive for r in self.shards[kind].replicas) for kind in KINDS)

    def placed(self, kind: str, nodes: Sequence[str | None]) -> None:
        """The node each replica of `kind` started on (from the actors' `where()`)."""
        for replica, node in zip(self.shards[kind].replicas, nodes, strict=True):
            replica.node = node

    def assign(self, stream: str) -> dict[str, int]:
        """Give a new stream its encoder and model replicas (the least-loaded alive ones); {kind: replica}."""
        ids = {kind: self.shards[kind].assign(stream) for kind in KINDS}
        self.moves.setdefault(stream, dict.fromkeys(KINDS, 0))
        self.publish()
        return ids

    def handle(self, kind: str, stream: str) -> Any:
        """The actor of `kind` serving `stream` now."""
        replica = self.shards[kind].replica_of(stream)
        if replica is None:
            raise KeyError(f"stream {stream!r} has no {kind} replica")
        return self.handles[kind][replica]

    def replica_of(self, kind: str, stream: str) -> int | None:
        return self.shards[kind].replica_of(stream)

    def appended(self, stream: str, cache_tokens: int) -> None:
        """A chunk of `stream` is in its context, which now holds `cache_tokens` tokens."""
        self.shards["encoder"].appended(stream)
        self.shards["model"].appended(stream, cache_tokens)
        self.publish()

    def failover(self, stream: str, kind: str, failed: str | None) -> None:
        """`stream`'s `kind` actor is dead for good (`failed`: the dead actor's id, if Ray named it): that
        replica's streams move to the others. Raises NoReplicaLeft when none is alive."""
        ids = [actor_id(h) for h in self.handles[kind]]
        if failed is None:
            dead = self.shards[kind].replica_of(stream)
        elif failed in ids:
            dead = ids.index(failed)
        else:
            return  # not one of ours (e.g. the source actor that made the chunk): nothing moves
        try:
            moved = self.shards[kind].fail(dead)
        finally:
            self.publish()
        if moved:
            log.error("%s replica %d is dead for good: %s", kind, dead,
                      ", ".join(f"{s} -> replica {r}" for s, r in sorted(moved.items())))
        for name, new in sorted(moved.items()):  # counted here, once, for every stream (an ended one too)
            self.moves.setdefault(name, dict.fromkeys(KINDS, 0))[kind] += 1
            if self.metrics is not None:
                self.metrics.moves.labels(name, kind).inc()
            if self.on_move is not None:
                self.on_move(name, kind, dead, new)
        if self.shards[kind].replica_of(stream) == dead:  # told again after it was moved: not alive still
            raise NoReplicaLeft(f"no {kind} replica left ({len(ids)} started, all dead for good)")

    def remove(self, stream: str) -> list[Any]:
        """Forget a stream; the actors that held its state (to be told to drop it)."""
        held = []
        for kind in KINDS:
            replica = self.shards[kind].replica_of(stream)
            if replica is not None:
                held.append(self.handles[kind][replica])
            self.shards[kind].remove(stream)
        self.moves.pop(stream, None)
        if self.metrics is not None:
            self.metrics.unplace(stream)
        self.publish()
        return held

    def moves_of(self, stream: str) -> dict[str, int]:
        """The stream's moves off replicas dead for good, per kind (each model move: a fresh context)."""
        return dict(self.moves.get(stream, dict.fromkeys(KINDS, 0)))

    def placement(self, stream: str) -> dict | None:
        """Where a stream runs: {model, encoder: replica id, node: the model replica's node}."""
        model, encoder = self.replica_of("model", stream), self.replica_of("encoder", stream)
        if model is None:
            return None
        return {"model": model, "encoder": encoder, "node": self.shards["model"].replicas[model].node}

    def view(self) -> dict[str, list[dict]]:
        """Per kind, per replica: id, node, alive, streams, load score, context tokens (for `snapshot()`)."""
        return {kind: self.shards[kind].view() for kind in KINDS}

    def publish(self) -> None:
        """Bring the metrics' replica gauges up to date."""
        if self.metrics is None:
            return
        for kind in KINDS:
            sh = self.shards[kind]
            self.metrics.replicas(kind, sh.view(), {s: load.replica for s, load in sh.streams.items()})
