"""The GPU acceptance run: one command, one table, one JSON file.

    bash scripts/gpu_check.sh [--out gpu_check.json]          # on a GPU machine (full mode)
    python -m benchmarks.gpu_check --reduced --out check.json  # anywhere: tiny sizes, the CPU when no GPU

Full mode (a CUDA device, bf16): a random Qwen2.5-Omni at the real 7B widths with the real layer counts (28
language layers, 32 vision and 32 audio layers, the 152,064-row vocabulary), built directly on the GPU in
bf16 (nothing downloaded, nothing written to disk), and

- the environment: GPU, driver, torch and its CUDA, the attention backends found;
- the device tests: `pytest --device cuda --dtype bfloat16` over the model-path tests (README "Running the
  tests on a GPU");
- per 640x480 chunk: towers, compression, prefill and one decode token (medians, clock synchronised);
- batched against one-at-a-time prefill and decode at 1, 4 and 16 streams with ~3,000-token contexts
  (`benchmarks.scale.forward_ratios_of`: warm-up round, synchronised clock, medians);
- host synchronisations per decode step (`torch.cuda.set_sync_debug_mode("warn")` counts them);
- peak GPU memory against the weights plus the KV cache `omnisift.qwen_sizes` predicts for those contexts;
- FlashAttention-2 against SDPA: the same weights' logits, when flash-attn is installed.

Reduced mode (`--reduced`, and always without CUDA): the same steps on the tiny model's sizes, on the CPU in
float32 unless a GPU is there, the device tests only collected (the suite itself runs them on the CPU). A
test runs it (`tests/test_gpu_check.py`), so it cannot rot. The GPU's own figures go to BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from benchmarks.scale import clock, forward_ratios_of

DEVICE_TESTS = [
    "tests/omnisift/test_rotary_fp32.py", "tests/omnisift/test_thinker.py", "tests/operators/test_compress.py",
    "tests/operators/test_encode_many.py", "tests/pipeline/test_session_exactness.py",
    "tests/pipeline/test_window.py", "tests/pipeline/test_batched_prefill.py", "tests/pipeline/test_decoding.py",
    "tests/real_width/test_batched_prefill_real.py", "tests/real_width/test_encode_many_real_width.py",
    "tests/real_width/test_real_shapes.py",
]  # none needs Ray, ZeroMQ or PyAV (`--env-check-skip`): the wheel folder leaves them out
QUESTION = "What is on screen?"


def environment() -> dict:
    """GPU, driver, torch, CUDA and the attention backends this machine has."""
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "gpu": None, "driver": None, "flash_attn": importlib.util.find_spec("flash_attn") is not None,
           "sdpa": hasattr(torch.nn.functional, "scaled_dot_product_attention")}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
        env["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=30)
            env["driver"] = out.stdout.strip().splitlines()[0] if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, IndexError):
            pass
    return env


def build_model(device: torch.device, dtype: torch.dtype, reduced: bool, attn: str = "sdpa"):
    """A random `OmniModel` made in place on `device` in `dtype` (rotary frequencies float32, as loaded)."""
    from omnisift.device import cast_module
    from omnisift.loading import OmniModel
    from omnisift.qwen_sizes import MAX_PIXELS_7B, MIN_PIXELS_7B
    from omnisift.thinker import OmniSIFTThinker
    from omnisift.tiny import build_processor, build_tokenizer, real_width_config, tiny_config

    tokenizer = build_tokenizer()
    if reduced:
        config, processor = tiny_config(tokenizer), build_processor(tokenizer, 3136, 640 * 480)
    else:
        config = real_width_config(tokenizer, layers=None, real_vocab=True)
        processor = build_processor(tokenizer, MIN_PIXELS_7B, MAX_PIXELS_7B)
    thinker_config = config.thinker_config
    for sub in (thinker_config, thinker_config.text_config, thinker_config.vision_config,
                thinker_config.audio_config):
        sub._attn_implementation = attn
    torch.manual_seed(0)
    saved = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # parameters made in `dtype`; rotary buffers are computed in float32
    try:
        with torch.device(device):
            thinker = OmniSIFTThinker(thinker_config)
    finally:
        torch.set_default_dtype(saved)
    cast_module(thinker, device, dtype).eval()
    thinker.configure_compression(retention=0.25)
    return OmniModel(thinker, processor, device, dtype, attn, True)


def chunk_640x480(index: int, size: tuple[int, int]):
    from streams.chunk import AVChunk

    rng = np.random.default_rng(index)
    t = np.arange(32000) / 16000 + 2 * index
    frames = rng.integers(0, 256, (4, size[1], size[0], 3), dtype=np.uint8)
    return AVChunk("check", index, 2.0 * index, frames, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))


def stage_times(model, reps: int, size: tuple[int, int]) -> dict:
    """Median milliseconds per chunk: towers, compression, prefill, one decode token (synchronised clock)."""
    from pipeline.session import OmniSession

    device = str(model.device)
    session = OmniSession.from_model(model, compressor="omnisift", retention=0.25, max_pixels=640 * 480,
                                     window_seconds=None)
    ce = session.chunk_encoder
    rows = []
    for i in range(reps + 1):  # the first chunk warms up
        chunk = chunk_640x480(i, size)
        pre = session.preprocessor.process(chunk.index, *ce.inputs(chunk))
        start = clock(device)
        with torch.inference_mode():
            encoded = session.encoder.process(pre)
        towers = clock(device) - start
        compressed = ce.finish(encoded, 0.0, towers)
        compress = clock(device) - start - towers
        start = clock(device)
        session.append_compressed(compressed)
        prefill = clock(device) - start
        ctx = session.context
        token = ctx.embed(torch.tensor([5], device=model.device))
        pos = torch.full((3, 1), int(ctx.positions().max()) + 1, device=model.device)
        start = clock(device)
        ctx.forward_embeds(token, pos, logits=1)
        decode = clock(device) - start
        ctx.rollback(len(ctx) - 1)
        rows.append((towers, compress, prefill, decode))
    med = [1000 * statistics.median(r[k] for r in rows[1:]) for k in range(4)]
    return {"towers_ms": med[0], "compress_ms": med[1], "prefill_ms": med[2], "decode_token_ms": med[3],
            "kept_tokens": int(compressed.tokens.shape[0]), "context_tokens": len(session.context)}


def syncs_per_decode_step(session, steps: int = 16) -> float | None:
    """Host synchronisations per decode step of one answer on `session`'s context, counted by CUDA's sync
    debug mode (a warning each); None off CUDA."""
    from pipeline.messages import GenerationSettings

    if session.model.device.type != "cuda":
        return None
    answer = session.start_answer(QUESTION, GenerationSettings(max_new_tokens=steps))
    done = 0
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                while not answer.done and done < steps:
                    answer.step()
                    done += 1
            finally:
                torch.cuda.set_sync_debug_mode("default")
    finally:
        answer.close()
    return sum(1 for w in caught if "synchroniz" in str(w.message).lower()) / max(1, done)


def predicted_bytes(model, context_tokens: int) -> int:
    """Weights plus the KV cache of `context_tokens` tokens (`omnisift.qwen_sizes.kv_bytes_per_token`)."""
    from omnisift.qwen_sizes import kv_bytes_per_token

    text = model.thinker.config.text_config
    dims = {k: getattr(text, k) for k in ("hidden_size", "num_attention_heads", "num_hidden_layers",
                                            "num_key_value_heads")}
    size = torch.empty((), dtype=model.dtype).element_size()
    weights = sum(p.numel() * p.element_size() for p in model.thinker.parameters())
    return weights + context_tokens * kv_bytes_per_token(dims, size)


def attention_agreement(model, reduced: bool) -> dict | None:
    """Next-token logits of one context under FlashAttention-2 and SDPA (the same weights); None without
    flash-attn or CUDA."""
    if model.device.type != "cuda" or importlib.util.find_spec("flash_attn") is None:
        return None
    lm = model.thinker.model.language_model
    x = torch.randn(1, 3000 if not reduced else 300, lm.config.hidden_size, device=model.device,
                    dtype=model.dtype, generator=torch.Generator(model.device).manual_seed(0)) * 0.02
    pos = torch.arange(x.shape[1], device=model.device).expand(3, 1, -1)
    logits = {}
    for attn in ("sdpa", "flash_attention_2"):
        lm.config._attn_implementation = attn
        with torch.inference_mode():
            logits[attn] = model.thinker.lm_head(lm(inputs_embeds=x, position_ids=pos).last_hidden_state[0, -1]).float()
    lm.config._attn_implementation = model.attn_implementation
    diff = (logits["sdpa"] - logits["flash_attention_2"]).abs()
    return {"max_abs_diff": float(diff.max()), "logit_spread": float(logits["sdpa"].std()),
            "same_argmax": bool(logits["sdpa"].argmax() == logits["flash_attention_2"].argmax())}


def device_tests(reduced: bool, device: str, dtype: str) -> dict:
    """The model-path tests on the device (`pytest --device --dtype`); reduced: only collected."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--device", device, "--dtype", dtype,
           "--env-check-skip", "ray,zmq,av", *DEVICE_TESTS]
    if reduced:
        cmd.append("--collect-only")
    start = time.monotonic()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    last = (out.stdout.strip().splitlines() or [""])[-1]
    return {"command": " ".join(cmd[2:]), "returncode": out.returncode, "summary": last,
            "seconds": round(time.monotonic() - start, 1)}


