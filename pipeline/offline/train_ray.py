"""Training with Ray Train: the same `omnisift.training.Trainer` loop in every worker.

Each worker loads the model, reads the examples from the shared feature cache (built once by the
driver) and takes every `world`-th batch. What is distributed depends on what trains:

- `trainable: selector`: the selector is wrapped with `ray.train.torch.prepare_model` (DDP: gradients are
  averaged across workers); the language model is frozen and whole on every worker.
- `trainable: full | lora` (the release recipe): the language model, LM head and selector are sharded with
  FSDP2 (`omnisift.training.sharding`): weights, gradients and optimizer state split across workers,
  each decoder layer gathered only while it runs. The towers stay whole and frozen.

Rank 0 writes checkpoints (for a language-model run also the model folder, gathered from every worker),
the progress bar and the curve. Works on CPUs (gloo) for tests and on GPUs (NCCL) for real runs.
"""

from __future__ import annotations

import json
from pathlib import Path


def distribute(model, cfg):
    """(selector module for the forward, core) of this worker: DDP of the selector, or an FSDP core."""
    from ray.train.torch import get_device, prepare_model

    from omnisift.training import TrainableCore, set_trainable
    from omnisift.training.sharding import shard_core

    thinker = model.thinker
    if cfg.train.trainable == "selector":
        return prepare_model(thinker.compressor), None  # DDP across workers (moves to the worker's device)
    set_trainable(thinker, cfg.train.trainable)
    core = TrainableCore(thinker)
    device = get_device()
    core.to(device)  # towers stay where they are: training reads their cached outputs
    return None, shard_core(core, cfg.train.precision)


def train_loop_per_worker(config: dict) -> None:
    """Ray Train worker entry point; `config` holds the TrainConfig as JSON-able data."""
    import ray.train
    import torch

    from omnisift.training import Trainer, batch_stream
    from pipeline.offline.config import TrainConfig
    from pipeline.offline.train_local import load_for_training, train_settings

    torch.set_num_threads(config.get("threads", 1))
    cfg = TrainConfig.model_validate(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    model, examples, pad_id = load_for_training(cfg, build_cache=False)
    selector, core = distribute(model, cfg)
    settings = train_settings(cfg, len(examples), world)
    trainer = Trainer(model.thinker, settings, selector=selector, core=core, out_dir=cfg.out_dir, is_main=rank == 0,
                      base_model=cfg.model.path)
    trainer.run(batch_stream(examples, settings.batch_size, pad_id, seed=settings.seed, rank=rank, world=world),
                progress=rank == 0)
    losses = [loss for _, loss in trainer.history.train]
    metrics = {"optimizer_step": trainer.optimizer_step, "last_loss": losses[-1] if losses else None,
               "rank": rank, "world": world, "micro_batches": trainer.micro_step,
               "trainable": settings.trainable, "sharded": core is not None,
               "local_trainable_numel": sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel()
                                            for p in trainer.params)}
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
        run_config=RunConfig(name="selector" if cfg.train.trainable == "selector" else "language-model",
                             storage_path=str(storage)),
    )
    return trainer.fit()
