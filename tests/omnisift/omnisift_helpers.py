"""Clips and positions shared by the omnisift tests (plain functions; fixtures live in conftest.py)."""

from __future__ import annotations

import numpy as np
import torch

FPS = 2
RATE = 16_000
HEIGHT, WIDTH = 56, 84  # -> 2 x 3 = 6 merged tokens per frame


def make_clip(seconds: float, seed: int, height: int = HEIGHT, width: int = WIDTH) -> tuple[np.ndarray, np.ndarray]:
    """Random frames [seconds*2, H, W, 3] uint8 at 2 fps and a noisy tone [seconds*16000] at 16 kHz."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(int(seconds * FPS), height, width, 3), dtype=np.uint8)
    t = np.arange(int(seconds * RATE)) / RATE
    audio = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * rng.standard_normal(t.shape)).astype(np.float32)
    return frames, audio


def rope_positions(thinker, inputs) -> torch.Tensor:
    """TMRoPE positions [3, B, L] of processor outputs, from the model's own `get_rope_index`."""
    positions, _ = thinker.get_rope_index(
        inputs["input_ids"], None, inputs["video_grid_thw"], inputs["attention_mask"],
        use_audio_in_video=True, audio_seqlens=inputs["feature_attention_mask"].sum(-1),
        second_per_grids=inputs["video_second_per_grid"],
    )
    return positions