# what a CUDA build of torch brings (or the machine has), and what the run leaves out
NOT_WHEELS = {"torch", "triton", "sympy", "mpmath", "networkx", "setuptools", "omnisift-stream", "ray", "av",
              "pyzmq"}
TORCH_FAMILY = {"torchaudio", "torchvision"}  # built against one torch release: installed only where missing


def run_requirements() -> tuple[list[str], list[str]]:
    """(`name==version` of every distribution the run imports besides torch, the torch family's), as
    installed here (the lock's versions): what `scripts/gpu_check.sh --prepare-wheels` downloads. Found by
    importing what the run imports and collecting the device tests, then mapping modules to distributions."""
    import importlib.metadata as md

    import pytest

    pytest.main(["-q", "-p", "no:cacheprovider", "--collect-only", "--env-check-skip", "ray,zmq,av",
                 *DEVICE_TESTS], plugins=[])
    run(True, [1], 300, 1, tests=False, log=lambda *a: None)
    names = {m.split(".")[0] for m in list(sys.modules)}
    dists = md.packages_distributions()
    found = sorted({d for n in names for d in dists.get(n, [])} | {"pytest-timeout", "pytest-asyncio"})
    pins = [f"{d}=={md.version(d)}" for d in found if d not in NOT_WHEELS and not d.startswith("nvidia")]
    return ([p for p in pins if p.split("==")[0] not in TORCH_FAMILY],
            [p for p in pins if p.split("==")[0] in TORCH_FAMILY])


