"""The stream loops (pump and appender) over fake actors, without Ray running: a chunk whose encoder or
model actor is restarting is sent again until the actor is back, within `restart_wait` seconds of a
clock the test controls; chunks that still never reach the context are counted as lost; an actor dead
for good fails the stream and stops it; and every chunk the source produced is accounted for."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace

import pytest
import ray
from ray import ActorID
from ray.exceptions import ActorDiedError, ActorUnavailableError

from pipeline.config import StreamConfig, WatchConfig
from pipeline.messages import ChunkMeta, ChunkStats, SourceEvent, StreamChange, WatchEvent
from pipeline.ray.events import EventHub
from pipeline.ray.loops import StreamLoops
from pipeline.ray.replicas import Replicas
from pipeline.ray.state import RestartTracker, StreamState, Watch
from pipeline.serve.metrics import PipelineMetrics

REFUSE_SECONDS = 2.0  # what a call to a restarting actor costs before Ray refuses it (measured: ~2 s)


class _Clock:
    """The loops' clock: time passes only when a fake actor says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Ref:
    """Stands in for an ObjectRef: awaiting it gives the value or raises the error."""

    def __init__(self, value=None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    def __await__(self):
        return self._get().__await__()

    async def _get(self):
        await asyncio.sleep(0)
        if self.error is not None:
            raise self.error
        return self.value


class _Method:
    def __init__(self, fn) -> None:
        self.fn = fn

    def options(self, **_):
        return self

    def remote(self, *args):
        return self.fn(*args)


class _Source:
    """Emits chunks `0..emitted-1` of which `dropped` were discarded by its drop policy, then ends.

    dead_from: from this chunk on, every call fails as on an actor dead for good (Ray's ActorDiedError).
    on_chunk: called with the index of each chunk as it leaves."""

    def __init__(self, emitted: int, dropped: set[int], dead_from: int | None = None, on_chunk=None) -> None:
        self.left = [i for i in range(emitted) if i not in dropped]
        self.emitted, self.dropped, self.delivered = emitted, dropped, 0
        self.dead_from, self.on_chunk, self.calls = dead_from, on_chunk, 0
        self.closed_after: int | None = None  # chunks delivered when close() was called
        self.next_chunk = _Method(self._next)
        self.close = _Method(self._close)

    def _close(self):
        self.closed_after = self.delivered
        return _Ref({"chunks_emitted": self.emitted, "chunks_dropped": len(self.dropped)})

    def _next(self, timeout):
        self.calls += 1
        if self.left and self.dead_from is not None and self.left[0] >= self.dead_from:
            return _Ref(error=ActorDiedError()), _Ref(error=ActorDiedError())
        if not self.left:
            return _Ref(ChunkMeta("end", "cam", dropped=len(self.dropped), pid=1)), _Ref(None)
        i = self.left.pop(0)
        self.delivered += 1
        dropped = sum(d < i for d in self.dropped)
        if self.on_chunk is not None:
            self.on_chunk(i)
        return _Ref(ChunkMeta("chunk", "cam", i, 2.0 * i, 2.0, dropped=dropped, pid=1)), _Ref(i)


class _Actor:
    """What the fake encoder and model share: an id Ray's errors name, a process id, and failures.

    dead_from: from this chunk on, every call fails as on an actor dead for good (Ray's ActorDiedError).
    outage: (index, seconds): the call for chunk `index` finds the actor restarting, and so does every
    call for `seconds` of the clock after it (each refused call takes REFUSE_SECONDS); then it answers
    from a new process, or from the same one if it was only unreachable (`restarts=False`)."""

    def __init__(self, clock: _Clock, pid: int, dead_from: int | None = None,
                 outage: tuple[int, float] | None = None, restarts: bool = True) -> None:
        self._actor_id = ActorID.from_random()
        self.clock, self.pid, self.dead_from, self.outage = clock, pid, dead_from, outage
        self.restarts = restarts
        self.down_until: float | None = None
        self.calls: list[int] = []  # chunk index of every call, failed or not

    def _failure(self, index: int) -> BaseException | None:
        self.calls.append(index)
        if self.dead_from is not None and index >= self.dead_from:
            e = ActorDiedError()
            e.actor_id = self._actor_id.hex()
            return e
        if self.outage is not None and self.down_until is None and index == self.outage[0]:
            self.down_until = self.clock.now + self.outage[1]
            self.pid += 10 if self.restarts else 0  # the process that comes back
        if self.down_until is not None and self.clock.now < self.down_until:
            self.clock.now += REFUSE_SECONDS
            return ActorUnavailableError("The actor is restarting.", self._actor_id.binary())
        return None


class _Encoder(_Actor):
    def __init__(self, clock: _Clock, **kw) -> None:
        super().__init__(clock, 3, **kw)
        self.encode = _Method(self._encode)

    def _encode(self, ref: _Ref) -> _Ref:
        error = self._failure(ref.value)
        return _Ref(error=error) if error is not None else _Ref((ref.value, self.pid))


class _Model(_Actor):
    """Appends chunks to its context, skipping (as `duplicate`) one it already holds, like ModelWorker; a
    failed argument fails the append (as in Ray).

    reply_lost_on: the call for this chunk appends it, then fails as Ray fails a call to an actor that
    became unreachable (ActorUnavailableError: it may or may not have run); the process stays the same."""

    def __init__(self, clock: _Clock, reply_lost_on: int | None = None, **kw) -> None:
        super().__init__(clock, 2, **kw)
        self.context: list[int] = []
        self.reply_lost_on = reply_lost_on
        self.yes_probability = _Method(self._yes)
        self.append = _Method(self._append)  # a coroutine is awaitable, like the ref Ray would return

    def _yes(self, stream: str, question: str) -> _Ref:
        return _Ref(0.75)

    async def _append(self, meta: ChunkMeta, encoded: _Ref) -> ChunkStats:
        index, encoder_pid = await encoded
        error = self._failure(meta.index)
        if error is not None:
            raise error
        duplicate = bool(self.context) and index <= self.context[-1]
        if not duplicate:
            self.context.append(index)
        if index == self.reply_lost_on:
            self.reply_lost_on = None
            self.clock.now += REFUSE_SECONDS
            raise ActorUnavailableError("The actor is temporarily unavailable.", self._actor_id.binary())
        return ChunkStats(stream="cam", index=meta.index, media_time=meta.start, duration=meta.duration,
                          capture_time=0.0, lag=0.0, preprocess=0.0, encode=0.0, compress=0.0, prefill=0.0,
                          video_before=8, video_after=4, audio_before=8, audio_after=4, cache_tokens=10,
                          chunks_in_context=len(self.context), dropped=meta.dropped, reconnects=0,
                          model_pid=self.pid, encoder_pid=encoder_pid, duplicate=duplicate)


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch):
    monkeypatch.setattr("pipeline.ray.loops.RETRY_SECONDS", 0.0)


