"""`omnisift train CONFIG`: train the VGAS selector, or the language model with it (`preset: release`), on a
dataset (configs/train.yaml)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train the OmniSIFT selector, or the language model with it (configs/train.yaml)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", type=Path)
    parser.add_argument("--steps", type=int, help="override train.steps")
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--workers", type=int, help="override ray.num_workers (0: no Ray)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")


def first_line(args: argparse.Namespace) -> str:
    return f"omnisift train {args.config}: loading the config, the model and the dataset's tower features"


def run(args: argparse.Namespace) -> int:
    from pipeline.offline.config import TrainConfig, load_config

    overrides = {k: v for k, v in (("train.steps", args.steps), ("ray.num_workers", args.workers),
                                   ("out_dir", args.out_dir and str(args.out_dir))) if v is not None}
    cfg: TrainConfig = load_config(args.config, TrainConfig, overrides)
    if cfg.ray.num_workers > 0:
        from pipeline.offline.train_local import load_for_training
        from pipeline.offline.train_ray import train_with_ray

        load_for_training(cfg, progress=args.progress)  # the driver builds the feature cache once
        _start_ray()
        result = train_with_ray(cfg)
        print(f"ray train: {result.metrics}")
    else:
        from pipeline.offline.train_local import train_local

        trainer = train_local(cfg, progress=args.progress)
        print(f"trained {trainer.optimizer_step} steps")
    final = Path(cfg.out_dir) / "final"
    print(f"selector: {final / 'selector.safetensors'}; curve: {Path(cfg.out_dir) / 'learning_curve.png'}")
    if cfg.train.trainable != "selector":
        print(f"model: {final / 'model'} (omnisift infer VIDEO -q QUESTION --model {final / 'model'})")
    return 0


def _start_ray() -> None:
    """A Ray on this machine held to loopback, unless `RAY_ADDRESS` names a cluster to train on (then Ray
    Train joins it)."""
    import os

    import ray

    from pipeline.ray.local import start_local_ray

    if not ray.is_initialized() and not os.environ.get("RAY_ADDRESS"):
        start_local_ray(include_dashboard=False)
