"""ZeroMQ source: valid messages become aligned chunks; malformed, oversized and out-of-order ones are counted
and dropped."""

from __future__ import annotations

import json

import numpy as np
import pytest
import streams_media as media
import zmq
from streams_checks import audio_segments, frame_times, free_port, wait_for

from streams import ConfigError, open_source
from streams.zmq_source import send_audio, send_end, send_video


@pytest.fixture
def zmq_pair():
    port = free_port()
    src = open_source(
        {"type": "zmq", "endpoint": f"tcp://127.0.0.1:{port}", "max_message_bytes": 200_000, "queue_size": 64}
    )
    ctx = zmq.Context.instance()
    push = ctx.socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(f"tcp://127.0.0.1:{port}")
    yield src, push
    push.close()
    src.close()


def send_clip(push, seconds: float, *, rate: int = 48000, t0: float = 1000.0):
    """Producer-side clip at 10 fps / 100 ms audio blocks on a clock starting at t0."""
    for i in range(int(seconds * 10)):
        t = i / 10
        send_video(push, t0 + t, media.frame_image(i, 80, 48))
        send_audio(push, t0 + t, np.stack([media.tone_samples(t, rate // 10, rate)] * 2, axis=1), rate=rate)


def collect(src, n, timeout=10):
    return [src.get(timeout=timeout) for _ in range(n)]


def test_pushed_frames_and_audio_become_aligned_chunks(zmq_pair):
    src, push = zmq_pair
    send_clip(push, 4.0)
    send_end(push)
    chunks = [c for c in src]
    assert [c.start for c in chunks] == [0.0, 2.0]
    for c in chunks:
        assert frame_times(c) == pytest.approx([c.start + i / 2 for i in range(4)])
        assert audio_segments(c) == [int(c.start * 2) + i for i in range(4)]


def test_malformed_messages_are_counted_and_dropped(zmq_pair):
    src, push = zmq_pair
    bad = [
        [b"not json", b"x"],
        [json.dumps([1, 2]).encode(), b"x"],
        [json.dumps({"kind": "video", "t": 0.0, "width": 4, "height": 4}).encode(), b"short"],
        [json.dumps({"kind": "audio", "t": 0.0, "rate": 16000, "channels": 1}).encode(), b"abc"],
        [json.dumps({"kind": "smell", "t": 0.0}).encode(), b""],
        [json.dumps({"kind": "video", "t": "soon", "width": 1, "height": 1}).encode(), b"abc"],
        [b"{}", b"", b""],
    ]
    for parts in bad:
        push.send_multipart(parts)
    send_clip(push, 2.0)
    send_end(push)
    chunks = list(src)
    assert len(chunks) == 1 and not chunks[0].flags.audio_filled
    assert src.stats().malformed_messages == len(bad)


def test_a_message_part_over_the_limit_is_stopped_at_the_socket_and_the_producer_reconnects(zmq_pair):
    src, push = zmq_pair
    send_video(push, 0.0, np.zeros((300, 400, 3), np.uint8))  # 360 kB > 200 kB limit: libzmq drops the connection
    assert wait_for(lambda: src.stats().peer_disconnects == 1, 5.0)
    send_clip(push, 2.0)
    send_end(push)
    assert len(list(src)) == 1
    assert src.stats().malformed_messages == 0


def test_oversized_messages_are_counted_and_dropped(zmq_pair):
    src, push = zmq_pair
    header = json.dumps({"kind": "video", "t": 0.0, "width": 50000, "height": 1}).encode() + b" " * 100_000
    push.send_multipart([header, bytes(150_000)])  # each part under the 200 kB limit, together over it
    push.send_multipart([json.dumps({"kind": "video", "t": 0.1, "width": 100000, "height": 1}).encode(), b"x"])
    send_clip(push, 2.0)
    send_end(push)
    assert len(list(src)) == 1
    s = src.stats()
    assert s.oversized_messages == 2 and s.malformed_messages == 2


def test_out_of_order_messages_are_counted_and_dropped(zmq_pair):
    src, push = zmq_pair
    send_clip(push, 2.0)
    send_video(push, 1000.5, media.frame_image(999, 80, 48))  # older than the last frame (1001.9)
    send_audio(push, 1000.0, np.zeros(1600, np.float32))
    send_clip(push, 2.0, t0=1002.0)
    send_end(push)
    chunks = list(src)
    assert len(chunks) == 2
    assert all(999 not in [int(round(t * 10)) for t in frame_times(c)] for c in chunks)
    assert src.stats().out_of_order_messages == 2


def test_zmq_refuses_to_bind_beyond_loopback_unless_allowed():
    with pytest.raises(ConfigError, match="endpoint"):
        open_source({"type": "zmq", "endpoint": "tcp://0.0.0.0:5999"})


def test_zmq_idle_timeout_ends_the_stream():
    port = free_port()
    src = open_source({"type": "zmq", "endpoint": f"tcp://127.0.0.1:{port}", "idle_timeout": 0.3})
    try:
        assert wait_for(lambda: src.state.value == "ended", 3.0)
    finally:
        src.close()
