"""Offline training of the VGAS selector on cached tower outputs (DESIGN section 3).

The frozen towers ran once (the feature cache in `pipeline.features`); here each clip's per-chunk
vision and audio tokens are laid out as Qwen2.5-Omni lays them out (`[chunk 0 video][chunk 0 audio]...`
between the bos and eos tokens, then the question and the answer) with TMRoPE positions by the rules of
DESIGN section 2 (a test checks them against `get_rope_index`). `compressed_forward` decides what to
keep with `decide_sequence`, runs the frozen language model on the kept tokens at their original
positions and takes the next-token loss on the answer; the straight-through mask carries the gradient
to the selector either through the kept audio embeddings (`gate="embedding"`, DESIGN section 3) or
through every attention layer's keys (`gate="attention"`, `omnisift.key_gate`), and the scores pass it
to the selector's logits centred per chunk (`omnisift.sequence.straight_through_scores`). Only the
selector learns.

`Trainer.step()` does one micro-batch (and an optimizer step every `grad_accum` micro-batches);
`Trainer.run()` loops, shows a progress bar, writes checkpoints and the learning curve. Checkpoints
are a folder: `selector.safetensors` (official `thinker.compressor.` layout, loadable by
`load_selector`), `optimizer.safetensors` (AdamW state, no pickle) and `trainer_state.json`.
"""

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

from omnisift.checkpoint import load_selector, save_selector
from omnisift.ratios import Ratios
from omnisift.selector import VisionGuidedAudioSelector, straight_through_mask
from omnisift.sequence import decide_sequence

POSITIONS_PER_SECOND = 25
AUDIO_TOKENS_PER_CHUNK = 50


# ---- the token layout of one example -------------------------------------------------------------

@dataclass
class ClipFeatures:
    """Cached tower outputs of one clip, chunk by chunk (what `pipeline.features` stores).

    video: [G, n_p, D] tokens of every visual frame (grid step) of the clip, or None.
    audio: [A, D] audio tokens (25 per second), or None.
    chunk_steps / chunk_audio: grid steps and audio tokens of each 2-second chunk (they sum to G and A).
    grid_hw: merged-token rows and columns of a frame.
    """

    video: torch.Tensor | None
    audio: torch.Tensor | None
    chunk_steps: list[int]
    chunk_audio: list[int]
    grid_hw: tuple[int, int]


@dataclass(frozen=True)
class PromptTemplate:
    """Token ids of the fixed text around a clip, cut from the processor's chat template."""

    prefix: list[int]  # system prompt and user header
    bos: list[int]  # <|vision_bos|><|audio_bos|>
    eos: list[int]  # <|audio_eos|><|vision_eos|>
    before_question: list[int]
    after_question: list[int]  # ... <|im_start|>assistant\n
    end_of_answer: list[int]  # <|im_end|>
    video_token_id: int
    audio_token_id: int

    @classmethod
    def from_processor(cls, processor, system_prompt: str, video_token_id: int, audio_token_id: int) -> PromptTemplate:
        tok = processor.tokenizer
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "\x00"}]},
        ]
        text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        head, tail = text.split("<|VIDEO|>")
        head = head.removesuffix(tok.vision_bos_token)
        tail = tail.removeprefix(tok.vision_eos_token)
        before_q, after_q = tail.split("\x00")
        ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        bos = tok.convert_tokens_to_ids([tok.vision_bos_token, tok.audio_bos_token])
        eos = tok.convert_tokens_to_ids([tok.audio_eos_token, tok.vision_eos_token])
        return cls(ids(head), bos, eos, ids(before_q), ids(after_q), ids("<|im_end|>"),
                   video_token_id, audio_token_id)


