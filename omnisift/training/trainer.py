"""The training loop: settings, schedule, checkpoints (safetensors only) and `Trainer`."""

from __future__ import annotations

import contextlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from omnisift.checkpoint import load_selector, save_selector, selector_from_state
from omnisift.ratios import RHO_VIDEO_25, Ratios
from omnisift.training.layout import Batch, Example, collate
from omnisift.training.sharding import full_state, is_sharded
from omnisift.training.trainable import LoraSettings, TrainableCore, set_trainable


def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainSettings:
    """Hyper-parameters of the training loop (`trainable` says what trains: see `set_trainable`)."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    gate: str = "embedding"  # how the straight-through mask reaches the scores: see `compressed_forward`
    rho_video: float = RHO_VIDEO_25
    rho_audio: float = 0.3
    save_every: int = 200
    log_every: int = 10
    seed: int = 0
    trainable: str = "selector"  # selector | full | lora
    precision: str = "auto"  # auto: bf16 autocast on CUDA, float32 on the CPU; bf16: bf16 autocast anywhere
    lora: LoraSettings = field(default_factory=LoraSettings)  # used when trainable == "lora"


@dataclass
class StepResult:
    """One micro-batch: its loss, whether the optimizer stepped, and throughput figures."""

    loss: float
    optimizer_step: int
    stepped: bool
    lr: float
    tokens: int
    seconds: float


def optimizer_to_safetensors(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Write an optimizer's state as safetensors (tensors) plus JSON metadata (hyper-parameters)."""
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for idx, per_param in state["state"].items():
        for name, value in per_param.items():
            if torch.is_tensor(value):
                tensors[f"state.{idx}.{name}"] = value.detach().contiguous().cpu()
            else:
                scalars[f"{idx}.{name}"] = value
    metadata = {"param_groups": json.dumps(state["param_groups"]), "scalars": json.dumps(scalars)}
    save_file(tensors, str(path), metadata=metadata)


def optimizer_from_safetensors(optimizer: torch.optim.Optimizer, path: Path) -> None:
    """Restore what `optimizer_to_safetensors` wrote."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    state: dict = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for key, value in json.loads(meta["scalars"]).items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    optimizer.load_state_dict({"state": state, "param_groups": json.loads(meta["param_groups"])})


# ---- the loop ------------------------------------------------------------------------------------

@dataclass
class History:
    """Learning curve: (optimizer step, loss) of every logged micro-batch, plus eval points."""

    train: list[tuple[int, float]] = field(default_factory=list)
    eval: list[tuple[int, float]] = field(default_factory=list)


def freeze_all_but_selector(thinker) -> list[nn.Parameter]:
    """Freeze the backbone and towers; return the selector's parameters (made trainable)."""
    return set_trainable(thinker, "selector")