def _stream() -> StreamState:
    st = StreamState(StreamConfig(name="cam", source={"type": "synthetic"}))
    st.queue = asyncio.Queue(1)
    st.resumed.set()
    return st


async def _run(source: _Source, encoder: _Encoder | None, model: _Model | None, clock: _Clock,
               restart_wait: float = 30.0, st: StreamState | None = None, states: list | None = None,
               watches: dict | None = None, on_alert=None, others: list | None = None, router=None):
    """Both loops of one stream until both end: (stream state, stats records, metrics, restart counts).
    `states` receives the stream's state changes, as the "stream" events tell them; `others` every other
    event (watch, alert, source). With a `router` (`Replicas`), `encoder` and `model` are None."""
    st = st or _stream()
    st.source = source
    metrics, events, restarts = PipelineMetrics(), EventHub(), RestartTracker()
    if router is not None:
        router.metrics = metrics
    loops = StreamLoops(st, encoder=encoder, model=model, metrics=metrics, events=events, watches=watches or {},
                        restarts=restarts, restart_wait=restart_wait, clock=clock, on_alert=on_alert,
                        router=router)
    with events.subscribe(None, max_pending=1000) as queue:
        await asyncio.wait_for(asyncio.gather(*loops.start()), 10)
        items = [queue.get_nowait() for _ in range(queue.qsize())]
    if states is not None:
        states.extend((m.state, m.detail) for m in items if isinstance(m, StreamChange))
    if others is not None:
        others.extend(m for m in items if not isinstance(m, (ChunkStats, StreamChange)))
    return st, [m for m in items if isinstance(m, ChunkStats)], metrics, restarts.counts


def _lost_metric(metrics: PipelineMetrics) -> float | None:
    return metrics.registry.get_sample_value("omnisift_chunks_lost_total", {"stream": "cam"})


