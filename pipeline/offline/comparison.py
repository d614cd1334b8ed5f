"""One harness comparing every compressor side by side in one run (`omnisift bench`).

For each compressor and retention target:
- its own cost per chunk at Qwen2.5-Omni-7B width (D = 3584 random tensors: two frames of
  `tokens_per_frame` tokens, 50 audio tokens; OmniZip also runs its separate pass over a random
  7B-shaped audio tower, 1280 wide, of `tower_layers` layers, on 2 s of log-mel);
- tokens kept, per chunk, over audio + video;
- prefill time per chunk of the live session and the share saved against `full`;
- the end-to-end real-time factor (wall time of `append` / media time) on a live stream through
  `OmniSession` (preprocess, encode, compress, prefill), the first chunk excluded;
- memory over the stream: KV-cache tokens after every chunk, and what they would take in a 7B's
  bf16 cache (28 layers x 2 x 4 KV heads x 128 x 2 bytes = 56 KiB per token).

Writes `baselines.json`, `baselines.md` (the table) and two PNG plots (latency against retention,
memory against time) into `out`. Not a test: nothing asserts timings.
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from omnisift.loading import load_model
from omnisift.qwen_sizes import HIDDEN_7B as D_MODEL
from omnisift.ratios import ratios_for_retention
from omnisift.selector import VisionGuidedAudioSelector
from omnisift.tiny import resolve_model
from omnisift.token_layout import AUDIO_TOKENS_PER_CHUNK
from operators.chunks import EncodedChunk
from operators.compress import COMPRESSORS, make_compressor
from pipeline.offline.machine import machine
from pipeline.session import OmniSession
from streams.chunk import AUDIO_RATE, SAMPLES_PER_CHUNK, AVChunk

METHODS = ("full", "random", "omnisift", "stvp", "vgas", "dycoke", "timechat", "vidcom2", "omnizip")
KV_BYTES_PER_TOKEN_7B = 28 * 2 * 4 * 128 * 2


@dataclass
class BenchConfig:
    methods: tuple[str, ...] = METHODS
    retentions: tuple[float, ...] = (0.25, 0.35)
    model: str | None = None  # None: the tiny random Qwen2.5-Omni
    selector: str | None = None  # a selector checkpoint for a base Qwen2.5-Omni
    dtype: str | None = None
    chunks: int = 20
    size: int = 224
    window_seconds: float | None = 20.0
    tokens_per_frame: int = 256
    reps: int = 5
    tower_layers: int = 4
    extra: dict = field(default_factory=dict)


def audio_tower_7b(layers: int) -> torch.nn.Module:
    """A random audio tower with Qwen2.5-Omni-7B's widths and `layers` layers (the 7B has 32)."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig,
    )
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoder,
    )

    config = Qwen2_5OmniAudioEncoderConfig(d_model=1280, encoder_layers=layers, encoder_attention_heads=20,
                                           encoder_ffn_dim=5120, output_dim=D_MODEL, n_window=100)
    config._attn_implementation = "sdpa"
    return Qwen2_5OmniAudioEncoder(config).eval()


@torch.inference_mode()
def cost_per_chunk(name: str, retention: float, config: BenchConfig, selector, tower) -> dict:
    """Median ms of `compressor.process` on 7B-wide random chunks, and what it kept."""
    g = torch.Generator().manual_seed(0)
    side = int(config.tokens_per_frame ** 0.5)
    n_p = side * side
    ratios = ratios_for_retention(retention, n_p)
    comp = make_compressor(name, ratios, selector)
    chunks = []
    for i in range(config.reps + 1):
        f1 = torch.randn(n_p, D_MODEL, generator=g)
        f2 = f1 + 0.5 * torch.randn(n_p, D_MODEL, generator=g)
        chunks.append(EncodedChunk(i, torch.stack([f1, f2]), torch.randn(AUDIO_TOKENS_PER_CHUNK, D_MODEL, generator=g),
                                   (side, side), audio_features=torch.randn(128, 200, generator=g),
                                   audio_tower=tower))
    times, out = [], None
    for chunk in chunks:
        start = time.perf_counter()
        out = comp.process(chunk)
        times.append(time.perf_counter() - start)
    return {"ms": statistics.median(times[1:]) * 1000, "video": [out.video_after, out.video_before],
            "audio": [out.audio_after, out.audio_before]}


