"""Fixtures for the omnisift tests: one tiny Qwen2.5-Omni per session, generated clips, processed inputs.

The tiny model (random weights, the real config layout, tokenizer and processor) is written once per
session with `omnisift.tiny.make_tiny_omni` and loaded through `omnisift.loading.load_model`, the
same `from_pretrained` path a user's `Qwen/Qwen2.5-Omni-7B` goes through, on the `target` device and dtype
(`--device`, `--dtype`; tests/conftest.py).
"""

from __future__ import annotations

import pytest
import torch
from omnisift_helpers import make_clip

from omnisift.inputs import processor_inputs
from omnisift.loading import load_model
from omnisift.tiny import make_tiny_omni


@pytest.fixture(scope="session")
def tiny_dir(tiny_model_path):
    """Tiny Qwen2.5-Omni in the OmniSIFT-7B layout (selector inside the checkpoint): the session's one."""
    return tiny_model_path


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory):
    """Tiny base Qwen2.5-Omni without a selector."""
    return make_tiny_omni(tmp_path_factory.mktemp("tiny_omni_base"), with_selector=False)


@pytest.fixture(scope="session")
def tiny(tiny_dir, target):
    """The loaded tiny model (shared; tests that change its ratios restore them)."""
    torch.manual_seed(0)
    return load_model(tiny_dir, **target.load())


@pytest.fixture(scope="session")
def clip_inputs(tiny):
    """Processor outputs of a 5-second clip: chunks of 2 + 2 + 1 frames and 50 + 50 + 25 audio tokens."""
    frames, audio = make_clip(5, seed=1)
    return processor_inputs(tiny, frames, audio, "What is on the screen?").to(tiny.device)
