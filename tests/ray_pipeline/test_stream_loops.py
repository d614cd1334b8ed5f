"""The stream loops (pump and appender) over fake actors, without Ray running: a chunk whose encoder or
model actor is restarting is sent again until the actor is back, within `restart_wait` seconds of a
clock the test controls; chunks that still never reach the context are counted as lost; and every chunk
the source produced is accounted for."""

from __future__ import annotations

import asyncio

import pytest
from ray import ActorID
from ray.exceptions import ActorDiedError, ActorUnavailableError

from pipeline.config import StreamSpec
from pipeline.metrics import PipelineMetrics
from pipeline.stream_events import EventHub
from pipeline.stream_loops import StreamLoops
from pipeline.stream_state import RestartTracker, StreamState
from pipeline.workers import ChunkMeta, ChunkStats

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
    """Emits chunks `0..emitted-1` of which `dropped` were discarded by its drop policy, then ends."""

    def __init__(self, emitted: int, dropped: set[int]) -> None:
        self.left = [i for i in range(emitted) if i not in dropped]
        self.emitted, self.dropped, self.delivered = emitted, dropped, 0
        self.next_chunk = _Method(self._next)

    def _next(self, timeout):
        if not self.left:
            return _Ref(ChunkMeta("end", "cam", dropped=len(self.dropped), pid=1)), _Ref(None)
        i = self.left.pop(0)
        self.delivered += 1
        dropped = sum(d < i for d in self.dropped)
        return _Ref(ChunkMeta("chunk", "cam", i, 2.0 * i, 2.0, dropped=dropped, pid=1)), _Ref(i)


class _Actor:
    """What the fake encoder and model share: an id Ray's errors name, a process id, and failures.

    dies_on: chunk indices whose call fails as on an actor dead for good (Ray's ActorDiedError).
    outage: (index, seconds): the call for chunk `index` finds the actor restarting, and so does every
    call for `seconds` of the clock after it (each refused call takes REFUSE_SECONDS); then it answers
    from a new process, or from the same one if it was only unreachable (`restarts=False`)."""

    def __init__(self, clock: _Clock, pid: int, dies_on=(), outage: tuple[int, float] | None = None,
                 restarts: bool = True) -> None:
        self._actor_id = ActorID.from_random()
        self.clock, self.pid, self.dies_on, self.outage = clock, pid, set(dies_on), outage
        self.restarts = restarts
        self.down_until: float | None = None
        self.calls: list[int] = []  # chunk index of every call, failed or not

    def _failure(self, index: int) -> BaseException | None:
        self.calls.append(index)
        if index in self.dies_on:
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
    """Appends chunks to its context; a failed argument fails the append (as in Ray)."""

    def __init__(self, clock: _Clock, **kw) -> None:
        super().__init__(clock, 2, **kw)
        self.context: list[int] = []
        self.append = _Method(self._append)  # a coroutine is awaitable, like the ref Ray would return

    async def _append(self, meta: ChunkMeta, encoded: _Ref) -> ChunkStats:
        index, encoder_pid = await encoded
        error = self._failure(meta.index)
        if error is not None:
            raise error
        self.context.append(index)
        return ChunkStats("cam", meta.index, meta.start, meta.duration, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                          8, 4, 8, 4, 10, 1, meta.dropped, 0, model_pid=self.pid, encoder_pid=encoder_pid)


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch):
    monkeypatch.setattr("pipeline.stream_loops.RETRY_SECONDS", 0.0)


async def _run(source: _Source, encoder: _Encoder, model: _Model, clock: _Clock, restart_wait: float = 30.0):
    """Both loops of one stream until it ends: (stream state, stats records, metrics, restart counts)."""
    st = StreamState(StreamSpec(name="cam", source={"type": "synthetic"}), source=source)
    st.queue = asyncio.Queue(1)
    st.resumed.set()
    metrics, events, restarts = PipelineMetrics(), EventHub(), RestartTracker()
    loops = StreamLoops(st, encoder=encoder, model=model, metrics=metrics, events=events, watches={},
                        restarts=restarts, restart_wait=restart_wait, clock=clock)
    with events.subscribe({"stats"}) as records:
        await asyncio.wait_for(asyncio.gather(*loops.start()), 10)
        stats = [records.get_nowait() for _ in range(records.qsize())]
    return st, stats, metrics, restarts.counts


def _lost_metric(metrics: PipelineMetrics) -> float | None:
    return metrics.registry.get_sample_value("omnisift_chunks_lost_total", {"stream": "cam"})


async def test_chunks_lost_with_a_dead_encoder_or_model_are_counted_and_add_up():
    clock = _Clock()
    source = _Source(emitted=8, dropped={2})
    encoder, model = _Encoder(clock, dies_on={3, 6}), _Model(clock, dies_on={4})
    st, stats, metrics, _ = await _run(source, encoder, model, clock)

    assert [s.index for s in stats] == [0, 1, 5, 7] == model.context
    assert (st.chunks, st.dropped, st.lost, st.state) == (4, 1, 3, "ended")
    assert source.emitted == st.chunks + st.dropped + st.lost  # every chunk the source made, accounted for
    assert source.delivered == st.chunks + st.lost
    assert model.calls == [0, 1, 4, 5, 7] and encoder.calls == [0, 1, 3, 4, 5, 6, 7]  # dead: not sent again
    assert [s.lost for s in stats] == [0, 0, 2, 3]  # each record carries the losses so far
    assert st.snapshot()["lost"] == 3
    assert _lost_metric(metrics) == 3


@pytest.mark.parametrize("actor", ["model", "encoder"])
async def test_a_chunk_waits_for_a_restarting_actor_and_is_delivered(actor, caplog):
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
    assert not any("twice" in r.getMessage() for r in caplog.records)  # it restarted: its context is new


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


async def test_a_chunk_sent_again_to_a_model_that_did_not_restart_is_flagged(caplog):
    # Ray cannot say whether a call that failed while running ran; a model that was only unreachable
    # keeps its context, so the chunk may now be in it twice: the driver says so (it cannot know more)
    clock = _Clock()
    source = _Source(emitted=6, dropped=set())
    model = _Model(clock, outage=(3, 3.0), restarts=False)
    with caplog.at_level("WARNING", logger="pipeline.stream_loops"):
        st, _, _, restarts = await _run(source, _Encoder(clock), model, clock)
    assert (st.chunks, st.lost, restarts["model"]) == (6, 0, 0)
    flagged = [r.getMessage() for r in caplog.records if "twice" in r.getMessage()]
    assert flagged == ["cam: chunk 3 sent again to a model actor that did not restart; it may be in the context twice"]