@dataclass
class Example:
    """One laid-out sequence: ids [L], positions [3, L], labels [L] (-100 off the answer) and the
    audio/video tower outputs [N_av, D] in sequence order (they replace the placeholder ids)."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    av_features: torch.Tensor
    answer_start: int  # index of the first answer token


def av_layout(features: ClipFeatures, st: int) -> tuple[list[torch.Tensor], list[bool], torch.Tensor]:
    """Interleaved audio-video tokens of a clip: feature blocks, which are video, positions [3, N]."""
    blocks, is_video, positions = [], [], []
    rows, cols = features.grid_hw
    g0 = a0 = 0
    for steps, n_audio in zip(features.chunk_steps, features.chunk_audio, strict=True):
        if steps:
            video = features.video[g0:g0 + steps].reshape(-1, features.video.shape[-1])  # [steps * n_p, D]
            g = torch.arange(g0, g0 + steps).repeat_interleave(rows * cols)
            r = torch.arange(rows).repeat_interleave(cols).repeat(steps)
            c = torch.arange(cols).repeat(rows * steps)
            positions.append(torch.stack([st + POSITIONS_PER_SECOND * g, st + r, st + c]))
            blocks.append(video)
            is_video.append(True)
        if n_audio:
            k = torch.arange(a0, a0 + n_audio)
            positions.append((st + k).expand(3, -1))
            blocks.append(features.audio[a0:a0 + n_audio])
            is_video.append(False)
        g0, a0 = g0 + steps, a0 + n_audio
    return blocks, is_video, torch.cat(positions, dim=1)


def build_example(template: PromptTemplate, features: ClipFeatures, question_ids: list[int],
                  answer_ids: list[int] | None) -> Example:
    """Lay out `prefix, bos, [video, audio] per chunk, eos, question, assistant header, answer, <|im_end|>`.

    Positions (DESIGN section 2): text 0..n-1, both bos tokens at n, `st = n + 1`; video token at grid
    step g, row r, column c at (st + 25 g, st + r, st + c); audio token k at st + k; both eos tokens at
    one past the largest audio-video position; text after them counts on. `answer_ids=None` ends the
    sequence after the assistant header (for generation and option scoring).
    """
    n = len(template.prefix)
    st = n + 1
    blocks, is_video, av_pos = av_layout(features, st)
    av_ids = torch.cat([torch.full((b.shape[0],), template.video_token_id if v else template.audio_token_id)
                        for b, v in zip(blocks, is_video, strict=True)])
    end = int(av_pos.max()) + 1
    text = template.before_question + question_ids + template.after_question
    answer = [] if answer_ids is None else answer_ids + template.end_of_answer
    tail = text + answer
    ids = torch.cat([torch.tensor(template.prefix + template.bos, dtype=torch.long), av_ids,
                     torch.tensor(template.eos + tail, dtype=torch.long)])
    pre_pos = torch.tensor(list(range(n)) + [n] * len(template.bos)).expand(3, -1)
    eos_pos = torch.full((3, len(template.eos)), end)
    tail_pos = torch.arange(end + 1, end + 1 + len(tail)).expand(3, -1)
    positions = torch.cat([pre_pos, av_pos, eos_pos, tail_pos], dim=1)
    labels = torch.full_like(ids, -100)
    answer_start = ids.numel() - len(answer)
    if answer:
        labels[answer_start:] = ids[answer_start:]
    return Example(ids, positions, labels, torch.cat(blocks), answer_start)


@dataclass
class Batch:
    """Right-padded examples. input_ids/labels/attention_mask [B, L]; positions [3, B, L];
    av_features [N_av, D] in row-major order of the audio/video placeholders."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    av_features: torch.Tensor
    answer_start: torch.Tensor  # [B]

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.positions, self.labels, self.attention_mask,
                                               self.av_features, self.answer_start)))

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad a list of examples into a batch."""
    length = max(e.input_ids.numel() for e in examples)
    b = len(examples)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    labels = torch.full((b, length), -100, dtype=torch.long)
    mask = torch.zeros(b, length, dtype=torch.long)
    positions = torch.zeros(3, b, length, dtype=torch.long)
    for i, e in enumerate(examples):
        n = e.input_ids.numel()
        ids[i, :n], labels[i, :n], mask[i, :n], positions[:, i, :n] = e.input_ids, e.labels, 1, e.positions
    return Batch(ids, positions, labels, mask, torch.cat([e.av_features for e in examples]),
                 torch.tensor([e.answer_start for e in examples]))


# ---- the compressed forward with the straight-through estimator --------------------------------

class RandomScorer(nn.Module):
    """Uniform random scores: random audio selection at the same counts as VGAS (a baseline)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, video, audio, video_mask=None, logits=False):  # noqa: ARG002 - the selector's signature
        return torch.rand(audio.shape[:-1], generator=self.generator).to(audio.device)


@dataclass
class ForwardResult:
    loss: torch.Tensor | None
    logits: torch.Tensor  # [B, L', V] over the kept tokens
    index: torch.Tensor  # [B, L'] original index of each kept token (left-padded)
    kept_mask: torch.Tensor  # [B, L'] 1 at real kept tokens
    video: tuple[int, int]  # before, after (summed over the batch)
    audio: tuple[int, int]


def embed_batch(thinker, batch: Batch) -> torch.Tensor:
    """Token embeddings [B, L, D] with the cached tower outputs at the audio/video placeholders."""
    embeds = thinker.get_input_embeddings()(batch.input_ids)
    cfg = thinker.config
    slots = ((batch.input_ids == cfg.video_token_id) | (batch.input_ids == cfg.audio_token_id)) & batch.attention_mask.bool()
    return embeds.masked_scatter(slots.unsqueeze(-1), batch.av_features.to(embeds.dtype))


GATES = ("embedding", "attention")