@pytest.mark.parametrize("actor", ["model", "encoder"])
async def test_an_actor_dead_for_good_fails_the_stream_and_stops_pulling_from_its_source(actor):
    clock = _Clock()
    source = _Source(emitted=40, dropped={1})
    dead = {"dead_from": 3}
    encoder = _Encoder(clock, **dead if actor == "encoder" else {})
    model = _Model(clock, **dead if actor == "model" else {})
    states: list = []
    st, stats, metrics, _ = await _run(source, encoder, model, clock, states=states)

    reason = f"the {actor} actor is dead for good (ActorDiedError)"
    assert [s.index for s in stats] == [0, 2] == model.context
    assert (st.state, st.detail) == ("failed", reason) and states[-1] == ("failed", reason)
    snap = st.snapshot().model_dump()
    assert (snap["state"], snap["detail"], snap["chunks"], snap["dropped"]) == ("failed", reason, 2, 1)
    # the source is asked no more: lost are only the chunk that found the actor dead (3) and those already
    # past the source (4 in the queue of 1, 5 held by the pump), not every later chunk
    assert source.delivered == st.chunks + st.lost and st.lost == 3
    assert source.delivered < source.emitted - len(source.dropped) and source.calls == source.delivered
    assert (model if actor == "model" else encoder).calls.count(3) == 2  # asked once more, then given up
    assert max(model.calls) <= 3  # no chunk after it was sent to the model
    assert _lost_metric(metrics) == st.lost


async def test_a_paused_stream_whose_actor_is_dead_for_good_fails_and_its_loops_end():
    # the stream is paused just after chunk 3 leaves the source; chunk 2, still queued, finds the model
    # dead for good: the pump, waiting to be resumed, stops too
    clock, st = _Clock(), _stream()
    source = _Source(emitted=10, dropped=set(), on_chunk=lambda i: i == 3 and st.resumed.clear())
    model = _Model(clock, dead_from=2)
    st, stats, _, _ = await _run(source, _Encoder(clock), model, clock, st=st)

    assert [s.index for s in stats] == [0, 1] and st.state == "failed" and "model actor" in st.detail
    assert source.delivered == 4 == st.chunks + st.lost and not st.resumed.is_set()


async def test_a_source_actor_dead_for_good_fails_the_stream_at_once():
    clock = _Clock()
    source = _Source(emitted=10, dropped=set(), dead_from=4)
    st, stats, _, _ = await _run(source, _Encoder(clock), _Model(clock), clock)

    assert [s.index for s in stats] == [0, 1, 2, 3] and (st.lost, clock.now) == (0, 0.0)
    assert (st.state, st.detail) == ("failed", "the source actor is dead for good (ActorDiedError)")
    assert source.calls == 4 + 2  # four chunks, then asked once more before giving up


@pytest.mark.parametrize("actor", ["model", "encoder"])
async def test_a_chunk_waits_for_a_restarting_actor_and_is_delivered(actor):
    clock = _Clock()
    source = _Source(emitted=8, dropped={2})
    outage = {"outage": (4, 7.0)}  # four refused calls, 8 s of the clock: well within restart_wait
    encoder = _Encoder(clock, **outage if actor == "encoder" else {})
    model = _Model(clock, **outage if actor == "model" else {})
    st, stats, metrics, restarts = await _run(source, encoder, model, clock, restart_wait=30.0)

    assert [s.index for s in stats] == [0, 1, 3, 4, 5, 6, 7] == model.context  # chunk 4 once, in order
    assert (st.chunks, st.dropped, st.lost, st.state) == (7, 1, 0, "ended")
    assert source.emitted == st.chunks + st.dropped + st.lost
    assert source.delivered == st.chunks
    calls = (model if actor == "model" else encoder).calls
    assert calls.count(4) >= 2 and 7.0 <= clock.now < 30.0  # refused while it restarted, then delivered
    assert restarts[actor] == 1 and restarts["model" if actor == "encoder" else "encoder"] == 0
    assert all(s.lost == 0 for s in stats) and _lost_metric(metrics) == 0
    assert not any(s.duplicate for s in stats)  # it restarted: its context is new


