"""Independent checks: read the time a chunk shows from its pixels and tones (see media.py)."""

from __future__ import annotations

import media


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
