"""The stream loops (pump and appender) over fake actors, without Ray running: chunks lost when the
encoder or model actor dies are counted, and every chunk the source produced is accounted for."""

from __future__ import annotations

import asyncio

import pytest
from ray.exceptions import ActorDiedError

from pipeline.config import StreamSpec
from pipeline.metrics import PipelineMetrics
from pipeline.stream_events import EventHub
from pipeline.stream_loops import StreamLoops
from pipeline.stream_state import RestartTracker, StreamState
from pipeline.workers import ChunkMeta, ChunkStats


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


class _Encoder:
    """Dies (as Ray reports it) with the chunks whose index is in `dies_on`."""

    def __init__(self, dies_on: set[int]) -> None:
        self.encode = _Method(lambda ref: _Ref(error=ActorDiedError()) if ref.value in dies_on else ref)


class _Model:
    """Appends chunks; a failed argument fails the append (as in Ray); dies during the appends in `dies_on`."""

    def __init__(self, dies_on: set[int]) -> None:
        self.dies_on = dies_on
        self.append = _Method(self._append)  # a coroutine is awaitable, like the ref Ray would return

    async def _append(self, meta: ChunkMeta, encoded: _Ref) -> ChunkStats:
        await encoded
        if meta.index in self.dies_on:
            raise ActorDiedError()
        return ChunkStats("cam", meta.index, meta.start, meta.duration, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                          8, 4, 8, 4, 10, 1, meta.dropped, 0, model_pid=2, encoder_pid=3)


@pytest.fixture(autouse=True)
def _no_retry_pause(monkeypatch):
    monkeypatch.setattr("pipeline.stream_loops.RETRY_SECONDS", 0.0)


async def test_chunks_lost_with_a_dead_encoder_or_model_are_counted_and_add_up():
    source = _Source(emitted=8, dropped={2})
    st = StreamState(StreamSpec(name="cam", source={"type": "synthetic"}), source=source)
    st.queue = asyncio.Queue(1)
    st.resumed.set()
    model = _Model(dies_on={4})
    metrics, events = PipelineMetrics(), EventHub()
    loops = StreamLoops(st, encoder=_Encoder(dies_on={3, 6}), model=model, metrics=metrics, events=events,
                        watches={}, restarts=RestartTracker())
    with events.subscribe({"stats"}) as records:
        await asyncio.wait_for(asyncio.gather(*loops.start()), 10)
        stats = [records.get_nowait() for _ in range(records.qsize())]

    assert [s.index for s in stats] == [0, 1, 5, 7]
    assert (st.chunks, st.dropped, st.lost, st.state) == (4, 1, 3, "ended")
    assert source.emitted == st.chunks + st.dropped + st.lost  # every chunk the source made, accounted for
    assert source.delivered == st.chunks + st.lost
    assert [s.lost for s in stats] == [0, 0, 2, 3]  # each record carries the losses so far
    assert st.snapshot()["lost"] == 3
    assert metrics.registry.get_sample_value("omnisift_chunks_lost_total", {"stream": "cam"}) == 3
