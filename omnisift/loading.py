"""Loading a Qwen2.5-Omni thinker with OmniSIFT from a hub id or a local path.

Two layouts are supported: the OmniSIFT-7B layout (the selector inside the model checkpoint under
`thinker.compressor.`), and a base Qwen2.5-Omni checkpoint plus a separate selector file. The device,
dtype and attention backend are chosen by `omnisift.device` unless given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import Qwen2_5OmniProcessor

from omnisift.checkpoint import CheckpointError, read_selector_state, selector_from_state
from omnisift.device import pick_attention, pick_device, pick_dtype
from omnisift.thinker import OmniSIFTThinker

DEFAULT_MODEL = "Qwen/Qwen2.5-Omni-7B"
DEFAULT_SYSTEM_PROMPT = (
    "You are Qwen, a virtual human developed by the Qwen Team, Alibaba Group, capable of perceiving "
    "auditory and visual inputs, as well as generating text and speech."
)


@dataclass
class OmniModel:
    """A loaded thinker, its processor, and where it runs."""

    thinker: OmniSIFTThinker
    processor: Qwen2_5OmniProcessor
    device: torch.device
    dtype: torch.dtype
    attn_implementation: str
    has_selector: bool


def load_model(
    model: str | Path = DEFAULT_MODEL,
    *,
    selector: str | Path | None = None,
    rho_video: float | None = None,
    rho_audio: float | None = None,
    retention: float | None = None,
    compress: bool = True,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str | None = None,
    local_files_only: bool = False,
    towers_only: bool = False,
) -> OmniModel:
    """Load the thinker (with OmniSIFT inside its forward) and the processor.

    `selector` is a separate selector checkpoint for a base Qwen2.5-Omni model; without it the model
    checkpoint must hold one (OmniSIFT-7B layout) unless `compress=False` or `rho_audio == 0`.
    `towers_only=True` drops the language model and LM head after loading, before anything moves to the
    device: what an encoder process needs (towers + selector), without a second copy of the 7B's LM.
    """
    device = pick_device(device)
    dtype = pick_dtype(device, dtype)
    attn = pick_attention(device, dtype, attn_implementation)
    thinker, info = OmniSIFTThinker.from_pretrained(
        str(model), dtype=dtype, attn_implementation=attn, output_loading_info=True,
        local_files_only=local_files_only,
    )
    missing_selector = sorted(k for k in info["missing_keys"] if k.startswith("compressor."))
    if selector is not None:
        thinker.compressor.load_state_dict(_selector_state(selector, thinker.compressor.d_model))
    elif missing_selector and compress and rho_audio != 0:
        raise CheckpointError(
            f"{model}: no OmniSIFT selector in the checkpoint (missing {missing_selector[0]}, ...); "
            "pass selector=PATH, or rho_audio=0, or compress=False"
        )
    has_selector = selector is not None or not missing_selector
    if towers_only:
        thinker.model.language_model = None
        thinker.lm_head = None
    thinker.to(device=device, dtype=dtype).eval()
    thinker.configure_compression(rho_video=rho_video, rho_audio=rho_audio, retention=retention, enabled=compress)
    if not has_selector:
        thinker.compressor = None
    processor = Qwen2_5OmniProcessor.from_pretrained(str(model), local_files_only=local_files_only)
    return OmniModel(thinker, processor, device, dtype, attn, has_selector)


def _selector_state(path: str | Path, d_model: int) -> dict[str, torch.Tensor]:
    """A separate selector file's weights, checked against the model's width."""
    selector = selector_from_state(read_selector_state(path), source=str(path))
    if selector.d_model != d_model:
        raise CheckpointError(f"{path}: selector d_model {selector.d_model} does not match the model's {d_model}")
    return selector.state_dict()
