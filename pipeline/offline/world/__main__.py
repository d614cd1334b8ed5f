"""`python -m pipeline.offline.world`: train the tiny model on the world (see `pipeline.offline.world.train`)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from pathlib import Path

from pipeline.offline.world.train import DEFAULT_KINDS, WorldTrainSettings, model_card, train_world_model


def main(argv: list[str] | None = None) -> int:
    d = WorldTrainSettings()
    parser = argparse.ArgumentParser(description="Train the tiny Qwen2.5-Omni on the synthetic monitoring world.")
    parser.add_argument("--out", type=Path, required=True, help="model folder to write")
    parser.add_argument("--train-seeds", type=int, nargs="+", default=list(d.train_seeds))
    parser.add_argument("--test-seed", type=int, default=d.test_seed)
    parser.add_argument("--minutes", type=float, default=d.minutes)
    parser.add_argument("--size", type=int, default=d.size)
    parser.add_argument("--window", type=int, default=d.window, help="chunks of context per example")
    parser.add_argument("--kinds", nargs="+", default=list(DEFAULT_KINDS))
    parser.add_argument("--steps", type=int, default=d.steps)
    parser.add_argument("--batch-size", type=int, default=d.batch_size)
    parser.add_argument("--lr", type=float, default=d.lr)
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    args = parser.parse_args(argv)
    import torch
    from transformers.utils import logging as hf_logging

    logging.basicConfig(level=logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    settings = WorldTrainSettings(tuple(args.train_seeds), args.test_seed, args.minutes, args.size, args.window,
                                  tuple(args.kinds), args.steps, args.batch_size, args.lr, seed=args.seed)
    report = train_world_model(args.out, settings)
    command = "python -m pipeline.offline.world " + shlex.join(argv if argv is not None else sys.argv[1:])
    (args.out / "README.md").write_text(model_card(report, command))
    print(f"held-out accuracy before {report.before}\nafter {report.after}\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
