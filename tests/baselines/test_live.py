"""Every baseline runs live through OmniSession on the tiny Qwen2.5-Omni."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline.session import OmniSession
from tests.baselines.conftest import moving_square_chunks

BASELINES = ["dycoke", "timechat", "omnizip", "vidcom2", "stvp", "vgas"]


@pytest.fixture(scope="module")
def full_positions(tiny_model_path, target):
    session = OmniSession.from_pretrained(str(tiny_model_path), compressor="full", **target.load())
    return [session.append(c).positions for c in moving_square_chunks(3)]


@pytest.mark.parametrize("name", BASELINES)
def test_baseline_runs_live_through_the_session(name, tiny_model_path, full_positions, target):
    session = OmniSession.from_pretrained(str(tiny_model_path), compressor=name, rho_video=0.75, rho_audio=0.3,
                                          **target.load())
    for chunk, full in zip(moving_square_chunks(3), full_positions, strict=True):
        out = session.append(chunk)
        t = session.last_timings
        assert (t.video_before, t.audio_before) == (out.video_before, out.audio_before) == (32, 50)
        assert t.audio_after == 50 - int(50 * 0.3)
        if name != "omnizip":
            assert t.video_after == 2 * (16 - 12)
        # kept tokens keep their original TMRoPE positions: a subset of the uncompressed chunk's
        assert {tuple(p) for p in out.positions.T.tolist()} <= {tuple(p) for p in full.T.tolist()}
    assert isinstance(session.ask("What is moving?", max_new_tokens=3), str)
    assert math.isfinite(session.score("What is moving?", "a square"))
    session.reset()
    session.append(moving_square_chunks(1)[0])  # state is forgotten on reset
    assert torch.is_tensor(session.context_positions())
