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
from omnisift.device import cast_module, pick_attention, pick_device, pick_dtype
from omnisift.parts import PARTS, load_part
from omnisift.thinker import OmniSIFTThinker
from omnisift.token_layout import DEFAULT_MODEL

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
    part: str = "all",
) -> OmniModel:
    """Load the thinker (with OmniSIFT inside its forward) and the processor.

    `selector` is a separate selector checkpoint for a base Qwen2.5-Omni model; without it the model
    checkpoint must hold one (OmniSIFT-7B layout) unless `compress=False` or `rho_audio == 0`.
    `part` loads only what one process needs, never materialising the rest (`omnisift.parts`): "towers"
    (vision and audio towers + selector, for an encoder) or "language" (language model, LM head and
    selector, for a model actor); "all" is the whole thinker.
    """
    device = pick_device(device)
    dtype = pick_dtype(device, dtype)
    attn = pick_attention(device, dtype, attn_implementation)
    model = model_folder(model, local_files_only)  # a model that is nowhere: one line naming it, nothing loaded
    if part == "all":
        thinker, info = OmniSIFTThinker.from_pretrained(
            str(model), dtype=dtype, attn_implementation=attn, output_loading_info=True,
            local_files_only=local_files_only,
        )
        missing_selector = sorted(k for k in info["missing_keys"] if k.startswith("compressor."))
    else:
        thinker, in_checkpoint = _load_part(model, part, device, dtype, attn, local_files_only)
        missing_selector = [] if in_checkpoint else ["compressor.*"]
    if selector is not None:
        thinker.compressor.load_state_dict(_selector_state(selector, thinker.compressor.d_model))
    elif missing_selector and compress and rho_audio != 0:
        raise CheckpointError(
            f"{model}: no OmniSIFT selector in the checkpoint (missing {missing_selector[0]}, ...); "
            "pass selector=PATH, or rho_audio=0, or compress=False"
        )
    has_selector = selector is not None or not missing_selector
    cast_module(thinker, device, dtype).eval()  # rotary frequencies stay float32
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


def model_folder(model: str | Path, local_files_only: bool = False) -> Path:
    """The local folder of a model: `model` itself, or its snapshot in the Hugging Face hub cache
    (downloaded unless `local_files_only`). One-line CheckpointError when it cannot be found."""
    if Path(model).is_dir():
        return Path(model)
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(model), local_files_only=local_files_only,
                                      allow_patterns=["*.json", "*.safetensors", "*.jinja", "*.txt", "*.model"]))
    except Exception as err:  # noqa: BLE001 - any hub failure: one line naming the model
        where = "in the local hub cache" if local_files_only else "on the Hugging Face hub"
        raise CheckpointError(f"{model}: not a local folder, and not found {where} ({type(err).__name__}); "
                              "give a folder holding the weights (config.json, *.safetensors) or a hub id "
                              "this machine can download") from None


def _load_part(model: str | Path, part: str, device: torch.device, dtype: torch.dtype, attn: str,
               local_files_only: bool) -> tuple[OmniSIFTThinker, bool]:
    """One part of the thinker (`omnisift.parts`), and whether its checkpoint held a selector."""
    from transformers import AutoConfig

    if part not in PARTS:
        raise ValueError(f"unknown model part {part!r}; choose all, {', '.join(PARTS)}")
    folder = model_folder(model, local_files_only)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    config = getattr(config, "thinker_config", config)
    config._attn_implementation = attn
    for sub in (config.text_config, config.vision_config, config.audio_config):
        sub._attn_implementation = attn
    return load_part(folder, config, part, device, dtype, OmniSIFTThinker)
