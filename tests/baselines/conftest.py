"""Fixtures for the baseline compressors: the tiny Qwen2.5-Omni on disk, a tiny real audio tower."""

from __future__ import annotations

import pytest
import torch

from tests.pipeline.conftest import moving_square_chunks  # noqa: F401 - shared fixture

D = 32


@pytest.fixture(scope="session")
def audio_tower():
    """A real (random) Qwen2.5-Omni audio tower, small, with the model's 2-second windows."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig,
    )
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoder,
    )

    torch.manual_seed(0)
    config = Qwen2_5OmniAudioEncoderConfig(d_model=32, encoder_layers=2, encoder_attention_heads=2,
                                           encoder_ffn_dim=64, output_dim=D, n_window=100)
    config._attn_implementation = "sdpa"
    return Qwen2_5OmniAudioEncoder(config).eval()
