"""Fixtures for selector training and evaluation: the tiny Qwen2.5-Omni on disk and generated clips."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="session")
def tiny_path(tiny_model_path):
    return tiny_model_path  # the session's one tiny model


@pytest.fixture(scope="session")
def tiny_model(tiny_path):
    from omnisift.loading import load_model

    return load_model(tiny_path, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def clips(tmp_path_factory):
    """Four 4-second mp4 clips (moving colour square, a beep at a different moment in each)."""
    from pipeline.offline.synthetic.clips import ClipSpec, write_clip

    folder = tmp_path_factory.mktemp("clips")
    paths = []
    for i in range(4):
        spec = ClipSpec(pitch=i % 4, beep_start=0.5 + 0.7 * i, colours=(0, 1, 2, 3, 4, 5, 0, 1), bursts=(1.0,))
        paths.append(write_clip(folder / f"clip{i}.mp4", spec, seed=i))
    (folder / "broken.mp4").write_bytes(b"this is not a video container")
    return folder, paths


@pytest.fixture()
def seeded():
    torch.manual_seed(0)
    np.random.seed(0)
