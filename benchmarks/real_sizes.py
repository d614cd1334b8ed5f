"""Memory and time at the real Qwen2.5-Omni-7B sizes: what each actor holds, what a stream's context costs,
how many streams fit on a GPU, and the per-chunk stage times at the real widths.

    python -m benchmarks.real_sizes [--layers 1] [--work /tmp/omnisift-real] [--out results.json]

Computed from the real config (`omnisift.qwen_sizes`, every layer, the 152,064-row vocabulary), counting
parameters on the meta device (no memory). Checked against a measurement: a model at the real widths with
`--layers` layers per stack and the real vocabulary is written in bf16 and measured (parameter counts of
each actor's part against the meta count of the same config; peak host memory of each actor's load in a
fresh process; KV-cache bytes per token; a compressed chunk's size as Ray ships it; stage times of one
640x480 chunk in bf16 and fp32 on this CPU). GPU figures are arithmetic from these counts.
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from omnisift.qwen_sizes import MAX_PIXELS_7B, MIN_PIXELS_7B, kv_bytes_per_token
from omnisift.token_layout import DEFAULT_MAX_PIXELS
from pipeline.offline.machine import machine
from streams.chunk import AUDIO_RATE, SAMPLES_PER_CHUNK

GIB = 2**30
PARTS = {"vision tower": "model.visual", "audio tower": "model.audio_tower", "selector (VGAS)": "compressor",
         "language model": "model.language_model", "LM head": "lm_head"}
ACTORS = {"encoder actor (towers + selector)": ("model.visual", "model.audio_tower", "compressor"),
          "model actor (language model + head + selector)": ("model.language_model", "lm_head", "compressor")}
GPUS_GB = (24, 48, 80)
HEADROOM = 0.9  # share of a GPU planned for weights and KV cache; the rest is activations and the allocator


def thinker_config(layers: int | None = None):
    """The 7B thinker config (every layer, or `layers` per stack), with the real vocabulary."""
    from omnisift.tiny import build_tokenizer, real_width_config

    return real_width_config(build_tokenizer(), layers=layers, real_vocab=True).thinker_config


def part_parameters(config) -> dict[str, int]:
    """Parameters of each part of a thinker built on the meta device."""
    from omnisift.thinker import OmniSIFTThinker

    with torch.device("meta"):
        thinker = OmniSIFTThinker(config)
    return {name: sum(p.numel() for p in thinker.get_submodule(path).parameters()) for name, path in PARTS.items()}


def actor_parameters(parts: dict[str, int]) -> dict[str, int]:
    path_of = {v: k for k, v in PARTS.items()}
    return {actor: sum(parts[path_of[p]] for p in paths) for actor, paths in ACTORS.items()}


def stream_contexts(prefix: int = 42, question: int = 592) -> list[dict]:
    """Worst-case context tokens and bf16 KV bytes of one stream, at the shipped settings."""
    from operators import Compression
    from pipeline.session.budget import frame_tokens, kept_per_chunk

    rows = []
    for label, compression, window, cap in [
        ("defaults: 640x480 cap, 120 s, omnisift 25%", Compression.of("omnisift", retention=0.25), 120, None),
        ("defaults, release ratios (0.7 / 0.3)", Compression.of("omnisift"), 120, None),
        ("defaults, full (no compression)", Compression.of("full"), 120, None),
        ("configs/rtsp.yaml: 720p camera, 300 s, omnisift 25%", Compression.of("omnisift", retention=0.25), 300,
         (1280, 720)),
    ]:
        tpf = frame_tokens(DEFAULT_MAX_PIXELS, MIN_PIXELS_7B, cap)
        chunk = kept_per_chunk(compression, tpf)
        tokens = prefix + math.ceil(window / 2) * chunk + question
        rows.append({"setting": label, "tokens_per_frame": tpf, "kept_per_chunk": chunk, "context_tokens": tokens,
                     "kv_bytes": tokens * kv_bytes_per_token()})
    return rows


def gpu_table(actors: dict[str, int], per_stream: int) -> dict:
    weights = 2 * sum(actors.values())  # bf16
    fits = {gb: max(0, int((gb * 1e9 * HEADROOM - weights) // per_stream)) for gb in GPUS_GB}
    streams = {n: weights + n * per_stream for n in (1, 4, 16)}
    return {"weights_bytes": weights, "streams_bytes": streams, "fits": fits}


def peak_rss_of_load(path: Path, part: str, dtype: str) -> float:
    """Peak host memory (GiB) of a fresh process that loads `part` of the model at `path`: its VmHWM, the
    high-water mark of its own memory (getrusage's maxrss would carry the parent's over the fork)."""
    load_part = "all" if part == "all-then-drop" else part
    code = ("from omnisift.loading import load_model; "
            f"m = load_model({str(path)!r}, device='cpu', dtype={dtype!r}, part={load_part!r}); ")
    if part == "all-then-drop":  # what the encoder did before: the whole thinker, then the language model dropped
        code += "m.thinker.model.language_model = None; m.thinker.lm_head = None; "
    code += ("print(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM:')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=1800)
    return int(out.stdout.strip().splitlines()[-1]) * 1024 / GIB


def measure_parts(path: Path, layers: int) -> dict:
    """Each actor's loaded parameters against the meta count of the same config, and peak host memory."""
    from omnisift.loading import load_model

    meta = actor_parameters(part_parameters(thinker_config(layers)))
    peaks = {dtype: {part: peak_rss_of_load(path, part, dtype) for part in ("towers", "language", "all-then-drop")}
             for dtype in ("bf16", "fp32")}
    loaded = {}
    for actor, part in zip(ACTORS, ("towers", "language"), strict=True):
        model = load_model(path, device="cpu", dtype="bf16", part=part)
        loaded[actor] = sum(p.numel() for p in model.thinker.parameters())
        del model
    return {"meta_count": meta, "loaded_count": loaded, "peak_rss_gib": peaks}


