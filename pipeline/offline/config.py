"""Validated configs of the offline commands (`omnisift train`, `omnisift eval`), read from YAML.

Errors name the field and the bad value (pydantic), in one line through the CLI. `preset:` fills defaults
the YAML can override (`pipeline.offline.presets`: the selector-only recipe, the release's).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from omnisift.data import LAYOUTS
from omnisift.ratios import RHO_VIDEO_25
from omnisift.token_layout import DEFAULT_MODEL, PIXELS_PER_TOKEN
from pipeline.offline.presets import EVAL_PRESETS, TRAIN_PRESETS, with_preset
from streams.config import Strict, read_yaml

Layout = Literal["auto", "jsonl", "worldsense", "videomme", "dailyomni", "omnivideobench", "video_salmonn"]
assert set(LAYOUTS) <= set(Layout.__args__)


class DatasetConfig(Strict):
    path: Path  # metadata file (JSONL or JSON list)
    layout: Layout = "auto"
    base: Path | None = None  # media folder; default: the metadata file's folder
    limit: int | None = Field(default=None, ge=1)


class ModelConfig(Strict):
    path: str = DEFAULT_MODEL  # hub id or local folder (the same key as a pipeline config's model.path)
    selector: Path | None = None  # separate selector checkpoint (base Qwen2.5-Omni models)
    device: str | None = None
    dtype: str | None = None
    min_pixels: int | None = Field(default=None, ge=PIXELS_PER_TOKEN)
    max_pixels: int | None = Field(default=None, ge=PIXELS_PER_TOKEN)
    max_frames: int | None = Field(default=None, ge=4)  # longer media: whole chunks spread evenly (features.py)
    system_prompt: str | None = None
    local_files_only: bool = False

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "name" in data:
            raise ValueError("model.name is now model.path (as in a pipeline config): rename the key")
        return data


class LoraConfig(Strict):
    """LoRA of `trainable: lora` (this project's choice of values: the release has no LoRA variant)."""

    rank: int = Field(default=16, ge=1)
    alpha: float = Field(default=32.0, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    targets: list[str] = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class OptimConfig(Strict):
    trainable: Literal["selector", "full", "lora"] = "selector"  # omnisift.training.set_trainable
    steps: int | None = Field(default=1000, ge=1)  # optimizer steps; or:
    epochs: float | None = Field(default=None, gt=0)  # passes over the data (steps = ceil(epochs * n / global))
    batch_size: int = Field(default=1, ge=1)  # per worker and micro-batch
    grad_accum: int | None = Field(default=8, ge=1)  # or:
    global_batch_size: int | None = Field(default=None, ge=1)  # = batch_size * grad_accum * workers
    lr: float = Field(default=1e-4, gt=0)
    weight_decay: float = Field(default=0.01, ge=0)
    warmup_steps: int | None = Field(default=50, ge=0)  # or:
    warmup_ratio: float | None = Field(default=None, ge=0, le=1)  # warmup_steps = ceil(ratio * steps)
    min_lr_ratio: float = Field(default=0.1, ge=0, le=1)
    max_grad_norm: float = Field(default=1.0, ge=0)
    gate: Literal["embedding", "attention"] = "embedding"  # omnisift.training.compressed_forward
    rho_video: float = Field(default=RHO_VIDEO_25, ge=0, le=1)
    rho_audio: float = Field(default=0.3, ge=0, le=1)
    save_every: int = Field(default=200, ge=0)
    log_every: int = Field(default=10, ge=1)
    seed: int = 0
    max_length: int | None = Field(default=None, ge=1)  # longer examples (before compression) are skipped
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast on CUDA, float32 on the CPU
    lora: LoraConfig = LoraConfig()

    @model_validator(mode="after")
    def _one_of_each(self) -> OptimConfig:
        for a, b in (("steps", "epochs"), ("grad_accum", "global_batch_size"), ("warmup_steps", "warmup_ratio")):
            if (getattr(self, a) is None) == (getattr(self, b) is None):
                raise ValueError(f"give {a} or {b}, exactly one (got {getattr(self, a)!r} and {getattr(self, b)!r})")
        return self


class RayConfig(Strict):
    num_workers: int = Field(default=0, ge=0)  # 0: train in this process without Ray
    use_gpu: bool = False


class TrainConfig(Strict):
    preset: Literal["selector_only", "release"] = "selector_only"  # pipeline.offline.presets
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig
    cache_dir: Path
    out_dir: Path
    resume: bool | Path = True  # True: continue from the newest checkpoint in out_dir if any
    train: OptimConfig = OptimConfig()
    ray: RayConfig = RayConfig()

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict) and data.get("preset", "selector_only") in TRAIN_PRESETS:
            data = {**data, "train": with_preset(dict(data.get("train") or {}),
                                                 TRAIN_PRESETS[data.get("preset", "selector_only")])}
        return data


class EvalConfig(Strict):
    preset: Literal["none", "release"] = "none"  # pipeline.offline.presets
    model: ModelConfig = ModelConfig()
    dataset: DatasetConfig
    cache_dir: Path
    out_dir: Path
    methods: list[Literal["full", "random", "omnisift"]] = ["full", "random", "omnisift"]
    retention: float = Field(default=0.25, gt=0, le=1)
    generate: bool = True
    score_options: bool = True
    max_new_tokens: int = Field(default=16, ge=1)
    do_sample: bool = False  # false: greedy decoding
    seed: int = 0
    # STVP's arithmetic in the omnisift method: "float32" (this project's default) or "input" (the release's,
    # in the tokens' dtype: bf16 on a GPU); README "Fidelity to the paper and the release"
    saliency_dtype: Literal["float32", "input"] = "float32"

    @model_validator(mode="before")
    @classmethod
    def _preset(cls, data):
        if isinstance(data, dict) and data.get("preset", "none") in EVAL_PRESETS:
            data = with_preset(data, EVAL_PRESETS[data.get("preset", "none")])
        return data

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
