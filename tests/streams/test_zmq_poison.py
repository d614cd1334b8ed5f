"""Replay of each poison message through a running ZeroMQ source (real PUSH socket on loopback).

Every poison is sent once, either as the very first message or in the middle of a clip; the stream must keep
running, the valid data after it must become the expected chunks (read back from pixels and tones), and the
source's `refused` counters must name why the poison was dropped.
"""

from __future__ import annotations

import numpy as np
import pytest
from streams_checks import audio_segments, frame_times
from streams_zmq import HEIGHT, WIDTH, header, send_span, zmq_source

from streams import State

T0 = 1000.0
FRAME = np.zeros((HEIGHT, WIDTH, 3), np.uint8).tobytes()
AUDIO_48K = np.zeros(4800, np.float32).tobytes()


def video_header(t, **extra) -> bytes:
    return header(v=1, kind="video", t=t, width=WIDTH, height=HEIGHT, format="rgb24", **extra)


# (name, parts, reason): the messages of the issue, each of which ended or hung the stream (or was accepted)
POISONS = [
    ("t_with_400_digits", [video_header(10**399), FRAME], "huge_number"),
    ("int_over_4300_digits", [b'{"kind": "video", "t": 1.0, "width": ' + b"7" * 4301 + b"}", FRAME], "header_size"),
    ("100k_nested_brackets", [b"[" * 100_000, FRAME], "header_size"),
    ("nesting_within_the_size_limit", [b"[" * 2000 + b"]" * 2000, FRAME], "nesting"),
    (
        "audio_48k_at_t_1e300",
        [header(kind="audio", t=1e300, rate=48000, channels=1, format="f32le"), AUDIO_48K],
        "bad_time",
    ),
    ("video_at_t_1e300", [video_header(1e300), FRAME], "bad_time"),
    ("video_at_t_minus_1e308", [video_header(-1e308), FRAME], "bad_time"),
    ("nan_in_an_extra_field", [video_header(T0 + 1.05).replace(b"}", b', "gain": NaN}'), FRAME], "nonfinite"),
    ("infinity_as_t", [video_header(0).replace(b'"t": 0', b'"t": Infinity'), FRAME], "nonfinite"),
    ("float_literal_overflowing_to_inf", [video_header(0).replace(b'"t": 0', b'"t": 1e400'), FRAME], "nonfinite"),
]


def _send(push, poison_parts, position: str) -> None:
    if position == "first":
        push.send_multipart(poison_parts)
        send_span(push, 0.0, 5.0, t0=T0)
    else:
        send_span(push, 0.0, 1.0, t0=T0)
        push.send_multipart(poison_parts)
        send_span(push, 1.0, 5.0, t0=T0)


@pytest.mark.parametrize("position", ["first", "middle"])
@pytest.mark.parametrize(("name", "parts", "reason"), POISONS, ids=[p[0] for p in POISONS])
def test_poison_message_is_refused_and_the_stream_keeps_running(name, parts, reason, position):
    with zmq_source() as (src, push):
        _send(push, parts, position)
        chunks = [src.get(timeout=10) for _ in range(2)]
        assert src.state is State.RUNNING
        for c in chunks:
            assert frame_times(c) == pytest.approx([c.start + i / 2 for i in range(4)])
            assert audio_segments(c) == [int(c.start * 2) + i for i in range(4)]
        assert [c.start for c in chunks] == [0.0, 2.0]
        stats = src.stats()
        assert stats.refused[reason] == 1
        assert stats.malformed_messages == 1


def test_a_valid_message_that_fails_to_convert_is_counted_as_unexpected_and_skipped(monkeypatch):
    from streams.zmq_source import ZmqProducer

    real_image = ZmqProducer._image
    calls = []

    def image_failing_once(self, img):
        calls.append(1)
        if len(calls) == 1:
            raise ValueError("swscale refused the frame")
        return real_image(self, img)

    monkeypatch.setattr(ZmqProducer, "_image", image_failing_once)
    with zmq_source() as (src, push):
        send_span(push, 0.0, 5.0, t0=T0)  # frame 0 is lost; the 0.0 slot then shows frame 1 (0.1 s)
        chunks = [src.get(timeout=10) for _ in range(2)]
        assert src.state is State.RUNNING
        assert frame_times(chunks[1]) == pytest.approx([2.0, 2.5, 3.0, 3.5])
        assert src.stats().refused["unexpected"] == 1