def chunk_640x480(index: int = 0):
    from streams.chunk import AVChunk

    rng = np.random.default_rng(index)
    t = np.arange(SAMPLES_PER_CHUNK) / AUDIO_RATE + 2 * index
    return AVChunk("bench", index, 2.0 * index, rng.integers(0, 256, (4, 480, 640, 3), dtype=np.uint8),
                   (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))


def stage_times(path: Path, dtype: str, reps: int) -> dict:
    """Median seconds per stage of a 640x480 chunk through the live session, omnisift 25% against full,
    and the bytes of the compressed chunk as the encoder actor returns it (pickled as Ray does)."""
    from omnisift.loading import load_model
    from pipeline.session import OmniSession

    model = load_model(path, device="cpu", dtype=dtype)
    out = {}
    for name, kwargs in (("omnisift 25%", {"compressor": "omnisift", "retention": 0.25}),
                         ("full", {"compressor": "full"})):
        session = OmniSession.from_model(model, max_pixels=DEFAULT_MAX_PIXELS, **kwargs)
        rows, sizes = [], []
        for i in range(reps + 1):
            compressed = session.append(chunk_640x480(i))
            rows.append(session.last_timings)
            sizes.append(len(pickle.dumps(compressed, protocol=5)))
        steady = rows[1:]
        out[name] = {stage: statistics.median(getattr(r, stage) for r in steady)
                     for stage in ("preprocess", "encode", "compress", "prefill")}
        out[name]["kept"] = [rows[-1].video_after, rows[-1].audio_after]
        out[name]["chunk_bytes"] = sizes[-1]
        out[name]["kv_bytes_per_token"] = kv_bytes(session) / len(session.context)
    return out


def kv_bytes(session) -> int:
    return sum(layer.keys.numel() * layer.keys.element_size() * 2
               for layer in session.context.cache.layers if layer.is_initialized)


def build(work: Path, layers: int) -> Path:
    from omnisift.tiny import make_real_width_omni

    path = work / f"real-width-{layers}l-vocab"
    if not (path / "config.json").exists():
        make_real_width_omni(path, layers=layers, real_vocab=True, dtype=torch.bfloat16, max_shard_size="1GB")
    return path


