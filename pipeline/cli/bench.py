"""`omnisift bench`: every compressor side by side in one run (cost at 7B width, tokens kept, prefill
saved, real-time factor, memory over a stream); writes JSON, a markdown table and PNG plots."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "compare compressors side by side (JSON, markdown table, PNG plots)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--methods", nargs="+", default=None,
                        help="compressors to compare (default: all of the comparison's, full first)")
    parser.add_argument("--retentions", nargs="+", type=float, default=[0.25, 0.35])
    parser.add_argument("--model", help="hub id or local path (default: the tiny random model)")
    parser.add_argument("--selector", help="OmniSIFT selector checkpoint for a base Qwen2.5-Omni model")
    parser.add_argument("--dtype", help="bf16, fp16 or fp32 (default: bf16 on a GPU, fp32 on the CPU)")
    parser.add_argument("--chunks", type=int, default=20, help="chunks of the live stream")
    parser.add_argument("--size", type=int, default=224, help="frame side in pixels of the live stream")
    parser.add_argument("--window", type=float, default=20.0, help="window_seconds of the live session")
    parser.add_argument("--tokens-per-frame", type=int, default=256, help="for the cost at D=3584")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--tower-layers", type=int, default=4, help="layers of the 7B-wide audio tower (OmniZip)")
    parser.add_argument("--out", type=Path, default=Path("bench-out"))
    parser.add_argument("--benchmarks-md", type=Path,
                        help="also write the table into this BENCHMARKS.md, replacing the previous bench section")


def first_line(args: argparse.Namespace) -> str:
    methods = "every compressor" if args.methods is None else f"{len(args.methods)} compressor(s)"
    return (f"omnisift bench: {methods} at {len(args.retentions)} retention(s) on "
            f"{args.model or 'the tiny random model'}; each row prints as it finishes")


def run(args: argparse.Namespace) -> int:
    import shlex
    import sys

    from operators.compress import COMPRESSORS
    from pipeline.offline.comparison import (
        METHODS,
        BenchConfig,
        results_of,
        run_bench,
        table_head,
        table_row,
        update_benchmarks_md,
        write_outputs,
    )

    if args.methods is None:
        args.methods = list(METHODS)
    unknown = [m for m in args.methods if m not in COMPRESSORS]
    if unknown:
        raise ValueError(f"unknown compressor(s) {', '.join(unknown)}; choose from {', '.join(sorted(COMPRESSORS))}")
    if args.chunks < 2:
        raise ValueError(f"--chunks must be at least 2, got {args.chunks}")
    config = BenchConfig(tuple(args.methods), tuple(args.retentions), args.model, args.selector, args.dtype,
                         args.chunks, args.size, args.window, args.tokens_per_frame, args.reps, args.tower_layers)
    started = results_of(config, [])  # the machine as the run starts: the caption printed now and written later
    print("\n".join(table_head(started)), flush=True)
    rows: list[dict] = []
    try:
        results = run_bench(config, on_row=lambda row: print(table_row(row), flush=True), rows=rows)
    except KeyboardInterrupt:
        total = len(config.methods) * len(config.retentions)
        if not rows:
            print(f"interrupted before the first row finished: nothing written to {args.out}", flush=True)
        else:
            paths = write_outputs({**results_of(config, rows), "machine": started["machine"]}, args.out)
            print(f"interrupted: {len(rows)} of {total} rows finished, written to " + ", ".join(map(str, paths)),
                  flush=True)
        raise
    paths = write_outputs({**results, "machine": started["machine"]}, args.out)
    table = (args.out / "baselines.md").read_text()
    if args.benchmarks_md:
        update_benchmarks_md(args.benchmarks_md, table, "omnisift " + shlex.join(sys.argv[1:]))
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0
