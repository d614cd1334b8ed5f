"""Where and how the model runs: CUDA + bf16 + FlashAttention-2 when present, else CPU, fp32, SDPA.

`cast_module` is the one place a model is moved to its device and dtype: it keeps the tensors a cast must
not touch (rotary frequencies, the audio tower's sinusoids) in float32.
"""

from __future__ import annotations

import importlib.util

import torch
from torch import nn


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, or the first CUDA device when there is one, else the CPU."""
    if device is not None:
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def pick_dtype(device: torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """The requested dtype, or bf16 on a GPU that supports it, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        try:
            return {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
                    "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}[dtype]
        except KeyError:
            raise ValueError(f"unknown dtype {dtype!r}; use bf16, fp16 or fp32") from None
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def flash_attention_available() -> bool:
    """True when the flash-attn package is installed (it only runs on CUDA)."""
    return importlib.util.find_spec("flash_attn") is not None


def pick_attention(device: torch.device, dtype: torch.dtype, requested: str | None = None) -> str:
    """FlashAttention-2 on CUDA with fp16/bf16 when flash-attn is installed, else PyTorch SDPA.

    The main path never asks the model for attention weights, so neither backend needs "eager".
    """
    if requested is not None:
        return requested
    if device.type == "cuda" and dtype in (torch.float16, torch.bfloat16) and flash_attention_available():
        return "flash_attention_2"
    return "sdpa"


def computed_buffers(module: nn.Module) -> list[tuple[nn.Module, str]]:
    """(owner, name) of every non-persistent floating-point buffer under `module`.

    In Qwen2.5-Omni these are the language model's and the vision tower's rotary frequencies
    (`inv_freq`, `original_inv_freq`) and the audio tower's sinusoidal positions: computed in float32 when
    the module is built, never read from a checkpoint. `transformers`' `from_pretrained(dtype=...)` builds
    them so and never casts them (it casts each weight as it is read); a `module.to(dtype)` would round
    them to bf16, and bf16 frequencies turn a position gap of 1,000 into a phase error of about a radian.
    """
    return [(owner, name) for owner in module.modules()
            for name, buf in owner._buffers.items()
            if buf is not None and buf.is_floating_point() and name in owner._non_persistent_buffers_set]


def cast_module(module: nn.Module, device: str | torch.device | None = None,
                dtype: torch.dtype | None = None) -> nn.Module:
    """`module.to(device=device, dtype=dtype)` in place, except that computed buffers (`computed_buffers`)
    keep their own dtype and only move to `device`. Returns `module`."""
    kept = [(owner, name, owner._buffers[name]) for owner, name in computed_buffers(module)]
    module.to(device=device, dtype=dtype)
    for owner, name, buf in kept:
        owner._buffers[name] = buf.to(device=device) if device is not None else buf
    return module
