"""Validated configs of the offline commands (`omnisift train`, `omnisift eval`), read from YAML.

Errors name the field and the bad value (pydantic), in one line through the CLI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from omnisift.data import LAYOUTS
from streams.config import read_yaml

Layout = Literal["auto", "jsonl", "worldsense", "videomme", "dailyomni", "omnivideobench", "video_salmonn"]
assert set(LAYOUTS) <= set(Layout.__args__)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetConfig(_Strict):
    path: Path  # metadata file (JSONL or JSON list)
    layout: Layout = "auto"
    base: Path | None = None  # media folder; default: the metadata file's folder
    limit: int | None = Field(default=None, ge=1)


class ModelConfig(_Strict):
    name: str = "Qwen/Qwen2.5-Omni-7B"  # hub id or local path
    selector: Path | None = None  # separate selector checkpoint (base Qwen2.5-Omni models)
    device: str | None = None
    dtype: str | None = None
    min_pixels: int | None = Field(default=None, ge=28 * 28)
    max_pixels: int | None = Field(default=None, ge=28 * 28)
    system_prompt: str | None = None
    local_files_only: bool = False


class OptimConfig(_Strict):
    steps: int = Field(default=1000, ge=1)
    batch_size: int = Field(default=1, ge=1)
    grad_accum: int = Field(default=8, ge=1)
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_steps: int = Field(default=50, ge=0)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, ge=0)
    gate: Literal["embedding", "attention"] = "embedding"  # omnisift.training.compressed_forward
    rho_video: float = Field(default=0.8, ge=0, le=1)
    rho_audio: float = Field(default=0.3, ge=0, le=1)
    save_every: int = Field(default=200, ge=0)
    log_every: int = Field(default=10, ge=1)
    seed: int = 0


class RayConfig(_Strict):
    num_workers: int = Field(default=0, ge=0)  # 0: train in this process without Ray
    use_gpu: bool = False


class TrainConfig(_Strict):
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig
    cache_dir: Path
    out_dir: Path
    resume: bool | Path = True  # True: continue from the newest checkpoint in out_dir if any
    train: OptimConfig = OptimConfig()
    ray: RayConfig = RayConfig()


class EvalConfig(_Strict):
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig
    cache_dir: Path
    out_dir: Path
    methods: list[Literal["full", "random", "omnisift"]] = ["full", "random", "omnisift"]
    retention: float = Field(default=0.25, gt=0, le=1)
    generate: bool = True
    score_options: bool = True
    max_new_tokens: int = Field(default=16, ge=1)
    seed: int = 0

    @model_validator(mode="after")
    def _methods(self) -> EvalConfig:
        if not self.methods:
            raise ValueError("methods: give at least one of full, random, omnisift")
        return self


def load_config(path: str | Path, cls: type[BaseModel], overrides: dict | None = None) -> BaseModel:
    """Read and validate a YAML config; raises ValueError naming the bad field and value."""
    path = Path(path)
    data = read_yaml(path, "config") or {}
    for dotted, value in (overrides or {}).items():
        node = data
        *parents, last = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ValueError(f"{path}: {where}: {first['msg']} (got {first.get('input')!r})") from None
