"""Benchmark of the live session: per-chunk time by stage, tokens kept, and how per-chunk log-mel
normalisation differs from whole-clip normalisation.

    python -m pipeline.bench [--model PATH_OR_ID] [--chunks 20] [--out results.json]

Without --model it builds the tiny random Qwen2.5-Omni (CPU figures of the code path, not of a 7B).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from operators.preprocess import log_mel
from pipeline.session import OmniSession
from streams.chunk import AVChunk


def _chunks(n: int, size: int, seed: int = 0) -> list[AVChunk]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        frames = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
        t = np.arange(32000) / 16000 + 2 * i
        audio = (0.3 * np.sin(2 * np.pi * (200 + 40 * i) * t) * (1 + (i % 3))).astype(np.float32)
        out.append(AVChunk("bench", i, 2.0 * i, frames, audio))
    return out


def stage_times(session: OmniSession, chunks: list[AVChunk]) -> dict:
    rows = []
    for chunk in chunks:
        session.append(chunk)
        rows.append(session.last_timings)
    rows = rows[1:]  # the first chunk pays one-off costs
    med = {k: statistics.median(getattr(r, k) for r in rows) * 1000
           for k in ("preprocess", "encode", "compress", "prefill")}
    last = rows[-1]
    return {"median_ms": med, "video": [last.video_before, last.video_after],
            "audio": [last.audio_before, last.audio_after], "cache_tokens": last.cache_tokens}


def mel_normalisation_gap(session: OmniSession, chunks: list[AVChunk]) -> dict:
    """Per-chunk vs whole-clip log-mel features and audio-tower outputs of the same audio."""
    filters = session.preprocessor.mel_filters
    audio = np.concatenate([c.audio for c in chunks])
    whole = log_mel(torch.from_numpy(audio), filters)
    per_chunk = torch.cat([log_mel(torch.from_numpy(c.audio), filters) for c in chunks], dim=1)
    thinker = session.model.thinker

    def tower(features):
        mask = torch.ones(1, features.shape[1], dtype=torch.long)
        with torch.no_grad():
            return thinker.model.get_audio_features(features.unsqueeze(0), mask, return_dict=True).last_hidden_state

    a, b = tower(whole[:, : per_chunk.shape[1]]), tower(per_chunk)
    cos = torch.nn.functional.cosine_similarity(a, b, dim=-1)
    return {"feature_max_abs_diff": float((whole[:, : per_chunk.shape[1]] - per_chunk).abs().max()),
            "feature_mean_abs_diff": float((whole[:, : per_chunk.shape[1]] - per_chunk).abs().mean()),
            "tower_cosine_min": float(cos.min()), "tower_cosine_mean": float(cos.mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    model = args.model
    if model is None:
        from omnisift.testing import make_tiny_omni

        model = str(make_tiny_omni(Path(tempfile.mkdtemp(prefix="bench-tiny-"))))
    chunks = _chunks(args.chunks, args.size)
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                          f"torch {torch.__version__}", "date": time.strftime("%Y-%m-%d"), "model": args.model or "tiny"}
    for name in ("full", "omnisift"):
        session = OmniSession.from_pretrained(model, compressor=name, max_pixels=args.size * args.size)
        results[name] = stage_times(session, chunks)
    results["mel"] = mel_normalisation_gap(session, chunks)
    print(f"Live session per chunk ({results['model']} model, {args.size}x{args.size} frames, "
          f"{args.chunks} chunks, median ms; {results['machine']}; {results['date']})\n")
    print("| compressor | preprocess | encode | compress | prefill | video kept | audio kept |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in ("full", "omnisift"):
        r = results[name]
        m = r["median_ms"]
        print(f"| {name} | {m['preprocess']:.1f} | {m['encode']:.1f} | {m['compress']:.1f} | {m['prefill']:.1f} "
              f"| {r['video'][1]}/{r['video'][0]} | {r['audio'][1]}/{r['audio'][0]} |")
    mel = results["mel"]
    print(f"\nPer-chunk vs whole-clip log-mel: max |diff| {mel['feature_max_abs_diff']:.3f}, mean |diff| "
          f"{mel['feature_mean_abs_diff']:.4f}; audio-tower output cosine min {mel['tower_cosine_min']:.4f}, "
          f"mean {mel['tower_cosine_mean']:.4f}")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
