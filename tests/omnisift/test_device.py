"""Device, dtype and attention-backend choice: SDPA on CPU, FlashAttention-2 only for CUDA + half + flash_attn."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from omnisift import device as dev


@pytest.fixture
def flash_installed(monkeypatch):
    real = importlib.util.find_spec

    def fake(name, *args, **kwargs):
        return object() if name == "flash_attn" else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", fake)


@pytest.fixture
def flash_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == "flash_attn" else real(name, *a, **k))


def test_pick_attention_is_sdpa_on_cpu(flash_installed):
    for dtype in (torch.float32, torch.bfloat16, torch.float16):
        assert dev.pick_attention(torch.device("cpu"), dtype) == "sdpa"


def test_pick_attention_flash_for_cuda_bf16_when_flash_attn_installed(flash_installed):
    cuda = torch.device("cuda")  # only its .type is read; no GPU is touched
    assert dev.pick_attention(cuda, torch.bfloat16) == "flash_attention_2"
    assert dev.pick_attention(cuda, torch.float16) == "flash_attention_2"
    assert dev.pick_attention(cuda, torch.float32) == "sdpa"


def test_pick_attention_sdpa_for_cuda_without_flash_attn(flash_missing):
    assert dev.pick_attention(torch.device("cuda"), torch.bfloat16) == "sdpa"


def test_pick_attention_respects_explicit_request():
    assert dev.pick_attention(torch.device("cpu"), torch.float32, "eager") == "eager"


def test_pick_device_and_dtype_on_a_cpu_machine(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = dev.pick_device()
    assert cpu == torch.device("cpu")
    assert dev.pick_dtype(cpu) == torch.float32
    assert dev.pick_dtype(cpu, "bf16") == torch.bfloat16
    with pytest.raises(ValueError, match="float8"):
        dev.pick_dtype(cpu, "float8")


def test_pick_dtype_is_bf16_on_a_bf16_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert dev.pick_dtype(torch.device("cuda")) == torch.bfloat16