@pytest.mark.parametrize("actor", ["model", "encoder"])
async def test_a_chunk_whose_actor_stays_unavailable_past_the_bound_is_lost_and_the_stream_goes_on(actor):
    clock = _Clock()
    source = _Source(emitted=8, dropped={2})
    outage = {"outage": (4, 45.0)}  # longer than restart_wait
    encoder = _Encoder(clock, **outage if actor == "encoder" else {})
    model = _Model(clock, **outage if actor == "model" else {})
    st, stats, metrics, restarts = await _run(source, encoder, model, clock, restart_wait=30.0)

    # chunk 4 is given up after 30 s of refusals; chunk 5 waits out the rest of the outage and gets in
    assert [s.index for s in stats] == [0, 1, 3, 5, 6, 7] == model.context
    assert (st.chunks, st.dropped, st.lost, st.state) == (6, 1, 1, "ended")
    assert source.emitted == st.chunks + st.dropped + st.lost
    assert source.delivered == st.chunks + st.lost
    assert clock.now >= 45.0 and restarts[actor] == 1
    assert [s.lost for s in stats] == [0, 0, 0, 1, 1, 1] and _lost_metric(metrics) == 1


async def test_a_chunk_whose_failed_call_had_run_is_skipped_by_the_model_and_counted_once(caplog):
    # Ray cannot say whether a call that failed ran; on a model that was only unreachable it may have, and
    # the model keeps its context: the copy sent again is skipped and reported as a duplicate
    clock = _Clock()
    source = _Source(emitted=6, dropped={1})
    model = _Model(clock, reply_lost_on=3)
    with caplog.at_level("WARNING", logger="pipeline.ray.loops"):
        st, stats, metrics, restarts = await _run(source, _Encoder(clock), model, clock)

    assert model.context == [0, 2, 3, 4, 5] and model.calls.count(3) == 2  # sent twice, in the context once
    assert [s.index for s in stats] == model.context and [s.duplicate for s in stats] == [0, 0, 1, 0, 0]
    assert (st.chunks, st.dropped, st.lost, st.state, restarts["model"]) == (5, 1, 0, "ended", 0)
    assert source.emitted == st.chunks + st.dropped + st.lost  # the chunk counted once, as in the context
    assert metrics.registry.get_sample_value("omnisift_chunks_total", {"stream": "cam"}) == 5
    flagged = [r.getMessage() for r in caplog.records if "already in the context" in r.getMessage()]
    assert flagged == [("cam: chunk 3 was already in the context (a failed call to the model had run); "
                        "the copy sent again was skipped")]


@pytest.mark.parametrize("how", ["ended", "source dead", "model dead"])
async def test_a_stream_that_ends_or_fails_closes_its_source_at_once(how):
    clock = _Clock()
    source = _Source(emitted=6, dropped=set(), dead_from=3 if how == "source dead" else None)
    model = _Model(clock, dead_from=3 if how == "model dead" else None)
    st, stats, _, _ = await _run(source, _Encoder(clock), model, clock)

    assert st.state == ("ended" if how == "ended" else "failed")
    # closed once the pump stopped asking: after every chunk it took (the stream is not removed yet)
    assert source.closed_after == source.delivered
    assert st.snapshot().source == {"chunks_emitted": 6, "chunks_dropped": 0}  # its last word is kept
    assert not ray.is_initialized()  # ending a source actor never starts Ray (these run without it)


def test_a_failed_stream_stays_failed_when_a_chunk_still_in_flight_errors_or_ends():
    st, events = _stream(), EventHub()
    events.set_state(st, "failed", "the model actor is dead for good (ActorDiedError)")
    events.set_state(st, "error", "ValueError: late chunk")
    events.set_state(st, "ended")
    assert (st.state, st.detail) == ("failed", "the model actor is dead for good (ActorDiedError)")


@pytest.mark.parametrize("state", ["failed", "ended"])
def test_pausing_or_resuming_a_finished_stream_is_refused_with_its_reason(state):
    st = _stream()
    st.state, st.detail = state, "source gone" if state == "failed" else ""
    reason = " (source gone)" if state == "failed" else ""
    for action in ("pause", "resume"):
        with pytest.raises(ValueError, match=re.escape(f"cannot {action} stream 'cam': it has {state}{reason}; "
                                                       "remove it and add it again")):
            st.require_live(action)
    st.state = "paused"
    st.require_live("resume")  # a live stream may


class _ReportingSource(_Source):
    """A source whose chunk 2 comes after a reconnect and chunk 3 after a gap in the media; from chunk 1
    on it has refused two messages with a bad time."""

    def _next(self, timeout):
        meta, chunk = super()._next(timeout)
        m = meta.value
        if m.kind == "chunk":
            meta = _Ref(replace(m, reconnects=1 if m.index >= 2 else 0, gap_before=m.index == 3,
                                refused={"bad_time": 2} if m.index >= 1 else {}))
        elif m.kind == "end":  # the counts are cumulative: the end says them too
            meta = _Ref(replace(m, reconnects=1, refused={"bad_time": 2}))
        return meta, chunk


