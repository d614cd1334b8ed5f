"""The whole per-chunk path, AVChunk -> CompressedChunk: preprocess, encode, compress.

This is what an encoder actor runs on the GPU; the live session runs it in-process. It fixes the
stream's modalities on the first chunk and fills a missing modality inside an audio-video stream (a
gap in video holds the last frame, a gap in audio is silence), so the token layout never changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from operators.chunks import CompressedChunk
from operators.compress import Compressor
from operators.encode import Encoder
from operators.preprocess import Preprocessor
from streams.chunk import AUDIO_RATE, VIDEO_FPS, AVChunk


@dataclass(frozen=True)
class Modalities:
    """Which modalities a stream carries, fixed by its first chunk."""

    video: bool
    audio: bool


@dataclass(frozen=True)
class StageTimes:
    """Seconds one chunk spent in each stage."""

    preprocess: float
    encode: float
    compress: float


class ChunkEncoder:
    """Preprocess + encode + compress for one stream. `make_compressor(tokens_per_frame, has_audio)` builds
    the compressor once the frame size and the stream's modalities are known (a retention target counts
    the tokens the stream has: without audio, video alone makes up the target)."""

    def __init__(self, preprocessor: Preprocessor, encoder: Encoder,
                 make_compressor: Callable[[int, bool], Compressor]) -> None:
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.make_compressor = make_compressor
        self.reset()

    def reset(self) -> None:
        """A new stream: modalities, held frame and compressor state are forgotten."""
        self.modalities: Modalities | None = None
        self.compressor: Compressor | None = None
        self.last_frames: np.ndarray | None = None
        self.last_times: StageTimes | None = None
        self.last_grid_hw: tuple[int, int] | None = None  # merged-token grid of the last chunk's frames

    def inputs(self, chunk: AVChunk) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The chunk's frames [F, H, W, 3] and audio [S] for this stream's modalities."""
        if self.modalities is None:
            self.modalities = Modalities(chunk.frames is not None, chunk.audio is not None)
        frames, audio = chunk.frames, chunk.audio
        if not self.modalities.video:
            return None, audio
        if frames is None:
            if self.last_frames is None:
                raise ValueError(f"chunk {chunk.index} of {chunk.stream!r} has no frames and none came before")
            frames = np.repeat(self.last_frames[-1:], max(1, round(chunk.duration * VIDEO_FPS)), axis=0)
        self.last_frames = frames
        if not self.modalities.audio:
            return frames, None
        if audio is None:
            audio = np.zeros(round(len(frames) / VIDEO_FPS * AUDIO_RATE), dtype=np.float32)
        return frames, audio

    def process(self, chunk: AVChunk) -> CompressedChunk:
        frames, audio = self.inputs(chunk)
        t0 = time.perf_counter()
        pre = self.preprocessor.process(chunk.index, frames, audio)
        t1 = time.perf_counter()
        encoded = self.encoder.process(pre)
        t2 = time.perf_counter()
        if self.compressor is None:
            tokens_per_frame = 0 if encoded.video is None else encoded.video.shape[1]
            self.compressor = self.make_compressor(tokens_per_frame, self.modalities.audio)
        compressed = self.compressor.process(encoded)
        self.last_grid_hw = encoded.grid_hw
        self.last_times = StageTimes(t1 - t0, t2 - t1, time.perf_counter() - t2)
        return compressed