def noise_chunks(n: int, size: int, seed: int = 0) -> list[AVChunk]:
    """`n` chunks of random frames [4, size, size, 3] and a tone whose pitch and loudness change per chunk."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frames = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
        t = np.arange(SAMPLES_PER_CHUNK) / AUDIO_RATE + 2 * i
        audio = (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) * (1 + (i % 3))).astype(np.float32)
        out.append(AVChunk("bench", i, 2.0 * i, frames, audio))
    return out


def live_stream(name: str, retention: float, model, config: BenchConfig) -> dict:
    """The compressor live in `OmniSession` over a synthetic stream: RTF, prefill, kept, cache."""
    session = OmniSession.from_model(model, compressor=name, retention=retention, window_seconds=config.window_seconds,
                                     max_pixels=config.size * config.size)
    walls, rows = [], []
    for chunk in noise_chunks(config.chunks, config.size):
        start = time.perf_counter()
        session.append(chunk)
        walls.append(time.perf_counter() - start)
        rows.append(session.last_timings)
    steady = rows[1:] or rows
    kept = sum(r.video_after + r.audio_after for r in rows)
    before = sum(r.video_before + r.audio_before for r in rows)
    return {
        "rtf": sum(walls[1:] or walls) / (2.0 * len(steady)),
        "prefill_ms": statistics.median(r.prefill for r in steady) * 1000,
        "compress_ms": statistics.median(r.compress for r in steady) * 1000,
        "kept": kept / before,
        "video_per_chunk": [sum(r.video_after for r in rows) / len(rows), rows[0].video_before],
        "audio_per_chunk": [sum(r.audio_after for r in rows) / len(rows), rows[0].audio_before],
        "media_seconds": [2.0 * (r.index + 1) for r in rows],
        "cache_tokens": [r.cache_tokens for r in rows],
    }


def run_bench(config: BenchConfig) -> dict:
    """Every method at every retention, side by side; returns the JSON-able results."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path, _ = resolve_model(config.model)
    needs_selector = any(COMPRESSORS[m].needs_selector for m in config.methods)
    model = load_model(path, selector=config.selector, dtype=config.dtype, compress=needs_selector)  # shared
    torch.manual_seed(0)
    selector = VisionGuidedAudioSelector(D_MODEL).eval()
    tower = audio_tower_7b(config.tower_layers) if "omnizip" in config.methods else None
    rows = []
    for retention in config.retentions:
        full_prefill = None
        for name in sorted(config.methods, key=lambda m: m != "full"):  # full first: the reference
            row = {"method": name, "retention": retention,
                   "cost_7b": cost_per_chunk(name, retention, config, selector, tower),
                   "live": live_stream(name, retention, model, config)}
            if name == "full":
                full_prefill = row["live"]["prefill_ms"]
            row["prefill_saved"] = None if full_prefill is None else 1 - row["live"]["prefill_ms"] / full_prefill
            rows.append(row)
    return {"machine": machine(), "model": config.model or "tiny random Qwen2.5-Omni",
            "config": {k: v for k, v in config.__dict__.items() if k != "extra"}, "rows": rows}


def markdown_table(results: dict) -> str:
    c = results["config"]
    lines = [
        (f"Compressors side by side ({results['model']}, live stream of {c['chunks']} chunks at "
         f"{c['size']}x{c['size']}, "
        f"window {c['window_seconds']} s; cost at D=3584 with {c['tokens_per_frame']} tokens/frame, median of "
        f"{c['reps']}, OmniZip's tower pass over {c['tower_layers']} of the 7B's 32 audio layers; "
        f"{results['machine']['cpu']}, {results['machine']['threads']} threads, torch {results['machine']['torch']}, "
        f"{results['machine']['date']})"),
        "",
        ("| method | target | kept (live) | video/chunk | audio/chunk | cost/chunk @7B ms | prefill ms "
         "| prefill saved | RTF | cache tokens (end) | 7B KV MiB (end) |"),
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        live, cost = r["live"], r["cost_7b"]
        saved = "-" if r["prefill_saved"] is None or r["method"] == "full" else f"{r['prefill_saved']:.0%}"
        end = live["cache_tokens"][-1]
        lines.append(
            f"| {r['method']} | {r['retention']:.0%} | {live['kept']:.1%} | {live['video_per_chunk'][0]:.1f}/"
            f"{live['video_per_chunk'][1]} | {live['audio_per_chunk'][0]:.1f}/{live['audio_per_chunk'][1]} | "
            f"{cost['ms']:.2f} | {live['prefill_ms']:.1f} | {saved} | {live['rtf']:.3f} | {end} | "
            f"{end * KV_BYTES_PER_TOKEN_7B / 2**20:.0f} |")
    return "\n".join(lines) + "\n"


def plot(results: dict, out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, paths = results["rows"], []
    methods = list(dict.fromkeys(r["method"] for r in rows))
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in methods:
        pts = sorted((r["live"]["kept"], r["cost_7b"]["ms"]) for r in rows if r["method"] == m)
        ax.plot(*zip(*pts, strict=True), marker="o", label=m)
    ax.set(xlabel="tokens kept (audio + video)", ylabel="compressor ms / chunk at D=3584", yscale="log",
           title="Compressor latency against retention")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "latency_vs_retention.png")
    fig.savefig(paths[-1], dpi=80)
    fig, ax = plt.subplots(figsize=(6, 4))
    first = results["rows"][0]["retention"]
    for r in rows:
        if r["retention"] == first:
            ax.plot(r["live"]["media_seconds"], [t * KV_BYTES_PER_TOKEN_7B / 2**20 for t in r["live"]["cache_tokens"]],
                    label=r["method"])
    ax.set(xlabel="media time (s)", ylabel="KV cache, 7B bf16 equivalent (MiB)",
           title=f"Memory over the stream (target {first:.0%})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    paths.append(out / "memory_vs_time.png")
    fig.savefig(paths[-1], dpi=80)
    plt.close("all")
    return paths


BEGIN_MARK = "<!-- omnisift bench: begin (regenerated by `omnisift bench --benchmarks-md`) -->"
END_MARK = "<!-- omnisift bench: end -->"


def update_benchmarks_md(path: Path, table: str, command: str) -> None:
    """Replace the bench section of BENCHMARKS.md (between the markers) with a fresh table; the
    section is appended when the file has none yet. Everything else in the file is left as it is."""
    text = path.read_text() if path.exists() else ""
    section = f"{BEGIN_MARK}\n`{command}`\n\n{table.rstrip()}\n{END_MARK}"
    if BEGIN_MARK in text and END_MARK in text:
        head, rest = text.split(BEGIN_MARK, 1)
        text = head + section + rest.split(END_MARK, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def write_outputs(results: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    (out / "baselines.json").write_text(json.dumps(results, indent=1))
    (out / "baselines.md").write_text(markdown_table(results))
    return [out / "baselines.json", out / "baselines.md", *plot(results, out)]