def run(reduced: bool, streams: list[int], context_tokens: int, reps: int, tests: bool, log=print) -> dict:
    """Every step above; the results as one dict (the JSON file)."""
    cuda = torch.cuda.is_available()
    reduced = reduced or not cuda
    device = torch.device("cuda" if cuda else "cpu")
    dtype = torch.bfloat16 if cuda else torch.float32
    result: dict = {"mode": "reduced" if reduced else "full", "device": str(device), "dtype": str(dtype),
                    "environment": environment()}
    log(f"environment: {result['environment']}")
    if tests:
        result["device_tests"] = device_tests(reduced, device.type, str(dtype).removeprefix("torch."))
        log(f"device tests: {result['device_tests']['summary']}")
    start = time.monotonic()
    model = build_model(device, dtype, reduced)
    result["build_seconds"] = round(time.monotonic() - start, 1)
    result["parameters"] = sum(p.numel() for p in model.thinker.parameters())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    size = (640, 480) if not reduced else (112, 112)
    result["chunk"] = stage_times(model, reps, size)
    log(f"per chunk ({size[0]}x{size[1]}): {result['chunk']}")
    width = model.thinker.config.text_config.hidden_size
    result["batching"] = forward_ratios_of(model, streams, width, repeats=reps, context_tokens=context_tokens,
                                           log=log)
    from benchmarks.scale import synthetic_chunk
    from pipeline.session import OmniSession

    session = OmniSession.from_model(model, retention=0.25, max_pixels=640 * 480, window_seconds=None)
    for k in range(max(1, context_tokens // 209)):
        session.append_compressed(synthetic_chunk(k, width, seed=k))
    result["syncs_per_decode_step"] = syncs_per_decode_step(session)
    if cuda:
        held = max(streams) * context_tokens
        result["memory"] = {"peak_gib": torch.cuda.max_memory_allocated() / 2**30,
                            "predicted_gib": predicted_bytes(model, held) / 2**30, "context_tokens_held": held}
    result["flash_vs_sdpa"] = attention_agreement(model, reduced)
    return result


def table(r: dict) -> str:
    """The one table of a run."""
    env, chunk = r["environment"], r["chunk"]
    rows = [("mode", f"{r['mode']} ({r['device']}, {r['dtype']})"),
            ("GPU / driver", f"{env['gpu']} / {env['driver']}"),
            ("torch / CUDA", f"{env['torch']} / {env['cuda']}"),
            ("attention", "sdpa" + (", flash-attn" if env["flash_attn"] else "")),
            ("model", f"{r['parameters'] / 1e6:,.1f} M parameters, built on the device in {r['build_seconds']} s")]
    if "device_tests" in r:
        rows.append(("device tests", r["device_tests"]["summary"]))
    rows += [("towers / compress per chunk (ms)", f"{chunk['towers_ms']:.1f} / {chunk['compress_ms']:.1f}"),
             ("prefill / decode token (ms)", f"{chunk['prefill_ms']:.1f} / {chunk['decode_token_ms']:.2f}")]
    for b in r["batching"]:
        rows.append((f"{b['streams']} streams, {b['context_tokens']} tokens: prefill / decode each vs batched (ms)",
                     f"{b['prefill_seq_ms']:.1f} vs {b['prefill_batched_ms']:.1f} / "
                     f"{b['decode_seq_ms']:.2f} vs {b['decode_batched_ms']:.2f}"))
    rows.append(("host syncs per decode step", "n/a (CPU)" if r["syncs_per_decode_step"] is None
                 else f"{r['syncs_per_decode_step']:.2f}"))
    if "memory" in r:
        m = r["memory"]
        rows.append(("peak GPU memory vs predicted (GiB)", f"{m['peak_gib']:.1f} vs {m['predicted_gib']:.1f}"))
    f = r["flash_vs_sdpa"]
    rows.append(("FlashAttention-2 vs SDPA logits", "n/a" if f is None else
                 f"max |diff| {f['max_abs_diff']:.3g} (spread {f['logit_spread']:.3g}), "
                 f"same argmax {f['same_argmax']}"))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reduced", action="store_true", help="tiny sizes (always so without CUDA)")
    ap.add_argument("--streams", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--context-tokens", type=int, default=3000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-tests", action="store_true", help="skip the device tests")
    ap.add_argument("--out", type=Path, default=Path("gpu_check.json"))
    ap.add_argument("--requirements", type=Path, metavar="DIR",
                    help="write DIR/requirements.txt and DIR/torch-family.txt (what the run needs) and stop")
    args = ap.parse_args(argv)
    if args.requirements is not None:
        pins, family = run_requirements()
        args.requirements.mkdir(parents=True, exist_ok=True)
        (args.requirements / "requirements.txt").write_text("\n".join(pins) + "\n")
        (args.requirements / "torch-family.txt").write_text("\n".join(family) + "\n")
        print(f"{len(pins)} packages + {len(family)} of the torch family: {args.requirements}")
        return 0
    result = run(args.reduced, args.streams, args.context_tokens, args.repeats, not args.no_tests)
    print(table(result))
    args.out.write_text(json.dumps(result, indent=2, default=str))
    print(f"written: {args.out}")
    return 0 if result.get("device_tests", {}).get("returncode", 0) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
