"""The unit that leaves `streams/`: one aligned 2-second slice of audio and video.

Everything downstream (operators, the model session, Ray actors) consumes `AVChunk`s and nothing else
from ingestion. A chunk carries its stream name, its index in that stream and its media start time on
the stream's own clock, plus flags that say which parts are not real data.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

CHUNK_SECONDS = 2.0
VIDEO_FPS = 2.0
AUDIO_RATE = 16_000
FRAMES_PER_CHUNK = int(CHUNK_SECONDS * VIDEO_FPS)  # 4
SAMPLES_PER_CHUNK = int(CHUNK_SECONDS * AUDIO_RATE)  # 32000


@dataclass(frozen=True)
class ChunkFlags:
    """What in a chunk is not real captured data."""

    audio_filled: bool = False  # some audio samples are silence inserted for a gap
    frames_repeated: bool = False  # some frames repeat an earlier frame to fill a gap
    gap_before: bool = False  # media time jumped or the source reconnected before this chunk
    video_absent: bool = False  # the stream has no video: `frames` is None
    audio_absent: bool = False  # the stream has no audio: `audio` is None
    partial: bool = False  # the last chunk of a finite stream, shorter than CHUNK_SECONDS


@dataclass(frozen=True)
class AVChunk:
    """One aligned chunk of a stream.

    frames: [F, H, W, 3] uint8 RGB sampled at 2 fps; F == 4 except in the final partial chunk.
    audio:  [S] float32 mono at 16 kHz in [-1, 1]; S == 32000 except in the final partial chunk.
    start:  media time of the chunk's first sample, in seconds on the stream's clock.
    """

    stream: str
    index: int
    start: float
    frames: np.ndarray | None
    audio: np.ndarray | None
    flags: ChunkFlags = field(default_factory=ChunkFlags)
    capture_time: float = 0.0  # wall-clock time (time.time()) when the chunk's last data arrived

    @property
    def duration(self) -> float:
        """Seconds of media the chunk covers (2.0 except for a final partial chunk)."""
        if self.audio is not None:
            return len(self.audio) / AUDIO_RATE
        if self.frames is not None:
            return len(self.frames) / VIDEO_FPS
        return 0.0
