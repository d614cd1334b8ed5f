"""Where and how the model runs: CUDA + bf16 + FlashAttention-2 when present, else CPU, fp32, SDPA."""

from __future__ import annotations

import importlib.util

import torch


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
