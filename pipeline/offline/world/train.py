"""A tiny Qwen2.5-Omni that has learned the world: its text backbone and audio projection trained on world
questions by the synthetic task's backbone recipe (`pipeline.offline.synthetic.backbone.train_backbone`:
PCA-whitened audio projection, AdamW, cosine schedule, every token kept), written as a model folder.

    python -m pipeline.offline.world.train --out models/world-tiny

Data: world streams of the training seeds (scenario `standard`, frames `size` x `size`) are read through
the `world` source and encoded chunk by chunk by the tiny model's towers (the live path's per-chunk encoding);
an example is the last `window` chunks before a quiet chunk end (`live.quiet_moments`), a question of one of
`kinds` asked there, and its gold answer (the option's text) from the event log. Held-out seeds are scored
per type by the options' likelihood, as `benchmarks.live_accuracy` scores the live session.

Output: the tiny model's folder (`omnisift.tiny.tiny_model_dir`, seed 0) with the trained tensors replaced
(`omnisift.training.export`), its `training.json` (settings, loss curve, held-out accuracy per type) and a
model card (`README.md`). It loads with `load_model(folder)` and `OmniSession.from_pretrained(folder)`.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from omnisift.loading import DEFAULT_SYSTEM_PROMPT
from omnisift.training import PromptTemplate, build_example, collate, compressed_forward
from omnisift.training.export import export_pretrained
from omnisift.training.layout import ClipFeatures
from pipeline.offline.synthetic.backbone import TaskExamples, audio_rows, projection_inputs, train_backbone
from pipeline.offline.world.live import quiet_moments
from pipeline.offline.world.questions import Log, Question, ask
from streams import read_chunks
from streams.world import World

DEFAULT_KINDS = ("screen_colour", "alarm", "standing_alarm", "object_count", "beep_pitch")


@dataclass
class WorldTrainSettings:
    train_seeds: tuple[int, ...] = (1000, 1001, 1002)
    test_seed: int = 2000
    minutes: float = 4.0  # media per seed
    size: int = 56  # frame side in pixels (the session's max_pixels is size * size)
    window: int = 6  # chunks of context before the question (12 s: "just heard" looks back 10 s)
    kinds: tuple[str, ...] = DEFAULT_KINDS
    steps: int = 400
    batch_size: int = 16
    lr: float = 2e-3
    proj_lr: float = 1e-3
    seed: int = 0
    scenario: str = "standard"


@dataclass
class Item:
    """One example's media and question: `z` are the audio projection's inputs (see `projection_inputs`)."""

    features: ClipFeatures
    z: torch.Tensor
    question: Question


@dataclass
class TrainReport:
    settings: dict
    train_examples: int
    test_examples: int
    before: dict[str, float]
    after: dict[str, float]
    losses: list[float] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def encode_world(model, seed: int, settings: WorldTrainSettings) -> list[tuple[torch.Tensor, torch.Tensor, tuple]]:
    """Per chunk of the world of `seed`: (video [2, n_p, D], audio [50, D], grid_hw), by the model's towers."""
    from operators import Encoder, Preprocessor

    pre = Preprocessor(model.processor.video_processor, "cpu", None, settings.size * settings.size)
    enc = Encoder(model.thinker)
    source = {"type": "world", "seed": seed, "scenario": settings.scenario, "duration": settings.minutes * 60,
              "width": settings.size, "height": settings.size}
    out = []
    for chunk in read_chunks(source):
        e = enc.process(pre.process(chunk.index, chunk.frames, chunk.audio))
        out.append((e.video.cpu(), e.audio.cpu(), e.grid_hw))
    return out


def window_features(chunks: list, last: int, window: int) -> ClipFeatures:
    """The `window` chunks ending with chunk `last`, as one clip."""
    part = chunks[max(0, last - window + 1):last + 1]
    return ClipFeatures(torch.cat([v for v, _, _ in part]), torch.cat([a for _, a, _ in part]),
                        [v.shape[0] for v, _, _ in part], [a.shape[0] for _, a, _ in part], part[0][2])


def world_items(model, seed: int, settings: WorldTrainSettings) -> list[Item]:
    chunks = encode_world(model, seed, settings)
    seconds = settings.minutes * 60
    log = Log(World(seed, settings.scenario, width=settings.size, height=settings.size,
                    duration=seconds).events(seconds))
    proj = model.thinker.model.audio_tower.proj
    items = []
    for t in quiet_moments(log, [2.0 * (k + 1) for k in range(len(chunks))]):
        last = int(round(t / 2.0)) - 1
        if last + 1 < settings.window:
            continue
        features = window_features(chunks, last, settings.window)
        z = projection_inputs(proj, features.audio)
        for kind in settings.kinds:
            q = ask(kind, log, t)
            if q is not None:
                items.append(Item(features, z, q))
    return items


