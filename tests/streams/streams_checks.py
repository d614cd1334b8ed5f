"""Independent checks: read the time a chunk shows from its pixels and tones (see media.py)."""

from __future__ import annotations

import socket
import time

import streams_media as media


def frame_times(chunk, fps: int = 10) -> list[float]:
    """Time each frame shows, decoded from its bar pattern."""
    return [media.decode_frame_number(f) / fps for f in chunk.frames]


def audio_segments(chunk, margin: int = 1200) -> list[int]:
    """Tone segment (0.5 s each, mod 56) heard in each half second of the chunk's audio."""
    out = []
    for i in range(len(chunk.audio) // 8000):
        out.append(media.decode_segment(chunk.audio[i * 8000 + margin : (i + 1) * 8000 - margin]))
    return out


def expected_segments(start: float, n: int) -> list[int]:
    return [int(round(start / media.SEGMENT)) + i for i in range(n)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]



def wait_for(pred, timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()
