"""Source state machine, backpressure, reconnect and shutdown, driven through injected producers."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from streams_checks import wait_for

from streams import (
    AudioSample,
    Backoff,
    Source,
    SourceError,
    State,
    StreamError,
    VideoSample,
    aread_chunks,
    open_source,
)
from streams.source import TRANSITIONS


class FiniteProducer:
    """`seconds` of 10 fps video + 100 ms audio blocks, optionally paced, optionally failing after `fail_after` s."""

    def __init__(self, seconds=4.0, *, pace=0.0, fail_after=None, t0=0.0):
        self.has_video = self.has_audio = True
        self.origin = None
        self.seconds, self.pace, self.fail_after, self.t0 = seconds, pace, fail_after, t0
        self.closed = threading.Event()

    def close(self):
        self.closed.set()

    def __iter__(self):
        for i in range(int(self.seconds * 10)):
            if self.closed.is_set():
                return
            t = i / 10
            if self.fail_after is not None and t >= self.fail_after:
                raise SourceError("connection lost")
            yield VideoSample(self.t0 + t, np.full((2, 2, 3), i % 256, np.uint8))
            yield AudioSample(self.t0 + t, np.full(1600, t, np.float32))
            if self.pace:
                time.sleep(self.pace)


class BlockingProducer(FiniteProducer):
    """Yields nothing and ignores close(): a hung network read."""

    def __iter__(self):
        time.sleep(30)
        yield from ()


def test_transitions_table_allows_only_named_moves():
    assert State.RECONNECTING in TRANSITIONS[State.RUNNING]
    assert State.RUNNING not in TRANSITIONS[State.ENDED]
    src = Source("s", lambda: FiniteProducer(), live=False)
    with pytest.raises(StreamError, match="illegal transition created -> running"):
        src._to(State.RUNNING)


def test_finite_producer_runs_to_ended_with_all_chunks():
    src = Source("s", lambda: FiniteProducer(5.0), live=False).start()
    chunks = list(src)
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0] and chunks[-1].flags.partial
    assert src.state is State.ENDED
    src.close()
    assert src.state is State.CLOSED


def test_step_drives_one_event_at_a_time_without_a_thread():
    src = Source("s", lambda: FiniteProducer(2.0), live=False)
    src.open()
    results = [src.step() for _ in range(40)]
    assert sum(r.events for r in results) == 40 and sum(r.chunks for r in results) == 1
    assert src.step().done and src.state is State.ENDED


def test_close_returns_within_bound_even_if_the_producer_hangs():
    src = Source("s", lambda: BlockingProducer(), live=True).start()
    closing = threading.Thread(target=src.close, kwargs={"timeout": 0.5})
    closing.start()
    closing.join(15)  # a close that waited for the hung producer would still be running (it sleeps 30 s)
    assert not closing.is_alive() and src.state is State.CLOSED


def test_live_source_reconnects_with_backoff_and_flags_the_gap():
    calls = []

    def factory():
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise SourceError("refused")  # first reconnect attempt fails too
        return FiniteProducer(3.0, fail_after=2.9 if len(calls) == 1 else None)

    backoff = Backoff(initial_delay=0.05, factor=2.0, jitter=0.0, max_delay=1.0)
    src = Source("s", factory, live=True, reconnect=backoff, queue_size=16).start()
    try:
        assert wait_for(lambda: src.stats().chunks_emitted >= 3 and src.stats().reconnects == 1, 10)
        chunks = [src.get(timeout=5) for _ in range(3)]
    finally:
        src.close()
    assert len(calls) == 3 and calls[2] - calls[1] >= 0.1 * 0.99  # second delay doubled
    assert [c.flags.gap_before for c in chunks] == [False, False, True]
    assert chunks[2].audio[0] == 0.0 and chunks[1].flags.audio_filled


def test_reconnect_gives_up_after_max_attempts():
    def factory():
        if factory.n:
            raise SourceError("refused")
        factory.n += 1
        return FiniteProducer(1.0, fail_after=0.5)

    factory.n = 0
    src = Source("s", factory, live=True, reconnect=Backoff(initial_delay=0.01, jitter=0.0, max_attempts=3)).start()
    with pytest.raises(SourceError, match="gave up after 3"):
        list(src)
    assert src.state is State.FAILED
    src.close()


def test_slow_consumer_on_a_live_source_drops_the_oldest_and_counts():
    src = Source("s", lambda: FiniteProducer(20.0, pace=0.002), live=True, queue_size=2).start()
    got = []
    while (c := src.get(timeout=10)) is not None:
        got.append(c)
        time.sleep(0.1)  # consumer far slower than the producer
    s = src.stats()
    src.close()
    assert s.chunks_emitted == 10 and s.chunks_dropped > 0
    assert s.chunks_dropped + s.chunks_delivered == s.chunks_emitted == len(got) + s.chunks_dropped
    assert got[-1].index == 9  # the newest chunk always survives
    assert s.lag_seconds >= 0.0


def test_block_policy_never_drops():
    src = Source("s", lambda: FiniteProducer(12.0), live=False, queue_size=1).start()
    got = []
    while (c := src.get(timeout=10)) is not None:
        got.append(c.index)
        time.sleep(0.01)
    assert got == list(range(6)) and src.stats().chunks_dropped == 0
    src.close()


def test_lag_behind_live_grows_when_the_consumer_waits():
    src = Source("s", lambda: FiniteProducer(4.0), live=True, queue_size=4).start()
    time.sleep(0.4)
    src.get(timeout=5)
    src.close()
    assert src.stats().lag_seconds >= 0.3


async def test_async_iterator_yields_chunks(av_clip):
    chunks = [c async for c in aread_chunks({"type": "file", "path": str(av_clip)}, name="cam1")]
    assert [c.index for c in chunks] == [0, 1, 2] and chunks[0].stream == "cam1"


def test_open_source_accepts_an_injected_factory():
    src = open_source({"type": "zmq", "name": "fake"}, factory=lambda: FiniteProducer(2.0, t0=50.0))
    try:
        chunk = src.get(timeout=5)
    finally:
        src.close()
    assert chunk.stream == "fake" and chunk.start == 0.0 and chunk.audio[0] == 0.0




def test_a_reader_ending_after_close_began_is_not_an_illegal_transition():
    """The reader may see its producer end just after close() moved the source to CLOSING (a race a
    caller breaking out of read_chunks can hit): the reader's transition is ignored, closing wins."""
    src = Source("s", lambda: FiniteProducer(1.0), live=False)
    src.open()
    src._to(State.CLOSING)
    src._finish(None)  # the reader's end-of-stream transition, arriving late
    src._to(State.CLOSED)
    assert src.state is State.CLOSED


def test_an_error_inside_the_read_loop_fails_the_source_instead_of_leaving_it_running():
    src = Source("s", lambda: FiniteProducer(4.0), live=True)
    src.open()

    def broken_push(event):
        raise OverflowError("cannot convert float infinity to integer")

    src.chunker.push = broken_push
    src.run()  # returns instead of raising out of the reader thread
    assert src.state is State.FAILED
    with pytest.raises(SourceError, match="read loop failed: OverflowError"):
        src.get(timeout=1.0)