def report(r: dict) -> str:
    gib = lambda b: f"{b / GIB:.2f}"  # noqa: E731
    lines = [f"Qwen2.5-Omni-7B thinker, parameters counted on the meta device from the real config "
             f"({r['machine']['date']})", "", "| part | parameters | bf16 GiB |", "|---|---:|---:|"]
    lines += [f"| {k} | {v:,} | {gib(2 * v)} |" for k, v in r["parts"].items()]
    lines += [f"| **{k}** | {v:,} | {gib(2 * v)} |" for k, v in r["actors"].items()]
    lines += ["", f"KV cache per token in bf16: {r['kv_per_token']:,} bytes "
              f"(28 layers x K and V x 4 KV heads x 128 x 2 bytes)", "",
              "| stream setting | tokens/frame | kept/chunk | worst-case context tokens | KV GiB per stream |",
              "|---|---:|---:|---:|---:|"]
    lines += [f"| {s['setting']} | {s['tokens_per_frame']} | {s['kept_per_chunk']} | {s['context_tokens']:,} | "
              f"{gib(s['kv_bytes'])} |" for s in r["streams"]]
    g = r["gpu"]
    lines += ["", f"One GPU holding both actors (weights {gib(g['weights_bytes'])} GiB in bf16) and streams at the "
              "defaults (first row above):", "",
              "| streams | GPU memory GiB (weights + KV) |", "|---:|---:|"]
    lines += [f"| {n} | {gib(b)} |" for n, b in g["streams_bytes"].items()]
    lines += ["", f"Streams that fit ({HEADROOM:.0%} of the GPU for weights and KV): " +
              ", ".join(f"{gb} GB: {n}" for gb, n in g["fits"].items())]
    m = r["measured"]
    peak = m["peak_rss_gib"]
    lines += ["", f"Measured at the real widths, {r['layers']} layer(s) per stack, real vocabulary, checkpoint in bf16 "
              "(peak host memory: VmHWM of a fresh process that loads the part, as bf16 and as fp32):", "",
              "| actor | meta count | loaded | peak GiB, bf16 | peak GiB, fp32 |", "|---|---:|---:|---:|---:|"]
    for (actor, count), part in zip(m["meta_count"].items(), ("towers", "language"), strict=True):
        lines.append(f"| {actor} | {count:,} | {m['loaded_count'][actor]:,} | {peak['bf16'][part]:.2f} | "
                     f"{peak['fp32'][part]:.2f} |")
    lines.append(f"| before: the whole thinker loaded, then the language model dropped | | | "
                 f"{peak['bf16']['all-then-drop']:.2f} | {peak['fp32']['all-then-drop']:.2f} |")
    for dtype, t in r["stage_times"].items():
        lines += ["", f"One 640x480 chunk (391 tokens a frame) through the live session, {dtype} on this CPU, "
                  f"{r['layers']} layer(s) per stack, median seconds:", "",
                  "| compressor | preprocess | encode | compress | prefill | kept (video + audio) | chunk between "
                  "actors | KV bytes/token |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for name, s in t.items():
            lines.append(f"| {name} | {s['preprocess']:.3f} | {s['encode']:.3f} | {s['compress']:.3f} | "
                         f"{s['prefill']:.3f} | {s['kept'][0]} + {s['kept'][1]} | {s['chunk_bytes'] / 2**20:.2f} MiB | "
                         f"{s['kv_bytes_per_token']:,.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=1, help="layers per stack of the measured model")
    parser.add_argument("--work", type=Path, default=Path("/tmp/omnisift-real"))
    parser.add_argument("--reps", type=int, default=3, help="chunks timed per compressor and dtype")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    started = time.perf_counter()
    parts = part_parameters(thinker_config())
    actors = actor_parameters(parts)
    streams = stream_contexts()
    path = build(args.work, args.layers)
    results = {
        "machine": machine(), "layers": args.layers, "parts": parts, "actors": actors,
        "kv_per_token": kv_bytes_per_token(), "streams": streams, "gpu": gpu_table(actors, streams[0]["kv_bytes"]),
        "measured": measure_parts(path, args.layers),
        "stage_times": {dtype: stage_times(path, dtype, args.reps) for dtype in ("bf16", "fp32")},
        "seconds": None, "max_pixels_released": MAX_PIXELS_7B,
    }
    results["seconds"] = time.perf_counter() - started
    print(report(results))
    print(f"\n({results['seconds']:.0f} s; peak RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GiB)")
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
