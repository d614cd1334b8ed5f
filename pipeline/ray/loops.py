"""The two driver-side coroutines that move one stream's chunks (see `pipeline.ray.stream`).

The *pump* takes the next chunk's small meta from the source actor and hands the chunk's object ref
(never the frames) to the encoder; the *appender* prefills the encoded chunks into the model in order,
then evaluates the standing questions. Between them, the stream's bounded queue.

An actor that dies is restarted by Ray (up to its `max_restarts`); while it restarts Ray fails calls to
it at once. The appender then sends the same chunk again, re-encoding it first if the encoder lost it,
until the actor is back or `backpressure.restart_wait` seconds have passed; meanwhile newer chunks wait in
the bounded queues, and a live source's drop policy discards the oldest (`dropped`). A chunk that cannot be
delivered by then, or on which an actor raised, is counted as `lost`, in the stream's state, in every later
stats record and in `omnisift_chunks_lost_total`, and the stream goes on. A model actor that restarted has
lost every stream's context: the stream goes on in a fresh one. One that was only unreachable may have run
the call that failed; the chunk sent again is then skipped by the model (its stats say `duplicate`) and
counted once. An encoder or model actor dead for good (its restarts used up, or killed without restart)
hands its streams to the other replicas of its kind (`router`, `pipeline.ray.replicas`): the chunk that
found it dead is sent again to the stream's new replica (re-encoded there if the encoder died), nothing is
lost, and on a new model replica the stream goes on in a fresh context (the chunk's stats say
`fresh_context`; the router counts the move and announces it). When no replica of
that kind is left (or there is no router) the stream fails: its state becomes "failed", naming the actor,
the pump stops pulling from the source, and the chunk that found the actor dead and those already past the
source are counted lost. A stream that ends or fails closes its
source and ends the source actor at once; it stays listed, and its context answers, until removed. So
for every stream, chunks produced by
the source = chunks in the context + dropped + lost + chunks still in flight (none once it is over). A
source that fails does not cut that short: the chunks it delivered before failing, still in flight, reach
the context first, and only then does the stream become "failed" (so a stream seen over is complete).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from pipeline.messages import ChunkKind, ChunkMeta, ChunkStats, SourceEvent, WatchEvent
from pipeline.ray.calls import (
    actor_gone,
    actor_id,
    actor_restarting,
    failed_actor,
    unwrap,
)
from pipeline.ray.events import EventHub
from pipeline.ray.policy import FailurePolicy, Verdict
from pipeline.ray.sharding import NoReplicaLeft
from pipeline.ray.state import RestartTracker, Status, StreamState, Watch
from streams.errors import one_line

log = logging.getLogger(__name__)
LINE = 300  # characters of an error in a stream's state and the log

RETRY_SECONDS = 0.3  # between calls to an actor that is restarting
GIVE_UP_SECONDS = 60.0  # a source actor unreachable this long fails the stream


def _source_failure(e: BaseException, why: str) -> str:
    """Why the source actor's call failed the stream, in one line (`why`: the policy's reason)."""
    if why == "raised":
        return one_line(unwrap(e), LINE)  # the source raised: its own message
    if why == "dead":
        return f"the source actor is dead for good ({type(e).__name__})"
    return "source actor unreachable"


class _SourceFailed(Exception):
    """The source raised, or its actor stayed unreachable or is dead for good: the stream fails with this
    message."""


class _ActorDead(Exception):
    """The encoder or model actor is dead for good: the stream fails with this message."""


class StreamLoops:
    """The pump and the appender of one stream, over its encoder and model actors: `encoder` and `model`,
    or with a `router` (`pipeline.ray.replicas.Replicas`) the replicas it names for the stream."""

    def __init__(self, st: StreamState, *, encoder: Any = None, model: Any = None, metrics: Any, events: EventHub,
                 watches: dict[int, Watch], restarts: RestartTracker, restart_wait: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 on_alert: Callable[[StreamState, WatchEvent], WatchEvent] | None = None, router: Any = None) -> None:
        self.st = st
        self.name = st.spec.name
        self.router = router
        self.replica = {"encoder": 0, "model": 0}  # the replica ids this stream's calls go to
        self._fresh = False  # the stream moved to another model replica: its next chunk starts a fresh context
        self.encoder, self.model, self.metrics = encoder, model, metrics
        self.events = events
        self.watches = watches  # shared with OmniStream: questions added later are seen
        self.restarts = restarts
        self.restart_wait = restart_wait  # seconds one chunk waits for a restarting encoder or model
        self.clock = clock
        self.on_alert = on_alert  # an alert, before it is emitted: OmniStream names its clip and writes it
        self.source_policy = FailurePolicy.for_source(GIVE_UP_SECONDS, clock)
        self._stop = asyncio.Event()  # set when the stream fails for good: the pump pulls no more chunks
        self._follow()  # the router's replicas for the stream, if there is a router
        self._source_error: str | None = None  # why the source failed; the stream fails once its chunks are in

    def start(self) -> list[asyncio.Task]:
        """Start both loops; the tasks end at end of stream or failure, or when cancelled."""
        return [asyncio.create_task(self.pump(), name=f"pump-{self.name}"),
                asyncio.create_task(self.append(), name=f"append-{self.name}")]

    # ---- source -> encoder ------------------------------------------------------------------------

    async def pump(self) -> None:
        """Source -> encoder, one chunk at a time, bounded by the queue to the appender."""
        st = self.st
        while not self._stop.is_set():
            await self._resumed()
            if self._stop.is_set():
                break
            try:
                meta, chunk_ref = await self._next_chunk()
            except _SourceFailed as e:
                # the chunks already queued still reach the context; the appender says "failed" after them
                self._source_error = str(e)
                break
            if meta is None:
                continue  # the source actor is restarting
            self._source_said(meta)
            if meta.kind is ChunkKind.END:
                break
            if meta.kind is not ChunkKind.CHUNK:
                continue
            if self._stop.is_set():  # the stream failed while the source was asked: this chunk is past it
                self._lost(meta)
                break
            self._follow()
            encoded_ref = self.encoder.encode.remote(chunk_ref)  # the frames go source -> encoder directly
            # the chunk's ref goes along too, to encode it again if the encoder restarts with it
            await st.queue.put((meta, chunk_ref, encoded_ref))  # waits while max_in_flight chunks are in flight
            del chunk_ref, encoded_ref
        await self._release_source()
        await st.queue.put(None)

    async def _release_source(self) -> None:
        """The source ended or the stream failed: close the source and end its actor now, giving back the
        device or connection and the actor's CPU, rather than when the stream is removed. The stream stays
        listed with its state and the source's final counters, and its context still answers questions."""
        from pipeline.ray.actors import close_source

        self.st.source_final = await close_source(self.st.source)

    async def _resumed(self) -> None:
        """Wait until the stream is not paused, or has failed."""
        if self.st.resumed.is_set() or self._stop.is_set():
            return
        waits = [asyncio.create_task(self.st.resumed.wait()), asyncio.create_task(self._stop.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in waits:
                t.cancel()

    async def _next_chunk(self) -> tuple[ChunkMeta | None, Any]:
        """(meta, chunk ref) from the source actor; (None, None) after a pause while it restarts.
        Raises _SourceFailed when `self.source_policy` says the stream fails: the source raised, its
        actor is dead for good, or it stayed unreachable for GIVE_UP_SECONDS."""
        try:
            meta_ref, chunk_ref = self.st.source.next_chunk.options(num_returns=2).remote(0.5)
            meta = await meta_ref
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            verdict = self.source_policy.judge("source", gone=actor_gone(e), restarting=actor_restarting(e))
            if verdict is Verdict.FAIL:
                raise _SourceFailed(_source_failure(e, self.source_policy.why)) from None
            await asyncio.sleep(RETRY_SECONDS)
            return None, None
        self.source_policy.succeeded()
        return meta, chunk_ref

    def _source_said(self, meta: ChunkMeta) -> None:
        """Take the source's process id and its cumulative drop and reconnect counts; a reconnect and a gap
        before the chunk are events of their own."""
        self._seen_pid("source", meta.pid)
        if meta.kind is ChunkKind.CHUNK and meta.reconnects > self.st.reconnects:
            self.events.emit(SourceEvent(self.name, "reconnect", meta.index, meta.start,
                                         f"{meta.reconnects} reconnects so far", time.time()))
        if meta.kind is ChunkKind.CHUNK and meta.gap_before:
            self.events.emit(SourceEvent(self.name, "gap", meta.index, meta.start, "media missing before this chunk",
                                         time.time()))
        self.st.dropped, self.st.reconnects = meta.dropped, meta.reconnects
        if meta.refused != self.st.refused:
            self._refused(meta.refused)
        if self.metrics is not None:
            self.metrics.source_counts(self.name, meta.dropped, meta.reconnects)

    def _refused(self, refused: dict[str, int]) -> None:
        """The source refused more messages: counted in the stream's state, each new reason logged once."""
        for reason in sorted(set(refused) - set(self.st.refused)):
            log.warning("%s: the source refused a message (%s); later ones are counted in snapshot()['refused']",
                        self.name, reason)
        self.st.refused = dict(refused)

    # ---- encoder -> model -------------------------------------------------------------------------

    async def append(self) -> None:
        """Encoded chunks -> model context, in order; then the standing questions of this stream."""
        st = self.st
        while True:
            item = await st.queue.get()
            if item is None:  # the pump is done: every chunk it took from the source is accounted for
                if self._source_error is not None:
                    self.events.set_state(st, Status.FAILED, self._source_error)
                else:
                    self.events.set_state(st, Status.ENDED)  # a failed stream stays failed (Status)
                return
            meta, chunk_ref, encoded_ref = item
            del item
            stats = None
            if not self._stop.is_set():  # once the stream failed, a queued chunk never reaches the context
                try:
                    stats = await self._deliver(meta, chunk_ref, encoded_ref)
                except _ActorDead as e:
                    self._fail(str(e))
            if stats is not None:
                st.keep(meta, chunk_ref)  # the newest chunks stay reachable for pictures and alert clips
            del chunk_ref, encoded_ref
            if stats is None:
                self._lost(meta)
                continue
            if stats.duplicate:
                # a call that failed (Ray could not say whether it ran) had run on a model that did not
                # restart: the chunk is in the context once, and this is the first reply that says so
                log.warning("%s: chunk %d was already in the context (a failed call to the model had run); "
                            "the copy sent again was skipped", self.name, meta.index)
            self._seen_pid("model", stats.model_pid)
            self._seen_pid("encoder", stats.encoder_pid)
            stats = st.appended(replace(stats, replica=self.replica["model"], fresh_context=self._fresh), meta)
            self._fresh = False
            if self.router is not None:
                self.router.appended(self.name, stats.cache_tokens)
            if self.metrics is not None:
                self.metrics.chunk(stats)
            self.events.emit(stats)
            await self._evaluate_watches(stats)

    async def _deliver(self, meta: ChunkMeta, chunk_ref: Any, encoded_ref: Any) -> ChunkStats | None:
        """Append one chunk to the model: its stats, or None if it cannot be. Raises _ActorDead if the
        encoder or model actor is dead for good and no other replica of it is left (`_move`).

        The append fails when the model actor dies or restarts under it, or the encoder actor did with
        the chunk (the append's argument is then that failure, naming the encoder), or either raised.
        While the failing actor is restarting the chunk is sent again every RETRY_SECONDS, through the
        encoder first if the encoder lost it, for up to `restart_wait` seconds; an error raised inside an
        actor, or the time running out, gives None. A call that failed may have run on a model that was
        only unreachable: the model then skips the chunk sent again (`ChunkStats.duplicate`).

        Which of these applies is `FailurePolicy.for_chunk`'s verdict (`pipeline.ray.policy`).
        """
        policy = FailurePolicy.for_chunk(self.restart_wait, self.clock)
        while True:
            encoder = self.encoder
            if self._follow() and self.encoder is not encoder:  # moved to another encoder meanwhile
                encoded_ref = self.encoder.encode.remote(chunk_ref)
            try:
                return await self.model.append.remote(meta, encoded_ref)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001
                failed = failed_actor(e)
                model_failed = failed == actor_id(self.model)
                actor = "model" if model_failed else "encoder"
                verdict = policy.judge(actor, gone=actor_gone(e), restarting=actor_restarting(e))
                if verdict is Verdict.FAIL:
                    self._move(actor, failed, e)  # raises _ActorDead when no replica is left
                    policy = FailurePolicy.for_chunk(self.restart_wait, self.clock)
                elif verdict is Verdict.LOSE:
                    if policy.why == "raised":
                        self._failed(e)
                    else:
                        log.warning("%s: the %s actor still unavailable after %gs", self.name, actor,
                                    self.restart_wait)
                    return None
            log.info("%s: the %s actor is unavailable; chunk %d is sent again", self.name, actor, meta.index)
            await asyncio.sleep(RETRY_SECONDS)
            if not model_failed:  # the encoded chunk is that failure: encode it again
                encoded_ref = self.encoder.encode.remote(chunk_ref)

    def _move(self, actor: str, failed: str | None, e: BaseException) -> None:
        """The stream's `actor` is dead for good: move to another replica of that kind (the router moves
        every stream of the dead one). Raises _ActorDead when there is no router or no replica left."""
        reason = f"the {actor} actor is dead for good ({type(e).__name__})"
        if self.router is None:
            raise _ActorDead(reason)
        try:
            self.router.failover(self.name, actor, failed)
        except NoReplicaLeft as none:
            raise _ActorDead(f"{reason}; {none}") from None
        if not self._follow():  # the dead actor is none of the stream's replicas: nowhere to move
            raise _ActorDead(reason)

    def _follow(self) -> bool:
        """Take the actors the router names for this stream now (another stream may have found the stream's
        replica dead and moved it); count and announce a move. Whether anything changed."""
        if self.router is None:
            return False
        changed = False
        for kind in ("encoder", "model"):
            handle, replica = self.router.handle(kind, self.name), self.router.replica_of(kind, self.name)
            if handle is getattr(self, kind):
                continue
            old = getattr(self, kind)
            setattr(self, kind, handle)
            if old is not None:  # None: the first call, from the constructor
                self._moved(kind, self.replica[kind], replica)
            self.replica[kind] = replica
            changed = True
        return changed

    def _moved(self, kind: str, old: int, new: int) -> None:
        """The stream's calls go to another replica now (the router counted and announced the move)."""
        if kind == "model":
            self._fresh = True  # the next chunk starts the stream's context on the new replica
        log.info("%s: %s replica %d -> %d", self.name, kind, old, new)

    def _lost(self, meta: ChunkMeta) -> None:
        """Count a chunk that left the source but will never reach the context (see `_deliver`)."""
        self.st.lost += 1
        if self.metrics is not None:
            self.metrics.chunk_lost(self.name)
        log.warning("%s: chunk %d lost in flight (%d lost so far)", self.name, meta.index, self.st.lost)

    async def _call(self, call: Callable[[], Awaitable[Any]]) -> Any:
        """Await an actor call; None if the actor died under it (it restarts) or raised (the stream
        shows the error and goes on)."""
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001
            if actor_gone(e):
                log.warning("%s: an actor died under a call (%s); it restarts", self.name, type(e).__name__)
                await asyncio.sleep(RETRY_SECONDS)
                return None
            self._failed(e)
            return None

    def _fail(self, reason: str) -> None:
        """An actor is dead for good: the stream fails, the pump stops, queued chunks are counted lost."""
        self.events.set_state(self.st, Status.FAILED, reason)
        self._stop.set()
        log.error("%s: %s; the stream stops", self.name, reason)

    def _failed(self, e: BaseException) -> None:
        """An actor raised: the stream shows the error and goes on."""
        self.events.set_state(self.st, Status.ERROR, one_line(unwrap(e), LINE))
        log.error("%s: %s", self.name, one_line(unwrap(e), LINE))

    def _seen_pid(self, actor: str, pid: int) -> None:
        if self.restarts.seen(actor, self.name, pid, self.replica.get(actor, 0)):
            if self.metrics is not None:
                self.metrics.restarts.labels(actor).inc()
            self.events.set_state(self.st, self.st.state, f"{actor} actor restarted")

    async def _evaluate_watches(self, stats: ChunkStats) -> None:
        """Ask each standing question that is due, now that chunk `stats.index` is in the context."""
        end = stats.media_time + stats.duration
        for w in list(self.watches.values()):
            if not w.due(self.name, end):
                continue
            started = time.perf_counter()
            p = await self._call(lambda q=w.spec.question: self.model.yes_probability.remote(self.name, q))
            if p is None:
                continue
            if self.metrics is not None:
                self.metrics.stage.labels(self.name, "watch").observe(time.perf_counter() - started)
            event = WatchEvent(self.name, w.spec.question, stats.index, end, p, p >= w.spec.threshold,
                               max(0.0, time.time() - stats.capture_time), w.id)
            if event.alert and self.on_alert is not None:
                event = self.on_alert(self.st, event)
            self.events.emit(event)