def compressed_forward(thinker, batch: Batch, ratios: Ratios | None, selector: nn.Module | None = None,
                       gate: str = "embedding") -> ForwardResult:
    """Next-token loss on the answer with OmniSIFT deciding what to keep.

    `ratios=None` keeps every token (the full model). `selector` defaults to `thinker.compressor`; a
    `RandomScorer` gives random audio selection. When grad is enabled and the selector has trainable
    weights, the straight-through mask (1 in value at kept tokens) carries the gradient to its scores:
    `gate="embedding"` multiplies it into the kept audio embeddings (DESIGN section 3; dropped tokens are
    removed), `gate="attention"` keeps every token and weighs each attention key by it
    (`omnisift.key_gate`: the forward is the same, dropped tokens get a gradient too).
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
    cfg = thinker.config
    embeds = embed_batch(thinker, batch)  # [B, L, D]
    real = batch.attention_mask.bool()
    is_video = (batch.input_ids == cfg.video_token_id) & real
    is_audio = (batch.input_ids == cfg.audio_token_id) & real
    keep, scores = torch.ones_like(is_video), None
    if ratios is not None:
        decision = decide_sequence(
            embeds, batch.input_ids, batch.positions, video_token_id=cfg.video_token_id,
            audio_token_id=cfg.audio_token_id, selector=thinker.compressor if selector is None else selector,
            rho_video=ratios.rho_video, rho_audio=ratios.rho_audio, attention_mask=batch.attention_mask,
        )
        keep = decision.keep
        if torch.is_grad_enabled() and decision.audio_scores.requires_grad:
            scores = decision.audio_scores  # [B, L]
    keep = keep & real
    counts = torch.stack([is_video.sum(), (is_video & keep).sum(), is_audio.sum(), (is_audio & keep).sum()]).tolist()
    if scores is not None and gate == "attention":
        key_gate = torch.where(is_audio, straight_through_mask(keep, scores), keep.to(scores.dtype))  # [B, L]
        logits, index, packed_mask = _key_gated_logits(thinker, batch, embeds, keep, key_gate)
    else:
        if scores is not None:
            audio_gate = torch.where(is_audio, straight_through_mask(keep, scores), 1.0)  # [B, L]
            embeds = embeds * audio_gate.unsqueeze(-1).to(embeds.dtype)
        logits, index, packed_mask = _packed_logits(thinker, batch, embeds, keep)
    labels = batch.labels.gather(1, index).masked_fill(packed_mask == 0, -100)  # [B, L']
    loss = None
    if (labels != -100).any():
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                           ignore_index=-100)
    return ForwardResult(loss, logits, index, packed_mask, (counts[0], counts[1]), (counts[2], counts[3]))


def _packed_logits(thinker, batch: Batch, embeds: torch.Tensor, keep: torch.Tensor):
    """The language model on the kept tokens only, at their original positions.

    returns logits [B, L', V], index [B, L'] into L, packed mask [B, L'] (left-padded)."""
    from omnisift.thinker import pack_kept

    index, packed_mask = pack_kept(keep)  # [B, L']
    packed = embeds.gather(1, index.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
    positions = batch.positions.gather(2, index.unsqueeze(0).expand(3, -1, -1))
    out = thinker.model.language_model(inputs_embeds=packed, attention_mask=packed_mask, position_ids=positions,
                                       use_cache=False)
    return thinker.lm_head(out.last_hidden_state), index, packed_mask


def _key_gated_logits(thinker, batch: Batch, embeds: torch.Tensor, keep: torch.Tensor, key_gate: torch.Tensor):
    """The language model on every token with attention keys weighed by `key_gate` [B, L]; the logits at
    the kept tokens are returned in the packed layout of `_packed_logits`, so the loss is the same."""
    from omnisift.key_gate import key_gated
    from omnisift.thinker import pack_kept

    language_model = thinker.model.language_model
    with key_gated(language_model):
        out = language_model(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                             position_ids=batch.positions, use_cache=False, key_gate=key_gate)
    index, packed_mask = pack_kept(keep)  # [B, L']
    hidden = out.last_hidden_state.gather(1, index.unsqueeze(-1).expand(-1, -1, out.last_hidden_state.shape[-1]))
    return thinker.lm_head(hidden), index, packed_mask


def option_logits(result: ForwardResult, batch: Batch, option_ids: Sequence[int]) -> torch.Tensor:
    """Logits [B, n_options] of the options' first tokens where the answer's first token is predicted."""
    # the kept token just before the answer: the last kept token whose original index < answer_start
    before = (result.index < batch.answer_start.unsqueeze(1)) & result.kept_mask.bool()
    last = before.long().cumsum(1).argmax(1)  # [B] last True
    rows = torch.arange(batch.input_ids.shape[0], device=last.device)
    return result.logits[rows, last][:, list(option_ids)].float()


# ---- schedule, settings, checkpoints -------------------------------------------------------------

def cosine_with_warmup(step: int, warmup: int, total: int, min_ratio: float = 0.0) -> float:
    """LR multiplier: linear warm-up over `warmup` steps, then cosine decay to `min_ratio` at `total`."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class TrainSettings:
    """Hyper-parameters of the selector's training loop."""

    steps: int = 1000  # optimizer steps
    batch_size: int = 4
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.01
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    max_grad_norm: float = 1.0
    gate: str = "embedding"  # how the straight-through mask reaches the scores: see `compressed_forward`
    rho_video: float = 0.8
    rho_audio: float = 0.3
    save_every: int = 200
    log_every: int = 10
    seed: int = 0


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
    thinker.requires_grad_(False)
    thinker.compressor.requires_grad_(True)
    return list(thinker.compressor.parameters())


class Trainer:
    """Trains `thinker.compressor` on batches of laid-out examples; the backbone stays frozen.

    `selector` is the module called inside the forward (defaults to `thinker.compressor`; Ray Train
    passes its DDP wrapper). `after_backward` runs before each optimizer step (e.g. a gradient
    all-reduce); `is_main` controls who writes checkpoints, bars and plots.
    """

    def __init__(self, thinker, settings: TrainSettings, *, selector: nn.Module | None = None,
                 out_dir: str | Path | None = None, is_main: bool = True,
                 after_backward: Callable[[], None] | None = None) -> None:
        self.thinker = thinker
        self.settings = settings
        self.params = freeze_all_but_selector(thinker)
        thinker.eval()  # no dropout in the frozen backbone
        thinker.compressor.train()
        self.selector = selector if selector is not None else thinker.compressor
        self.ratios = Ratios(rho_video=settings.rho_video, rho_audio=settings.rho_audio)
        self.optimizer = torch.optim.AdamW(self.params, lr=settings.lr, weight_decay=settings.weight_decay)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: cosine_with_warmup(s, settings.warmup_steps, settings.steps, settings.min_lr_ratio))
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.is_main = is_main
        self.after_backward = after_backward
        self.optimizer_step = 0
        self.micro_step = 0
        self.history = History()
        self.device = thinker.lm_head.weight.device

    def autocast(self):
        """bf16 autocast on CUDA; nothing on the CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def step(self, batch: Batch) -> StepResult:
        """Forward + backward of one micro-batch; an optimizer step every `grad_accum` micro-batches."""
        start = time.perf_counter()
        batch = batch.to(self.device)
        with self.autocast():
            result = compressed_forward(self.thinker, batch, self.ratios, self.selector, self.settings.gate)
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
        if self.out_dir is not None and self.is_main:
            self.save(self.out_dir / "final")
            plot_curve(self.history, self.out_dir / "learning_curve.png")
        return self.history

    def save(self, folder: str | Path) -> Path:
        """Selector (official layout), optimizer state and trainer state into `folder`."""
        folder = Path(folder)
        if not self.is_main:
            return folder
        folder.mkdir(parents=True, exist_ok=True)
        save_selector(self.thinker.compressor, folder / "selector.safetensors")
        optimizer_to_safetensors(self.optimizer, folder / "optimizer.safetensors")
        state = {"optimizer_step": self.optimizer_step, "micro_step": self.micro_step,
                 "scheduler": self.scheduler.state_dict(), "settings": asdict(self.settings),
                 "history": asdict(self.history)}
        state["scheduler"].pop("lr_lambdas", None)
        (folder / "trainer_state.json").write_text(json.dumps(state, indent=1))
        return folder

    def resume(self, folder: str | Path) -> None:
        """Continue from a checkpoint folder written by `save`."""
        folder = Path(folder)
        loaded = load_selector(folder / "selector.safetensors")
        self.thinker.compressor.load_state_dict(loaded.state_dict())
        optimizer_from_safetensors(self.optimizer, folder / "optimizer.safetensors")
        state = json.loads((folder / "trainer_state.json").read_text())
        self.optimizer_step, self.micro_step = state["optimizer_step"], state["micro_step"]
        self.scheduler.load_state_dict({**self.scheduler.state_dict(), **state["scheduler"]})
        self.history = History([tuple(x) for x in state["history"]["train"]],
                               [tuple(x) for x in state["history"]["eval"]])


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


__all__ = [
    "Batch", "ClipFeatures", "Example", "ForwardResult", "History", "PromptTemplate", "RandomScorer", "StepResult",
    "TrainSettings", "Trainer", "VisionGuidedAudioSelector", "av_layout", "batch_stream", "build_example", "collate",
    "compressed_forward", "cosine_with_warmup", "embed_batch", "freeze_all_but_selector", "latest_checkpoint",
    "option_logits", "optimizer_from_safetensors", "optimizer_to_safetensors", "plot_curve",
]
