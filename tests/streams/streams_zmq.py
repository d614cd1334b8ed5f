"""Producer side for the ZeroMQ tests: a real PUSH socket on loopback sending the clip of streams_media.

Frame `i` shows the number `i` (10 fps) and the audio at producer time `t0 + s` is the tone of segment
`s / 0.5`, so `streams_checks.frame_times` / `audio_segments` read back which input a chunk holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import streams_media as media
import zmq
from streams_checks import free_port

from streams import Source, open_source
from streams.zmq_source import send_audio, send_video

FPS = 10
WIDTH, HEIGHT = 80, 48


def send_span(push: zmq.Socket, start: float, end: float, *, t0: float = 1000.0, rate: int = 48000) -> None:
    """Media seconds [start, end) of the clip: 10 fps frames and 100 ms stereo audio blocks at `rate`."""
    for i in range(int(round(start * FPS)), int(round(end * FPS))):
        t = i / FPS
        send_video(push, t0 + t, media.frame_image(i, WIDTH, HEIGHT))
        block = media.tone_samples(t, rate // FPS, rate)
        send_audio(push, t0 + t, np.stack([block, block], axis=1), rate=rate)


def header(**fields) -> bytes:
    return json.dumps(fields).encode()


@contextmanager
def zmq_source(max_message_bytes: int = 200_000, queue_size: int = 64) -> Iterator[tuple[Source, zmq.Socket]]:
    """A running ZeroMQ source bound on a free loopback port and a PUSH socket connected to it."""
    port = free_port()
    src = open_source(
        {
            "type": "zmq",
            "endpoint": f"tcp://127.0.0.1:{port}",
            "max_message_bytes": max_message_bytes,
            "queue_size": queue_size,
        }
    )
    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(f"tcp://127.0.0.1:{port}")
    try:
        yield src, push
    finally:
        push.close()
        src.close()
