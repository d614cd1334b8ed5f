"""The GPU acceptance run in its reduced mode (tiny sizes, the CPU here), through its shell entry point as CI
runs it: one table, one JSON file with every step's figures, the device tests collected. The full mode is
the same code on a CUDA device (README "The GPU acceptance run")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks import gpu_check

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(600)
@pytest.mark.skipif(torch.cuda.is_available(), reason="the reduced mode on the CPU (a GPU machine runs the full one)")
def test_the_reduced_run_prints_one_table_and_writes_every_figure(tmp_path):
    out = tmp_path / "check.json"
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run(["bash", "scripts/gpu_check.sh", "--reduced", "--streams", "1", "3", "--context-tokens",
                          "800", "--repeats", "1", "--out", str(out)], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=540)
    assert run.returncode == 0, run.stderr[-2000:]
    r = json.loads(out.read_text())
    assert (r["mode"], r["device"], r["dtype"]) == ("reduced", "cpu", "torch.float32")
    assert r["environment"]["torch"] == torch.__version__ and r["environment"]["gpu"] is None
    # the device tests, collected only in the reduced mode, all found
    assert r["device_tests"]["returncode"] == 0 and "tests collected" in r["device_tests"]["summary"]
    assert "--device cpu --dtype float32" in r["device_tests"]["command"]
    chunk = r["chunk"]
    assert all(chunk[k] > 0 for k in ("towers_ms", "compress_ms", "prefill_ms", "decode_token_ms"))
    assert 0 < chunk["kept_tokens"] < chunk["context_tokens"]
    assert [b["streams"] for b in r["batching"]] == [1, 3]
    for b in r["batching"]:  # contexts of about --context-tokens (give or take a chunk) plus the prompt
        assert 800 - 209 <= b["context_tokens"] <= 800 + 2 * 209 + 200
        assert all(b[k] > 0 for k in ("prefill_seq_ms", "prefill_batched_ms", "decode_seq_ms", "decode_batched_ms"))
    assert r["syncs_per_decode_step"] is None and r["flash_vs_sdpa"] is None  # CUDA only
    assert r["parameters"] == sum(p.numel() for p in gpu_check.build_model(
        torch.device("cpu"), torch.float32, True).thinker.parameters())
    table = run.stdout.split("written:")[0]
    for label in ("mode", "GPU / driver", "towers / compress per chunk (ms)", "prefill / decode token (ms)",
                  "3 streams", "host syncs per decode step", "FlashAttention-2 vs SDPA logits"):
        assert label in table
    assert run.stdout.strip().endswith(f"written: {out}")


def test_the_model_is_built_on_the_device_with_float32_rotary_frequencies():
    model = gpu_check.build_model(torch.device("cpu"), torch.bfloat16, reduced=True)
    assert {p.dtype for p in model.thinker.parameters()} == {torch.bfloat16}
    rotary = {n: b.dtype for n, b in model.thinker.named_buffers() if "inv_freq" in n}
    assert rotary and set(rotary.values()) == {torch.float32}


def test_predicted_memory_is_the_weights_and_the_kv_cache():
    model = gpu_check.build_model(torch.device("cpu"), torch.bfloat16, reduced=True)
    text = model.thinker.config.text_config
    weights = 2 * sum(p.numel() for p in model.thinker.parameters())
    head_dim = text.hidden_size // text.num_attention_heads
    per_token = text.num_hidden_layers * 2 * text.num_key_value_heads * head_dim * 2  # K and V, bf16
    assert gpu_check.predicted_bytes(model, 1000) == weights + 1000 * per_token