class WorldTask:
    """Lays out items for training and scores them by the options' likelihood."""

    def __init__(self, model) -> None:
        self.model = model
        cfg = model.thinker.config
        self.template = PromptTemplate.from_processor(model.processor, DEFAULT_SYSTEM_PROMPT, cfg.video_token_id,
                                                      cfg.audio_token_id)
        self.tokenizer = model.processor.tokenizer
        self.pad_id = self.tokenizer.pad_token_id

    def ids(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def example(self, item: Item, answer: str | None, audio: torch.Tensor | None = None):
        f = item.features
        if audio is not None:
            f = ClipFeatures(f.video, audio, f.chunk_steps, f.chunk_audio, f.grid_hw)
        return build_example(self.template, f, self.ids(item.question.prompt),
                             None if answer is None else self.ids(answer))

    def task_examples(self, items: list[Item]) -> TaskExamples:
        cfg = self.model.thinker.config
        examples = [self.example(i, i.question.gold) for i in items]
        return TaskExamples(examples, [i.z for i in items],
                            [audio_rows(e, cfg.audio_token_id, cfg.video_token_id) for e in examples])

    @torch.no_grad()
    def accuracy(self, items: list[Item]) -> dict[str, float]:
        """Per question type: how often the gold option has the highest summed log-probability."""
        thinker = self.model.thinker
        thinker.eval()
        proj = thinker.model.audio_tower.proj
        hits: dict[str, list[bool]] = {}
        for item in items:
            audio = proj(item.z)
            batch = collate([self.example(item, o, audio) for o in item.question.options], self.pad_id)
            result = compressed_forward(thinker, batch, None)
            labels = batch.labels.gather(1, result.index)[:, 1:]  # [n_options, L' - 1] the token each logit predicts
            logp = result.logits[:, :-1].float().log_softmax(-1).gather(-1, labels.clamp(min=0).unsqueeze(-1))
            score = (logp.squeeze(-1) * (labels != -100)).sum(1)
            q = item.question
            hits.setdefault(q.kind, []).append(q.options[int(score.argmax())] == q.gold)
        return {k: sum(v) / len(v) for k, v in sorted(hits.items())}


def train_world_model(out: Path, settings: WorldTrainSettings, *, progress: bool = True) -> TrainReport:
    """Train, score on the held-out seed, and write the model folder `out` (see the module docstring)."""
    from omnisift.loading import load_model
    from omnisift.tiny import tiny_model_dir

    torch.manual_seed(settings.seed)
    base = tiny_model_dir()
    model = load_model(base, device="cpu", dtype="float32")
    task = WorldTask(model)
    started = time.perf_counter()
    train = [i for s in settings.train_seeds for i in world_items(model, s, settings)]
    test = world_items(model, settings.test_seed, settings)
    data_s = time.perf_counter() - started
    if progress:
        print(f"{len(train)} training and {len(test)} held-out examples in {data_s:.0f} s", flush=True)
    before = task.accuracy(test)
    losses, _ = train_backbone(model.thinker, task.task_examples(train), task.pad_id, steps=settings.steps,
                               batch_size=settings.batch_size, lr=settings.lr, proj_lr=settings.proj_lr,
                               seed=settings.seed)
    train_s = time.perf_counter() - started - data_s
    after = task.accuracy(test)
    report = TrainReport(asdict(settings), len(train), len(test), before, after, losses,
                         {"data": data_s, "train": train_s, "per_step": train_s / max(1, len(losses))})
    save(model, base, out, report)
    return report


def save(model, base: Path, out: Path, report: TrainReport) -> Path:
    """The model folder: the base's files, the trained language model, LM head and audio projection."""
    from safetensors.torch import load_file, save_file

    from omnisift.training.trainable import TrainableCore

    thinker = model.thinker
    export_pretrained(TrainableCore(thinker).trained_state("full"), "full", base, out)
    weights = out / "model.safetensors"
    tensors = load_file(str(weights))
    proj = thinker.model.audio_tower.proj
    for name in ("weight", "bias"):
        key = f"thinker.audio_tower.proj.{name}"
        tensors[key] = getattr(proj, name).detach().to(tensors[key].dtype).contiguous()
    save_file(tensors, str(weights), metadata={"format": "pt"})
    (out / "training.json").write_text(json.dumps(asdict(report), indent=1))
    return out


def model_card(report: TrainReport, command: str, threshold: float = 0.9) -> str:
    """The folder's README: what it is, how it was made, what it learned and what it did not."""
    s = report.settings
    learned = [k for k, v in report.after.items() if v >= threshold]
    rows = "\n".join(f"| {k} | {report.before[k]:.2f} | {v:.2f} | {'yes' if k in learned else 'no'} |"
                     for k, v in report.after.items())
    return f"""# world-tiny: a tiny Qwen2.5-Omni trained on the synthetic monitoring world

The project's tiny Qwen2.5-Omni (`omnisift.tiny`, seed 0: 2-layer text model 64 wide, tiny towers, a
small byte-level tokenizer with Qwen's special tokens; same classes and `save_pretrained` layout as the 7B)
with its text backbone, LM head and audio projection trained on questions about `streams.world`. The
towers are otherwise the random ones; the OmniSIFT selector is the untrained one.

Made by (CPU, {report.seconds['train'] + report.seconds['data']:.0f} s on a shared 2-core machine):

    {command}

- data: world seeds {', '.join(map(str, s['train_seeds']))} (scenario `{s['scenario']}`, {s['minutes']:g} min
  each, {s['size']}x{s['size']} frames), {report.train_examples} examples: the last {s['window']} chunks
  ({2 * s['window']} s) before a quiet chunk end, one question of each type {', '.join(s['kinds'])}
  asked there, the gold option's text as the answer
- training: `train_backbone` of `pipeline.offline.synthetic` (audio projection PCA-whitened, AdamW, lr
  {s['lr']:g} / {s['proj_lr']:g}, cosine, batch {s['batch_size']}, {s['steps']} steps, seed {s['seed']},
  every token kept), {report.seconds['per_step']:.2f} s per step
- held-out: world seed {s['test_seed']}, {report.test_examples} examples, scored by the options'
  likelihood; loss curve in `training.json`

| question type | before | after | learned (>= {threshold:.0%}) |
|---|---:|---:|---|
{rows}

Types not learned in this budget are not targets of this model. It answers only in {2 * s['window']} s
windows of {s['size']}x{s['size']} media: run the live session with `window_seconds={2 * s['window']}` and
`max_pixels={s['size'] * s['size']}` (`python -m benchmarks.live_accuracy --model <this folder> --size
{s['size']} --window {2 * s['window']}`).
"""
