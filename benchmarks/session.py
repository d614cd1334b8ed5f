"""Benchmark of the live session: per-chunk time by stage, tokens kept, and how per-chunk log-mel
normalisation differs from whole-clip normalisation.

    python -m benchmarks.session [--model PATH_OR_ID] [--selector FILE] [--dtype bf16] [--chunks 20]
                                 [--out results.json]

Without --model it builds the tiny random Qwen2.5-Omni (CPU figures of the code path, not of a 7B). The
model is loaded once; every session of the run shares it, so one thinker is in memory at a time. A base
Qwen2.5-Omni takes its OmniSIFT selector from `--selector`.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from operators.preprocess import log_mel
from pipeline.offline.comparison import noise_chunks
from pipeline.session import OmniSession
from streams.chunk import AVChunk

REPEATS = 7


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


def cache_bytes(session: OmniSession) -> int:
    """Bytes held by the live KV cache."""
    return sum(layer.keys.numel() * layer.keys.element_size() * 2
               for layer in session.context.cache.layers if layer.is_initialized)


def question_latency(session: OmniSession, chunks: list[AVChunk], checkpoints: list[int]) -> list[dict]:
    """Median latency of `score` (one forward over question + answer) and of a 4-token `ask` as the
    context grows; the session keeps every chunk (no window). Median of `REPEATS` runs each."""
    rows, fed = [], 0
    for target in checkpoints:
        for chunk in chunks[fed:target]:
            session.append(chunk)
        fed = target
        score_t, ask_t = [], []
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            session.score("What is moving on the screen?", "A square")
            t1 = time.perf_counter()
            session.ask("What is moving on the screen?", max_new_tokens=4)
            score_t.append(t1 - t0)
            ask_t.append(time.perf_counter() - t1)
        rows.append({"chunks": target, "context_tokens": len(session.context),
                     "score_ms": statistics.median(score_t) * 1000, "ask_ms": statistics.median(ask_t) * 1000})
    return rows


def memory_over_stream(model, chunks: list[AVChunk], window_seconds: float | None, size: int) -> list[dict]:
    """KV-cache size while a stream plays, with and without a window (`model`: a loaded OmniModel)."""
    session = OmniSession.from_model(model, window_seconds=window_seconds, max_pixels=size * size)
    rows = []
    for i, chunk in enumerate(chunks):
        session.append(chunk)
        if (i + 1) % 10 == 0:
            rows.append({"media_seconds": 2 * (i + 1), "cache_tokens": len(session.context),
                         "cache_mb": cache_bytes(session) / 2**20})
    return rows


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
    parser.add_argument("--selector", help="OmniSIFT selector checkpoint for a base Qwen2.5-Omni model")
    parser.add_argument("--dtype", help="bf16, fp16 or fp32 (default: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--device")
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels")
    parser.add_argument("--long-chunks", type=int, default=120, help="chunks for latency and memory runs")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    from omnisift.loading import load_model
    from omnisift.tiny import resolve_model

    path, _ = resolve_model(args.model, fallback_tiny=False)
    model = load_model(path, selector=args.selector, dtype=args.dtype, device=args.device)
    chunks = noise_chunks(args.chunks, args.size)
    results = {"machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
                          f"torch {torch.__version__}", "date": time.strftime("%Y-%m-%d"),
               "model": args.model or "tiny", "dtype": str(model.dtype)}
    for name in ("full", "omnisift"):
        session = OmniSession.from_model(model, compressor=name, max_pixels=args.size * args.size)
        results[name] = stage_times(session, chunks)
    results["mel"] = mel_normalisation_gap(session, chunks)
    long_chunks = noise_chunks(args.long_chunks, args.size, seed=1)
    latency_session = OmniSession.from_model(model, max_pixels=args.size * args.size)
    results["question_latency"] = question_latency(
        latency_session, long_chunks, [n for n in (5, 20, 60, 120) if n <= args.long_chunks])
    results["memory"] = {str(w): memory_over_stream(model, long_chunks, w, args.size) for w in (None, 60.0)}
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
    print(f"\nQuestion latency against context length (omnisift, no window; median of {REPEATS}):\n")
    print("| chunks | context tokens | score ms | 4-token ask ms |")
    print("|---:|---:|---:|---:|")
    for r in results["question_latency"]:
        print(f"| {r['chunks']} | {r['context_tokens']} | {r['score_ms']:.1f} | {r['ask_ms']:.1f} |")
    print("\nKV-cache size over the stream (omnisift):\n")
    print("| media s | no window: tokens | MB | 60 s window: tokens | MB |")
    print("|---:|---:|---:|---:|---:|")
    for a, b in zip(results["memory"]["None"], results["memory"]["60.0"], strict=True):
        print(f"| {a['media_seconds']} | {a['cache_tokens']} | {a['cache_mb']:.2f} | {b['cache_tokens']} | "
              f"{b['cache_mb']:.2f} |")
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
