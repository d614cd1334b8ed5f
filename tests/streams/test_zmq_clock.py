"""A producer's clock may restart or emit one stray timestamp; the ZeroMQ source resyncs instead of dropping."""

from __future__ import annotations

import pytest
import streams_media as media
from hypothesis import given
from hypothesis import strategies as st
from streams_checks import audio_segments, frame_times
from streams_zmq import HEIGHT, WIDTH, send_span, zmq_source

from streams import State
from streams.zmq_source import KindClock, send_video

T0 = 1000.0


def assert_clip_content(chunks) -> None:
    """Each chunk shows the clip's frames and tones of its own media time (read from pixels and tones)."""
    for c in chunks:
        assert frame_times(c) == pytest.approx([c.start + i / 2 for i in range(4)])
        assert audio_segments(c) == [int(c.start * 2) + i for i in range(4)]


def test_producer_clock_restart_is_followed_after_a_resync():
    with zmq_source() as (src, push):
        send_span(push, 0.0, 3.0, t0=T0)
        send_span(push, 3.0, 8.0, t0=-3.0)  # the producer restarts: its clock reads 0.0 at media time 3.0
        chunks = [src.get(timeout=10) for _ in range(3)]
        assert src.state is State.RUNNING
        assert [c.start for c in chunks] == [0.0, 2.0, 4.0]
        assert_clip_content(chunks)
        assert chunks[1].flags.gap_before
        stats = src.stats()
        assert stats.clock_resyncs == 2  # video and audio each
        assert stats.malformed_messages == 0


def test_one_stray_large_t_is_refused_without_moving_the_clock():
    with zmq_source() as (src, push):
        send_span(push, 0.0, 2.0, t0=T0)
        send_video(push, T0 + 500.0, media.frame_image(999, WIDTH, HEIGHT))
        send_span(push, 2.0, 5.0, t0=T0)
        chunks = [src.get(timeout=10) for _ in range(2)]
        assert [c.start for c in chunks] == [0.0, 2.0]
        assert_clip_content(chunks)
        stats = src.stats()
        assert stats.refused["clock_jump"] == 1 and stats.clock_resyncs == 0


def test_a_stray_first_timestamp_is_dropped_once_the_real_clock_shows():
    with zmq_source() as (src, push):
        send_video(push, T0 + 500.0, media.frame_image(999, WIDTH, HEIGHT))
        send_span(push, 0.0, 5.0, t0=T0)
        chunks = [src.get(timeout=10) for _ in range(2)]
        assert [c.start for c in chunks] == [0.0, 2.0]
        assert_clip_content(chunks)
        stats = src.stats()
        assert stats.clock_resyncs == 1 and stats.timestamp_glitches == 1


# -- the rule alone ----------------------------------------------------------------------------------------


def offer_all(clock: KindClock, times: list[float]) -> tuple[list[float], list[str], int]:
    """Offer each time (the item is the time itself); everything delivered, every refusal, resync count."""
    delivered, refused, resyncs = [], [], 0
    for t in times:
        v = clock.offer(t, t)
        delivered += v.deliver
        refused += v.refused
        resyncs += v.resynced
    return delivered, refused, resyncs


def test_steps_up_to_ten_seconds_stay_on_the_clock():
    assert offer_all(KindClock(), [100.0, 100.1, 110.1, 110.2]) == ([100.0, 100.1, 110.1, 110.2], [], 0)


def test_a_restart_moves_the_clock_on_the_third_consistent_message_and_loses_none():
    delivered, refused, resyncs = offer_all(KindClock(), [100.0, 100.1, 0.0, 0.1, 0.2, 0.3])
    assert delivered == [100.0, 100.1, 0.0, 0.1, 0.2, 0.3] and refused == [] and resyncs == 1


def test_two_off_clock_messages_do_not_move_the_clock():
    assert offer_all(KindClock(), [100.0, 0.0, 0.1]) == ([100.0], [], 0)


def test_a_stray_ahead_is_refused_as_a_clock_jump_when_the_clock_continues():
    assert offer_all(KindClock(), [100.0, 600.0, 100.1]) == ([100.0, 100.1], ["clock_jump"], 0)


def test_a_late_message_is_refused_as_out_of_order_when_the_clock_continues():
    assert offer_all(KindClock(), [100.0, 99.5, 100.0, 100.1]) == ([100.0, 100.1], ["out_of_order", "out_of_order"], 0)


def test_a_candidate_that_does_not_continue_the_run_starts_a_new_one():
    delivered, refused, resyncs = offer_all(KindClock(), [100.0, 0.0, 50.0, 50.1, 50.2])
    assert delivered == [100.0, 50.0, 50.1, 50.2] and refused == ["out_of_order"] and resyncs == 1


def test_a_forward_jump_beyond_ten_seconds_is_followed_after_three_messages():
    delivered, _, resyncs = offer_all(KindClock(), [100.0, 160.0, 160.1, 160.2, 160.3])
    assert delivered == [100.0, 160.0, 160.1, 160.2, 160.3] and resyncs == 1


timestamps = st.lists(
    st.one_of(st.floats(-1e9, 1e9), st.floats(0, 30), st.integers(0, 40).map(lambda n: n / 4)), max_size=60
)


@given(timestamps)
def test_every_message_is_delivered_once_or_refused_once(times):
    clock = KindClock()
    delivered, refused = [], []
    for i, t in enumerate(times):
        v = clock.offer(t, i)
        delivered += v.deliver
        refused += v.refused
    refused += clock.discard()
    assert len(set(delivered)) == len(delivered) and len(delivered) + len(refused) == len(times)


@given(timestamps)
def test_between_resyncs_delivered_times_increase_by_at_most_ten_seconds(times):
    clock = KindClock()
    last = None
    for t in times:
        v = clock.offer(t, t)
        if v.resynced:
            last = None
        for d in v.deliver:
            assert last is None or 0 < d - last <= 10.0
            last = d
