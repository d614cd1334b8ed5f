"""Benchmark of the OmniSIFT core at Qwen2.5-Omni-7B width (D = 3584), random tensors, real VGAS module.

    python -m benchmarks.method --out bench.json

1. Per chunk: `stvp` on two frames of 144 / 256 / 576 tokens + `VisionGuidedAudioSelector(3584)` on the
   kept video tokens and 50 audio tokens + `select_audio`, the work the streaming path does per chunk.
2. Whole sequences: `compress_sequence` over 1 / 5 / 15 / 30 minutes of audio+video laid out as the model
   lays it out (docs/design.md section 2: `<|vision_bos|><|audio_bos|>`, per 2-second chunk two frames of video
   tokens then 50 audio tokens, TMRoPE positions `(st + 25 g, st + r, st + c)` / `st + k`), to show the
   cost grows linearly (time per minute of media stays flat).

Prints a markdown table (machine, date, settings) and writes the figures as JSON to `--out`.
Medians over `--reps` repetitions after one warm-up run. Not a test: nothing here asserts timings.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import time
from pathlib import Path

import torch

from omnisift.qwen_sizes import HIDDEN_7B as D_MODEL
from omnisift.selector import VisionGuidedAudioSelector, select_audio
from omnisift.sequence import compress_sequence
from omnisift.stvp import stvp
from omnisift.token_layout import AUDIO_TOKENS_PER_CHUNK
from pipeline.offline.machine import machine

VIDEO_ID, AUDIO_ID, TEXT_ID = 151656, 151646, 100
VISION_BOS, AUDIO_BOS, AUDIO_EOS, VISION_EOS = 151652, 151647, 151648, 151653
PREFIX_TEXT, SUFFIX_TEXT = 40, 20  # system prompt before the clip, question + assistant header after it


def median_time(fn, reps: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of `fn()` in seconds, after `warmup` untimed runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


@torch.inference_mode()
def bench_chunk(selector: VisionGuidedAudioSelector, tokens_per_frame: int, reps: int, rho_video: float,
                rho_audio: float, dtype: torch.dtype) -> dict:
    """STVP + VGAS + select_audio on one 2-second chunk (2 frames, 50 audio tokens)."""
    g = torch.Generator().manual_seed(tokens_per_frame)
    f1 = torch.randn(tokens_per_frame, D_MODEL, generator=g).to(dtype)
    f2 = (f1.float() + 0.5 * torch.randn(tokens_per_frame, D_MODEL, generator=g)).to(dtype)
    audio = torch.randn(AUDIO_TOKENS_PER_CHUNK, D_MODEL, generator=g).to(dtype)
    kept_video = {}

    def run_stvp():
        keep1, keep2 = stvp(f1, f2, rho_video)
        kept_video["v"] = torch.cat([f1[keep1], f2[keep2]])

    def run_vgas():
        select_audio(selector(kept_video["v"], audio), rho_audio)

    def run_both():
        run_stvp()
        run_vgas()

    total, _ = median_time(run_both, reps, warmup=3)
    t_stvp, _ = median_time(run_stvp, reps, warmup=1)
    t_vgas, _ = median_time(run_vgas, reps, warmup=1)
    return {"tokens_per_frame": tokens_per_frame, "kept_video_tokens": int(kept_video["v"].shape[0]),
            "stvp_ms": 1e3 * t_stvp, "vgas_ms": 1e3 * t_vgas, "total_ms": 1e3 * total}


def interleaved_sequence(minutes: float, tokens_per_frame: int, grid_cols: int) -> tuple[torch.Tensor, torch.Tensor]:
    """input_ids [1, L] and TMRoPE position_ids [3, 1, L] of a clip in the Qwen2.5-Omni interleaved layout."""
    seconds = int(round(minutes * 60))
    chunks = math.ceil(seconds / 2)
    ids, pos = [TEXT_ID] * PREFIX_TEXT + [VISION_BOS, AUDIO_BOS], [[p] * 3 for p in range(PREFIX_TEXT + 2)]
    ids_t = [torch.tensor(ids)]
    pos_t = [torch.tensor(pos).T]
    st = PREFIX_TEXT + 2
    k = torch.arange(tokens_per_frame)
    rows, cols = k // grid_cols, k % grid_cols
    for c in range(chunks):
        for g in range(2 * c, min(2 * c + 2, seconds)):  # one grid step per second
            ids_t.append(torch.full((tokens_per_frame,), VIDEO_ID))
            pos_t.append(torch.stack([torch.full_like(k, st + 25 * g), st + rows, st + cols]))
        a = torch.arange(AUDIO_TOKENS_PER_CHUNK * c, min(AUDIO_TOKENS_PER_CHUNK * (c + 1), 25 * seconds))
        ids_t.append(torch.full((len(a),), AUDIO_ID))
        pos_t.append((st + a).expand(3, -1))
    end = int(torch.cat(pos_t, 1).max()) + 1
    tail = torch.arange(end, end + 2 + SUFFIX_TEXT)
    ids_t.append(torch.tensor([AUDIO_EOS, VISION_EOS] + [TEXT_ID] * SUFFIX_TEXT))
    pos_t.append(tail.expand(3, -1))
    return torch.cat(ids_t).unsqueeze(0), torch.cat(pos_t, 1).unsqueeze(1)


def bench_sequence(selector: VisionGuidedAudioSelector, minutes: float, tokens_per_frame: int, grid_cols: int,
                   reps: int, rho_video: float, rho_audio: float, dtype: torch.dtype) -> dict:
    """compress_sequence over one clip of `minutes` of audio+video."""
    input_ids, position_ids = interleaved_sequence(minutes, tokens_per_frame, grid_cols)
    length = input_ids.shape[1]
    embeds = torch.empty(1, length, D_MODEL, dtype=dtype)
    embeds.normal_(generator=torch.Generator().manual_seed(0))

    def run():
        return compress_sequence(embeds, input_ids, position_ids, video_token_id=VIDEO_ID, audio_token_id=AUDIO_ID,
                                 selector=selector, rho_video=rho_video, rho_audio=rho_audio)

    med, times = median_time(run, reps, warmup=1)
    keep = run()
    av = (input_ids == VIDEO_ID) | (input_ids == AUDIO_ID)
    return {
        "minutes": minutes, "tokens": length, "av_tokens": int(av.sum()),
        "kept_av_fraction": float((keep & av).sum() / av.sum()), "median_s": med, "times_s": times,
        "s_per_minute": med / minutes, "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def markdown(result: dict) -> str:
    m, s = result["machine"], result["settings"]
    lines = [
        f"OmniSIFT core at D = {D_MODEL} on {m['cpu']} ({m['logical_cores']} logical cores, {m['threads']} torch "
        f"threads), torch {m['torch']}, CUDA {'yes' if m['cuda'] else 'no'}, {m['date']}. "
        f"Load average at start {m['load_average_1min']} (other jobs share the CPU when > 0). "
        f"rho_video = {s['rho_video']}, rho_audio = {s['rho_audio']}; medians of {s['reps']} runs after a warm-up.",
        "",
        f"Per 2-second chunk (2 frames + 50 audio tokens, {s['chunk_dtype']} tokens, fp32 VGAS weights):",
        "",
        "| tokens / frame | kept video tokens | STVP (ms) | VGAS + select (ms) | STVP + VGAS (ms) |",
        "|---:|---:|---:|---:|---:|",
    ]
    for r in result["chunk"]:
        lines.append(f"| {r['tokens_per_frame']} | {r['kept_video_tokens']} | {r['stvp_ms']:.2f} | "
                     f"{r['vgas_ms']:.2f} | {r['total_ms']:.2f} |")
    lines += [
        "",
        f"`compress_sequence` over whole clips ({s['sequence_tokens_per_frame']} tokens / frame, "
        f"{s['sequence_dtype']} embeddings, fp32 VGAS weights, batch 1, "
        f"{s['sequence_reps']} runs per size):",
        "",
        "| media (min) | sequence tokens | audio+video tokens | kept | median time (s) | s per media minute "
        "| peak RSS (GB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["sequence"]:
        lines.append(f"| {r['minutes']:g} | {r['tokens']:,} | {r['av_tokens']:,} | "
                     f"{100 * r['kept_av_fraction']:.1f}% | "
                     f"{r['median_s']:.2f} | {r['s_per_minute']:.3f} | {r['peak_rss_gb']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.method", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    parser.add_argument("--reps", type=int, default=20, help="timed runs per chunk size")
    parser.add_argument("--sequence-reps", type=int, default=3, help="timed runs per clip length")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 5, 15, 30])
    parser.add_argument("--chunk-tokens", type=int, nargs="+", default=[144, 256, 576])
    parser.add_argument("--sequence-tokens-per-frame", type=int, default=144,
                        help="a square grid; 144 (12 x 12) needs ~28 GB peak at 30 min, 64 (8 x 8) ~15 GB")
    parser.add_argument("--sequence-dtype", choices=["bf16", "fp32"], default="bf16",
                        help="embedding dtype of the whole-clip runs (bf16 halves memory: 30 min is ~2.2 GB)")
    parser.add_argument("--chunk-dtype", choices=["bf16", "fp32"], default="fp32")
    parser.add_argument("--rho-video", type=float, default=0.7)
    parser.add_argument("--rho-audio", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dtypes = {"bf16": torch.bfloat16, "fp32": torch.float32}
    cols = int(math.isqrt(args.sequence_tokens_per_frame))
    if cols * cols != args.sequence_tokens_per_frame:
        parser.error("--sequence-tokens-per-frame must be a square (a rows x cols grid with rows == cols)")

    torch.manual_seed(0)
    selector = VisionGuidedAudioSelector(D_MODEL).eval()
    result = {
        "machine": machine(),
        "settings": {"d_model": D_MODEL, "rho_video": args.rho_video, "rho_audio": args.rho_audio, "reps": args.reps,
                     "sequence_reps": args.sequence_reps, "chunk_dtype": args.chunk_dtype,
                     "sequence_dtype": args.sequence_dtype,
                     "sequence_tokens_per_frame": args.sequence_tokens_per_frame,
                     "selector_parameters": sum(p.numel() for p in selector.parameters())},
        "chunk": [bench_chunk(selector, n, args.reps, args.rho_video, args.rho_audio, dtypes[args.chunk_dtype])
                  for n in args.chunk_tokens],
        "sequence": [],
    }
    for minutes in sorted(args.minutes):
        result["sequence"].append(bench_sequence(selector, minutes, args.sequence_tokens_per_frame, cols,
                                                 args.sequence_reps, args.rho_video, args.rho_audio,
                                                 dtypes[args.sequence_dtype]))
        print(f"  {minutes:g} min: {result['sequence'][-1]['median_s']:.2f} s", flush=True)
    table = markdown(result)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({**result, "table": table}, indent=2))
    return result


if __name__ == "__main__":
    main()
