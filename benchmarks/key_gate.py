"""Memory and time of the attention-key gate (`omnisift.key_gate`) for one attention layer, with the
queries in checkpointed blocks of `QUERY_BLOCK` against all queries at once.

Each measurement runs in a fresh process (peak RSS is per process); the two settings alternate, and
medians are printed:

    python -m benchmarks.key_gate --length 4096 --heads 8 --reps 3
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

import torch

WHOLE = 1 << 30  # a block larger than any sequence: every query at once


def measure(length: int, heads: int, head_dim: int, block: int) -> dict:
    """One forward + backward in this process: seconds and peak RSS growth in MB."""
    from omnisift import key_gate

    key_gate.QUERY_BLOCK = block
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, heads, length, head_dim, requires_grad=True) for _ in range(3))
    gate = (torch.rand(1, length) > 0.7).float().requires_grad_(True)  # 30% of keys open
    allowed = torch.ones(length, length, dtype=torch.bool).tril()[None, None]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    out, _ = key_gate.key_gated_attention(None, q, k, v, allowed, scaling=head_dim ** -0.5, key_gate=gate)
    out.sum().backward()
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return {"seconds": seconds, "peak_mb": (peak - before) / 1024}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.key_gate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=4096, help="tokens in the sequence")
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)  # child process: one block size
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(measure(args.length, args.heads, args.head_dim, args.one)))
        return 0
    from omnisift.key_gate import QUERY_BLOCK

    runs: dict[int, list[dict]] = {WHOLE: [], QUERY_BLOCK: []}
    for _ in range(args.reps):
        for block, results in runs.items():
            cmd = [sys.executable, "-m", "benchmarks.key_gate", "--length", str(args.length), "--heads",
                   str(args.heads), "--head-dim", str(args.head_dim), "--one", str(block)]
            results.append(json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout))
    print(f"one layer, L={args.length}, heads={args.heads}, head dim {args.head_dim}, forward+backward, "
          f"median of {args.reps}")
    print("| queries at once | seconds | peak RSS growth (MB) |\n|---|---|---|")
    for block, rs in runs.items():
        label = "all" if block == WHOLE else str(block)
        print(f"| {label} | {statistics.median(r['seconds'] for r in rs):.2f} | "
              f"{statistics.median(r['peak_mb'] for r in rs):.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
