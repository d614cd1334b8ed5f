"""How many STVP decisions change when saliency is computed in bf16 (the release) instead of fp32 (default).

    python -m benchmarks.saliency_dtype

Ten random pairs of 128-token bf16 frames (2,560 keep flags per setting): tokens spread by `sigma` around
one shared direction, the second frame the first plus half that noise. Both arithmetics see the same bf16
tokens; the table counts keep flags that differ (a swapped pair of tokens counts twice). The closer the
tokens, the closer their saliencies, and the more of them bf16 rounds to one value.
"""

from __future__ import annotations

import argparse

import torch

from omnisift.stvp import stvp


def differing_flags(d: int, sigma: float, pairs: int = 10, n_p: int = 128, rho_video: float = 0.7) -> int:
    """Keep flags of `pairs` frame pairs [n_p, d] that differ between fp32 and input-dtype (bf16) saliency."""
    g = torch.Generator().manual_seed(0)
    differing = 0
    for _ in range(pairs):
        base = torch.randn(1, d, generator=g)
        f1 = (base + sigma * torch.randn(n_p, d, generator=g)).bfloat16()
        f2 = (f1.float() + 0.5 * sigma * torch.randn(n_p, d, generator=g)).bfloat16()
        for fp32, bf16 in zip(stvp(f1, f2, rho_video), stvp(f1, f2, rho_video, saliency_dtype="input"), strict=True):
            a, b = torch.zeros(n_p, dtype=torch.bool), torch.zeros(n_p, dtype=torch.bool)
            a[fp32], b[bf16] = True, True
            differing += int((a != b).sum())
    return differing


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.saliency_dtype", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[64, 3584])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.02, 0.1, 0.3, 1.0, 10.0])
    args = parser.parse_args(argv)
    print("| D | " + " | ".join(f"sigma {s:g}" for s in args.sigmas) + " |")
    print("|---:|" + "---:|" * len(args.sigmas))
    for d in args.dims:
        print(f"| {d} | " + " | ".join(f"{differing_flags(d, s):,} / 2,560" for s in args.sigmas) + " |")


if __name__ == "__main__":
    main()