class Trainer:
    """Trains `thinker.compressor` (and, with `settings.trainable` full or lora, the language model) on
    batches of laid-out examples; the towers stay frozen.

    `selector` is the module called inside the forward (defaults to `thinker.compressor`; Ray Train
    passes its DDP wrapper). `core` is the `TrainableCore` to call (Ray Train passes it sharded with
    FSDP). `after_backward` runs before each optimizer step (e.g. a gradient all-reduce); `is_main`
    controls who writes checkpoints, bars and plots. `base_model` (the folder or hub id the thinker was
    loaded from) makes every checkpoint of a language-model run also a model folder, `<checkpoint>/model`
    (`omnisift.training.export`).
    """

    def __init__(self, thinker, settings: TrainSettings, *, selector: nn.Module | None = None,
                 core: TrainableCore | None = None, out_dir: str | Path | None = None, is_main: bool = True,
                 after_backward: Callable[[], None] | None = None, base_model: str | Path | None = None) -> None:
        self.thinker = thinker
        self.settings = settings
        self.params = set_trainable(thinker, settings.trainable)
        thinker.eval()  # no dropout in the frozen towers
        thinker.compressor.train()
        if settings.trainable != "selector":
            thinker.model.language_model.train()
        self.core = core if core is not None else TrainableCore(thinker)
        self.base_model = base_model
        self.selector = selector if selector is not None else thinker.compressor
        self.ratios = Ratios(rho_video=settings.rho_video, rho_audio=settings.rho_audio)
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: cosine_with_warmup(s, settings.warmup_steps, settings.steps, settings.min_lr_ratio))
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.is_main = is_main
        self.after_backward = after_backward
        self.optimizer_step = 0
        self.micro_step = 0
        self.history = History()
        self.device = thinker.lm_head.weight.device

    def autocast(self):
        """bf16 autocast with `precision` bf16, or auto on CUDA; nothing otherwise."""
        p = self.settings.precision
        if p == "bf16" or (p == "auto" and self.device.type == "cuda"):
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, batch: Batch) -> StepResult:
        """Forward + backward of one micro-batch; an optimizer step every `grad_accum` micro-batches."""
        start = time.perf_counter()
        batch = batch.to(self.device)
        with self.autocast():
            result = self.core(batch, self.ratios, self.settings.gate, self.selector)
        if result.loss is None:
            raise ValueError("a training batch has no answer tokens")
        (result.loss / self.settings.grad_accum).backward()
        self.micro_step += 1
        stepped = self.micro_step % self.settings.grad_accum == 0
        lr = self.optimizer.param_groups[0]["lr"]
        if stepped:
            if self.after_backward is not None:
                self.after_backward()
            if self.settings.max_grad_norm:
                torch.nn.utils.clip_grad_norm_(self.params, self.settings.max_grad_norm)
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.optimizer_step += 1
        loss = float(result.loss.detach())
        self.history.train.append((self.optimizer_step, loss))
        return StepResult(loss, self.optimizer_step, stepped, lr, batch.tokens, time.perf_counter() - start)

    def run(self, batches: Iterable[Batch], *, progress: bool = True,
            on_step: Callable[[StepResult], None] | None = None) -> History:
        """Train until `settings.steps` optimizer steps; checkpoints every `save_every` and at the end."""
        from tqdm import tqdm

        s = self.settings
        bar = tqdm(total=s.steps, initial=self.optimizer_step, desc="train selector", unit="step",
                   disable=not (progress and self.is_main), dynamic_ncols=True)
        tokens, seconds, losses = 0, 0.0, []
        for batch in batches:
            if self.optimizer_step >= s.steps:
                break
            r = self.step(batch)
            tokens, seconds = tokens + r.tokens, seconds + r.seconds
            losses.append(r.loss)
            if on_step is not None:
                on_step(r)
            if r.stepped:
                bar.update(1)
                if r.optimizer_step % s.log_every == 0 or r.optimizer_step == s.steps:
                    bar.set_postfix(loss=f"{sum(losses) / len(losses):.4f}", lr=f"{r.lr:.2e}",
                                    tok_s=f"{tokens / max(seconds, 1e-9):.0f}")
                    losses = []
                if self.out_dir is not None and s.save_every and r.optimizer_step % s.save_every == 0:
                    self.save(self.out_dir / f"checkpoint-{r.optimizer_step}")
        bar.close()
        if self.out_dir is not None:
            self.save(self.out_dir / "final")  # every rank: gathering sharded weights is a collective
            if self.is_main:
                plot_curve(self.history, self.out_dir / "learning_curve.png")
        return self.history

    def save(self, folder: str | Path) -> Path:
        """Selector (official layout), trainer state and, unless sharded, optimizer state into `folder`;
        for a language-model run also the trained tensors (`trainable.safetensors`, for `resume`) and,
        with `base_model`, the model folder `folder/model`. Every rank calls it; the main one writes."""
        folder = Path(folder)
        lm_run, sharded = self.settings.trainable != "selector", is_sharded(self.core)
        state = full_state(self.core) if lm_run or sharded else None
        if not self.is_main:
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        if state is None:
            save_selector(self.thinker.compressor, folder / "selector.safetensors")
        else:
            selector = {k.removeprefix("compressor."): v for k, v in state.items() if k.startswith("compressor.")}
            save_selector(selector_from_state(selector), folder / "selector.safetensors")
        if not sharded:  # a sharded optimizer state is per worker: those runs do not resume
            optimizer_to_safetensors(self.optimizer, folder / "optimizer.safetensors")
        if lm_run:
            from safetensors.torch import save_file

            from omnisift.training.trainable import is_trained

            trained = {k: v.contiguous() for k, v in state.items() if is_trained(k, self.settings.trainable)}
            save_file(trained, str(folder / "trainable.safetensors"), metadata={"format": "pt"})
            if self.base_model is not None:
                from omnisift.training.export import export_pretrained

                export_pretrained(state, self.settings.trainable, self.base_model, folder / "model",
                                  lora=self.settings.lora, local_files_only=True)
        state = {"optimizer_step": self.optimizer_step, "micro_step": self.micro_step,
                 "scheduler": self.scheduler.state_dict(), "settings": asdict(self.settings),
                 "history": asdict(self.history), "resumable": not sharded}
        state["scheduler"].pop("lr_lambdas", None)
        (folder / "trainer_state.json").write_text(json.dumps(state, indent=1))
        return folder

    def resume(self, folder: str | Path) -> None:
        """Continue from a checkpoint folder written by `save` (not one of a sharded run)."""
        folder = Path(folder)
        if not (folder / "optimizer.safetensors").exists():
            raise ValueError(f"{folder}: no optimizer state (a checkpoint of a sharded run cannot be resumed)")
        loaded = load_selector(folder / "selector.safetensors")
        self.thinker.compressor.load_state_dict(loaded.state_dict())
        if self.settings.trainable != "selector":
            self._load_trained(folder / "trainable.safetensors")
        optimizer_from_safetensors(self.optimizer, folder / "optimizer.safetensors")
        state = json.loads((folder / "trainer_state.json").read_text())
        self.optimizer_step, self.micro_step = state["optimizer_step"], state["micro_step"]
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), **state["scheduler"]})
        self.history = History([tuple(x) for x in state["history"]["train"]],
                               [tuple(x) for x in state["history"]["eval"]])


    def _load_trained(self, path: Path) -> None:
        """The trained tensors of a language-model checkpoint, checked to be exactly this run's."""
        from safetensors.torch import load_file

        from omnisift.training.trainable import is_trained

        if not path.exists():
            raise ValueError(f"{path.parent}: no trainable.safetensors (not a checkpoint of a "
                             f"trainable: {self.settings.trainable} run)")
        tensors = load_file(str(path))
        expected = {k for k in self.core.state_dict() if is_trained(k, self.settings.trainable)}
        if set(tensors) != expected:
            diff = sorted(set(tensors) ^ expected)
            raise ValueError(f"{path}: trained tensors do not match this run's ({len(diff)} differ, e.g. {diff[0]})")
        self.core.load_state_dict(tensors, strict=False)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest `checkpoint-N` (or `final`) folder under `out_dir`, if any."""
    out_dir = Path(out_dir)
    folders = [p for p in out_dir.glob("checkpoint-*") if p.name.split("-")[1].isdigit()] + [out_dir / "final"]
    found = sorted((json.loads((p / "trainer_state.json").read_text())["optimizer_step"], p.name != "final", p)
                   for p in folders if (p / "trainer_state.json").exists())
    return found[-1][2] if found else None


def batch_stream(examples: Sequence[Example], batch_size: int, pad_id: int, *, seed: int = 0,
                 rank: int = 0, world: int = 1) -> Iterator[Batch]:
    """Endless shuffled batches; worker `rank` of `world` takes every world-th batch of each epoch."""
    epoch = 0
    while True:
        order = list(range(len(examples)))
        random.Random(seed + epoch).shuffle(order)
        batches = [order[i:i + batch_size] for i in range(0, len(order) - batch_size + 1, batch_size)] or [order]
        for j in range(rank, len(batches) - (len(batches) % world if world > 1 else 0), world):
            yield collate([examples[i] for i in batches[j]], pad_id)
        epoch += 1


def plot_curve(history: History, path: str | Path, title: str = "selector training") -> Path:
    """Learning curve PNG: per-micro-batch loss (light) and its running mean; eval points if any."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if history.train:
        xs = list(range(len(history.train)))
        ys = [loss for _, loss in history.train]
        ax.plot(xs, ys, alpha=0.3, label="loss (micro-batch)")
        w = max(1, len(ys) // 20)
        smooth = [sum(ys[max(0, i - w + 1):i + 1]) / len(ys[max(0, i - w + 1):i + 1]) for i in range(len(ys))]
        ax.plot(xs, smooth, label=f"running mean ({w})")
    if history.eval:
        ax.plot(*zip(*history.eval, strict=True), "o-", label="eval")
    ax.set_xlabel("micro-batch")
    ax.set_ylabel("next-token loss on the answer")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def selector_parameters_changed(before: dict[str, torch.Tensor], thinker) -> set[str]:
    """Names of thinker parameters that differ from `before` (a state-dict copy)."""
    return {k for k, v in thinker.state_dict().items() if k in before and not torch.equal(before[k], v)}
