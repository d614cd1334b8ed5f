"""Selector training with Ray Train: the same `omnisift.training.Trainer` loop in every worker.

Each worker loads the model, reads the examples from the shared feature cache (built once by the
driver), wraps the selector with `ray.train.torch.prepare_model` (DDP: gradients are averaged across
workers) and takes every `world`-th batch. Rank 0 writes checkpoints, the progress bar and the curve.
Works on CPUs (gloo) for tests and on GPUs/machines for real runs.
"""

from __future__ import annotations

import json
from pathlib import Path


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker entry point; `config` holds the TrainConfig as JSON-able data."""
    import ray.train
    import torch
    from ray.train.torch import prepare_model

    from omnisift.training import Trainer, TrainSettings, batch_stream
    from pipeline.offline.config import TrainConfig
    from pipeline.offline.train_local import load_for_training

    torch.set_num_threads(config.get("threads", 1))
    cfg = TrainConfig.model_validate(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    model, examples, pad_id = load_for_training(cfg, build_cache=False)
    selector = prepare_model(model.thinker.compressor)  # DDP across workers (moves to the worker's device)
    settings = TrainSettings(**cfg.train.model_dump())
    trainer = Trainer(model.thinker, settings, selector=selector, out_dir=cfg.out_dir, is_main=rank == 0)
    trainer.run(batch_stream(examples, settings.batch_size, pad_id, seed=settings.seed, rank=rank, world=world),
                progress=rank == 0)
    losses = [loss for _, loss in trainer.history.train]
    metrics = {"optimizer_step": trainer.optimizer_step, "last_loss": losses[-1] if losses else None,
               "rank": rank, "world": world, "micro_batches": trainer.micro_step}
    Path(cfg.out_dir).mkdir(parents=True, exist_ok=True)
    (Path(cfg.out_dir) / f"worker-{rank}.json").write_text(json.dumps(metrics))  # what each worker did
    ray.train.report(metrics)


def train_with_ray(cfg, *, storage: str | Path | None = None, threads: int = 1):
    """Run `train_loop_per_worker` on `cfg.ray.num_workers` workers; returns Ray Train's result."""
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    storage = Path(storage or Path(cfg.out_dir) / "ray").resolve()
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"cfg": cfg.model_dump(mode="json"), "threads": threads},
        scaling_config=ScalingConfig(num_workers=cfg.ray.num_workers, use_gpu=cfg.ray.use_gpu,
                                     resources_per_worker=None if cfg.ray.use_gpu else {"CPU": 1}),
        run_config=RunConfig(name="selector", storage_path=str(storage)),
    )
    return trainer.fit()