async def test_a_reconnect_and_a_gap_the_source_reports_are_events_of_their_own():
    clock, others = _Clock(), []
    await _run(_ReportingSource(emitted=5, dropped=set()), _Encoder(clock), _Model(clock), clock, others=others)
    told = [(e.kind, e.index, e.media_time) for e in others if isinstance(e, SourceEvent)]
    assert told == [("reconnect", 2, 4.0), ("gap", 3, 6.0)]


async def test_the_stream_keeps_the_refs_of_its_newest_chunks_in_the_context():
    clock, st = _Clock(), StreamState(StreamConfig(name="cam", source={"type": "synthetic"}), keep_media=3)
    st.queue = asyncio.Queue(1)
    st.resumed.set()
    await _run(_Source(emitted=7, dropped={5}), _Encoder(clock), _Model(clock), clock, st=st)
    assert [(meta.index, ref.value) for meta, ref in st.recent] == [(3, 3), (4, 4), (6, 6)]


async def test_an_alert_passes_through_on_alert_before_it_is_emitted_and_a_watch_evaluation_does_not():
    clock, others, seen = _Clock(), [], []
    watches = {1: Watch(1, WatchConfig(question="Open?", every=0.0, threshold=0.7)),
               2: Watch(2, WatchConfig(question="Closed?", every=0.0, threshold=0.9))}

    def on_alert(st, event):
        seen.append((st.spec.name, event.index, event.watch_id))
        return replace(event, clip=f"cam-{event.index}.mp4")

    await _run(_Source(emitted=2, dropped=set()), _Encoder(clock), _Model(clock), clock, watches=watches,
               on_alert=on_alert, others=others)
    evaluations = [(e.watch_id, e.index, e.alert, e.clip) for e in others if isinstance(e, WatchEvent)]
    # p(yes) is 0.75: at or above 0.7 alerts (and gets its clip), below 0.9 does not
    assert evaluations == [(1, 0, True, "cam-0.mp4"), (2, 0, False, None), (1, 1, True, "cam-1.mp4"),
                           (2, 1, False, None)]
    assert seen == [("cam", 0, 1), ("cam", 1, 1)]


def _replicas(encoders: list[_Encoder], models: list[_Model], clock: _Clock) -> Replicas:
    """A router over the fake replicas; `router.told` records each move it announces."""
    told: list = []
    router = Replicas(encoders, models, clock=clock, on_move=lambda *move: told.append(move))
    router.told = told
    assert router.assign("cam") == {"encoder": 0, "model": 0}
    return router


async def test_a_model_replica_dead_for_good_hands_the_stream_to_another_on_a_fresh_context():
    clock = _Clock()
    source = _Source(emitted=7, dropped={5})
    first, second = _Model(clock, dead_from=3), _Model(clock)
    second.pid = 20
    router = _replicas([_Encoder(clock)], [first, second], clock)
    st, stats, metrics, restarts = await _run(source, None, None, clock, router=router)

    assert first.context == [0, 1, 2] and second.context == [3, 4, 6]  # chunk 3, which found it dead, too
    assert [(s.index, s.replica, s.fresh_context) for s in stats] == [
        (0, 0, False), (1, 0, False), (2, 0, False), (3, 1, True), (4, 1, False), (6, 1, False)]
    assert [s.chunks_in_context for s in stats] == [1, 2, 3, 1, 2, 3]  # the new context starts empty
    assert (st.state, st.chunks, st.dropped, st.lost) == ("ended", 6, 1, 0)
    assert source.emitted == st.chunks + st.dropped + st.lost  # nothing lost
    assert router.moves_of("cam") == {"encoder": 0, "model": 1} and router.told == [("cam", "model", 0, 1)]
    assert restarts["model"] == 0  # another replica's process is not a restart
    assert metrics.registry.get_sample_value("omnisift_stream_moves_total", {"stream": "cam", "kind": "model"}) == 1
    assert metrics.registry.get_sample_value("omnisift_stream_replica", {"stream": "cam", "kind": "model"}) == 1
    assert metrics.registry.get_sample_value("omnisift_replica_alive", {"kind": "model", "replica": "0"}) == 0
    assert router.view()["model"][1]["streams"] == ["cam"]


