"""Fixtures for the streaming engine: the tiny Qwen2.5-Omni on disk and clips of generated media."""

from __future__ import annotations

import numpy as np

from streams.chunk import AVChunk


def moving_square_chunks(n_chunks: int, size: int = 112, last_seconds: float = 2.0, seed: int = 0) -> list[AVChunk]:
    """Chunks of a square moving across a grey frame at 2 fps with a tone whose pitch rises each second.

    The last chunk covers `last_seconds` (a partial chunk when < 2)."""
    rng = np.random.default_rng(seed)
    chunks = []
    for i in range(n_chunks):
        seconds = last_seconds if i == n_chunks - 1 else 2.0
        n_frames = max(1, round(seconds * 2))
        frames = np.full((n_frames, size, size, 3), 96, dtype=np.uint8)
        for f in range(n_frames):
            x = (8 * (4 * i + f)) % (size - 24)
            frames[f, 30:54, x:x + 24] = (220, 40, 40)
        frames = np.clip(frames + rng.integers(0, 6, frames.shape), 0, 255).astype(np.uint8)
        t = np.arange(round(seconds * 16000)) / 16000 + 2.0 * i
        audio = (0.3 * np.sin(2 * np.pi * (300 + 100 * np.floor(t)) * t)).astype(np.float32)
        chunks.append(AVChunk("test", i, 2.0 * i, frames, audio))
    return chunks