async def test_an_encoder_replica_dead_for_good_hands_the_stream_to_another_and_the_context_goes_on():
    clock = _Clock()
    source = _Source(emitted=6, dropped=set())
    first, second, model = _Encoder(clock, dead_from=3), _Encoder(clock), _Model(clock)
    second.pid = 30
    router = _replicas([first, second], [model], clock)
    st, stats, _, restarts = await _run(source, None, None, clock, router=router)

    assert model.context == [0, 1, 2, 3, 4, 5]  # one context throughout
    assert [s.encoder_pid for s in stats] == [3, 3, 3, 30, 30, 30]  # chunk 3 encoded again on the other
    assert not any(s.fresh_context for s in stats) and (st.state, st.lost) == ("ended", 0)
    assert router.moves_of("cam") == {"encoder": 1, "model": 0} and restarts["encoder"] == 0
    assert router.told == [("cam", "encoder", 0, 1)]


async def test_a_stream_whose_last_model_replica_dies_fails_with_the_reason():
    clock, states = _Clock(), []
    source = _Source(emitted=40, dropped=set())
    models = [_Model(clock, dead_from=3), _Model(clock, dead_from=3)]
    router = _replicas([_Encoder(clock)], models, clock)
    st, stats, _, _ = await _run(source, None, None, clock, states=states, router=router)

    reason = "the model actor is dead for good (ActorDiedError); no model replica left (2 started, all dead for good)"
    assert (st.state, st.detail) == ("failed", reason) and states[-1] == ("failed", reason)
    assert [s.index for s in stats] == [0, 1, 2] and router.moves_of("cam")["model"] == 1
    assert source.delivered == st.chunks + st.lost  # counted: the chunk that found it dead and those past the source


class _FailingSource(_Source):
    """Delivers chunks 0..fail_after-1, then raises as a source that lost its media (a SourceError)."""

    def __init__(self, fail_after: int) -> None:
        super().__init__(emitted=fail_after + 10, dropped=set())
        self.fail_after = fail_after

    def _next(self, timeout):
        if self.delivered >= self.fail_after:
            from streams.errors import SourceError

            error = SourceError("cam: connection lost")
            return _Ref(error=error), _Ref(error=error)
        return super()._next(timeout)


class _SlowModel(_Model):
    """A model that takes a moment per append, so the pump runs ahead and chunks wait in the queue."""

    async def _append(self, meta: ChunkMeta, encoded: _Ref) -> ChunkStats:
        await asyncio.sleep(0.05)
        return await super()._append(meta, encoded)


async def test_a_failing_source_has_every_chunk_it_delivered_in_the_context_before_the_stream_fails():
    clock, states = _Clock(), []
    st = _stream()
    st.queue = asyncio.Queue(2)  # max_in_flight 2: chunks are queued when the source fails
    source = _FailingSource(fail_after=5)
    model = _SlowModel(clock)
    st, stats, _, _ = await _run(source, _Encoder(clock), model, clock, st=st, states=states)

    assert [s.index for s in stats] == [0, 1, 2, 3, 4] == model.context
    snap = st.snapshot().model_dump()
    assert (snap["state"], snap["chunks"], snap["lost"]) == ("failed", 5, 0)
    assert states[-1] == ("failed", "cam: connection lost")


async def test_the_failed_state_is_told_after_the_last_chunk_is_in_the_context():
    # what `omnisift run` reads: once a stream is seen "failed", its snapshot counts every chunk
    clock, st = _Clock(), _stream()
    st.queue = asyncio.Queue(2)
    st.source = _FailingSource(fail_after=5)
    events = EventHub()
    loops = StreamLoops(st, encoder=_Encoder(clock), model=_SlowModel(clock), metrics=None, events=events,
                        watches={}, restarts=RestartTracker(), clock=clock)
    chunks_when_failed = []
    with events.subscribe({"stream"}, max_pending=100) as queue:
        tasks = loops.start()
        while (change := await asyncio.wait_for(queue.get(), 10)).state != "failed":
            pass
        chunks_when_failed.append(st.chunks)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
    assert chunks_when_failed == [5] and change.detail == "cam: connection lost"


async def test_a_gap_and_refused_messages_are_in_the_stats_and_the_snapshot():
    clock = _Clock()
    source = _ReportingSource(emitted=5, dropped=set())
    st, stats, _, _ = await _run(source, _Encoder(clock), _Model(clock), clock)
    assert [(s.index, s.gap_before, s.gaps) for s in stats] == [(0, False, 0), (1, False, 0), (2, False, 0),
                                                                 (3, True, 1), (4, False, 1)]
    snap = st.snapshot().model_dump()
    assert (snap["gaps"], snap["reconnects"], snap["refused"]) == (1, 1, {"bad_time": 2})
