"""One seed of the synthetic task, end to end (steps 2 and 3 of the package docstring): train the backbone,
measure full tokens and random audio selection, train the selector from several inits, keep the one best on
held-out training clips, and only then evaluate on the test clips."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from omnisift.data import Sample
from omnisift.ratios import Ratios
from omnisift.training import PromptTemplate, RandomScorer, Trainer, TrainSettings, batch_stream, build_example
from omnisift.training.trainable import TrainableCore, is_trained
from pipeline.offline.presets import TRAIN_PRESETS
from pipeline.offline.synthetic.backbone import (
    TaskExamples,
    audio_rows,
    projection_inputs,
    tiny_model,
    train_backbone,
)
from pipeline.offline.synthetic.clips import PITCHES, QUESTION, RATIOS
from pipeline.offline.synthetic.report import SeedResult, plot_inits
from pipeline.offline.synthetic.scoring import evaluate


@dataclass
class Task:
    """One seed's model and data, as every step of the experiment needs them."""

    model: object
    train: TaskExamples
    test: TaskExamples
    train_samples: list[Sample]
    test_samples: list[Sample]
    fit_idx: list[int]  # training clips the backbone and the selector train on
    val_idx: list[int]  # held-out training clips: they decide when to stop and which init to keep
    option_ids: list[int]
    pad_id: int

    @property
    def thinker(self):
        return self.model.thinker

    def score(self, which: str, ratios: Ratios | None, selector=None) -> dict:
        """`evaluate` on the test clips ("test") or the held-out training clips ("val")."""
        if which == "test":
            return evaluate(self.thinker, self.test.examples, self.test_samples, self.option_ids, self.pad_id,
                            ratios, selector)
        val = [self.train.examples[i] for i in self.val_idx]
        return evaluate(self.thinker, val, [self.train_samples[i] for i in self.val_idx], self.option_ids,
                        self.pad_id, ratios, selector)


def task_examples(model, cache, samples: list[Sample], with_answer: bool) -> TaskExamples:
    thinker, tok = model.thinker, model.processor.tokenizer
    cfg = thinker.config
    template = PromptTemplate.from_processor(model.processor, "You are a helpful assistant.",
                                             cfg.video_token_id, cfg.audio_token_id)
    # The options are the same for every clip, so the question is asked without them (shorter sequences).
    q = tok(QUESTION, add_special_tokens=False)["input_ids"]
    proj = thinker.model.audio_tower.proj
    examples, zs, rows = [], [], []
    for s in samples:
        features = cache.get(s.media)
        answer = tok(s.answer, add_special_tokens=False)["input_ids"] if with_answer else None
        examples.append(build_example(template, features, q, answer))
        zs.append(projection_inputs(proj, features.audio))
        rows.append(audio_rows(examples[-1], cfg.audio_token_id, cfg.video_token_id))
        assert int(rows[-1].sum()) == zs[-1].shape[0]
    return TaskExamples(examples, zs, rows)


def projection_check(model, sample: Sample, examples: TaskExamples, index: int) -> float:
    """Run the (now trained) audio tower through `operators` on one clip again and compare its audio
    outputs with the features the evaluation used: they must be the same."""
    from operators import Encoder, Preprocessor
    from pipeline.offline.features import encode_file

    fresh = encode_file(sample.media, Preprocessor(model.processor.video_processor, "cpu"), Encoder(model.thinker))
    used = examples.examples[index].av_features[examples.is_audio[index]]
    return float((fresh.audio - used).abs().max())


def _seed_job(seed: int, args, train_samples: list[Sample], test_samples: list[Sample]) -> SeedResult:
    """`run_seed` in a worker process: the reference towers and the feature cache are loaded from disk."""
    from transformers.utils import logging as hf_logging

    from pipeline.offline.features import FeatureCache

    logging.basicConfig(level=logging.WARNING)
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(args.threads)
    ref = tiny_model(args.work, 0)
    cache = FeatureCache(args.work / "cache", shard_size=64)
    return run_seed(seed, args.work, args.out, ref, cache, train_samples, test_samples, args)


def prepare(seed: int, work: Path, ref_model, cache, train_samples: list[Sample], test_samples: list[Sample],
            val: int) -> Task:
    """The seed's tiny model (towers shared with `ref_model`) and its laid-out examples; the last `val`
    training clips are held out."""
    torch.manual_seed(seed)
    model = tiny_model(work, seed, towers_from=ref_model)
    tok = model.processor.tokenizer
    train = task_examples(model, cache, train_samples, with_answer=True)
    test = task_examples(model, cache, test_samples, with_answer=False)
    n_fit = len(train_samples) - val
    option_ids = [tok(letter, add_special_tokens=False)["input_ids"][0] for letter in "ABCD"[:len(PITCHES)]]
    return Task(model, train, test, train_samples, test_samples, list(range(n_fit)),
                list(range(n_fit, len(train_samples))), option_ids, tok.pad_token_id)


def fit_backbone(task: Task, seed: int, args) -> tuple[list[float], list]:
    """Train the backbone on the fit clips until the held-out training clips reach `args.target` (the test
    clips are never looked at before the final evaluation); the examples then carry the trained tower's
    audio features. Returns the losses and the (step, held-out accuracy) points."""
    thinker = task.thinker
    losses, val_points = train_backbone(
        thinker, task.train.subset(task.fit_idx), task.pad_id, steps=args.backbone_steps,
        batch_size=args.batch_size, lr=args.backbone_lr, proj_lr=args.proj_lr, seed=seed,
        val=task.train.subset(task.val_idx) if args.val else None,
        val_samples=[task.train_samples[i] for i in task.val_idx], option_ids=task.option_ids, target=args.target,
        eval_every=args.eval_every, min_steps=args.min_backbone_steps)
    proj = thinker.model.audio_tower.proj
    task.train, task.test = task.train.with_projection(proj), task.test.with_projection(proj)
    return losses, val_points


def selector_init(task: Task, seed: int, j: int) -> None:
    """Put selector init `j` in place: 0 is the model's own (the one earlier runs used); j > 0 a fresh
    `VisionGuidedAudioSelector` with PyTorch's default init from seed `seed * 1000 + j`."""
    from omnisift.selector import VisionGuidedAudioSelector

    compressor = task.thinker.compressor
    if j > 0:
        torch.manual_seed(seed * 1000 + j)
        compressor.load_state_dict(VisionGuidedAudioSelector(compressor.d_model).state_dict())


def train_selector(task: Task, settings: TrainSettings, args, seed: int, out_dir: Path) -> list:
    """Train the selector in place on the fit clips; its loss history.

    Warm-up (training only): the first selector steps drop fewer audio tokens, so the beep is often kept
    and its tokens get a gradient through the straight-through mask early on; then the target ratios.
    Inference (`evaluate`) always uses RATIOS with OmniSIFT's unchanged rule."""
    trainer = Trainer(task.thinker, settings, out_dir=out_dir)
    if args.selector_warmup:
        trainer.ratios = Ratios(rho_video=RATIOS.rho_video, rho_audio=args.warmup_rho_audio)

    def after_step(r) -> None:
        if r.optimizer_step >= args.selector_warmup:
            trainer.ratios = RATIOS

    fit = [task.train.examples[i] for i in task.fit_idx]
    trainer.run(batch_stream(fit, settings.batch_size, task.pad_id, seed=seed), progress=args.progress,
                on_step=after_step)
    task.thinker.eval()
    return [list(x) for x in trainer.history.train]


def selector_settings(args, seed: int) -> TrainSettings:
    """The selector stage's settings. Without `--preset`: this task's own (lr `--selector-lr` or 1e-3, 10
    warm-up steps, cosine to 0.1). With one: what trains, the lr, the warm-up fraction, the final lr and
    the precision come from the preset (`pipeline.offline.presets`); the steps, batch and ratios stay the
    task's, which is far smaller than a preset's epoch at global batch 128."""
    common = dict(steps=args.selector_steps, batch_size=args.batch_size, rho_video=RATIOS.rho_video,
                  rho_audio=RATIOS.rho_audio, save_every=0, log_every=10, seed=seed, gate=args.gate)
    if args.preset is None:
        return TrainSettings(lr=args.selector_lr or 1e-3, warmup_steps=10, min_lr_ratio=0.1, **common)
    preset = {**{"lr": 1e-4, "min_lr_ratio": 0.1, "trainable": "selector", "precision": "auto"},
              **TRAIN_PRESETS[args.preset]}
    warmup = math.ceil(preset["warmup_ratio"] * args.selector_steps) if "warmup_ratio" in preset else 50
    return TrainSettings(lr=args.selector_lr or preset["lr"], warmup_steps=warmup,
                         min_lr_ratio=preset["min_lr_ratio"], trainable=preset["trainable"],
                         precision=preset["precision"], **common)


def trained_state(thinker, mode: str) -> dict[str, torch.Tensor]:
    """A copy of what `mode` trains (thinker state-dict keys): the selector, plus the language model."""
    prefixes = {"language_model.": "model.language_model.", "lm_head.": "lm_head.", "compressor.": "compressor."}
    state = TrainableCore(thinker).state_dict()
    return {next(v + k[len(p):] for p, v in prefixes.items() if k.startswith(p)): t.detach().clone()
            for k, t in state.items() if is_trained(k, mode)}


def train_inits(task: Task, seed: int, work: Path, args) -> tuple[list[dict], list, list]:
    """Every selector init trained with the same settings and data order (the language model, when it
    trains too, restarts from the backbone each time), each scored on the held-out training clips before
    and after: (per-init records, trained states, loss histories)."""
    settings = selector_settings(args, seed)
    backbone = trained_state(task.thinker, settings.trainable)
    inits, states, histories = [], [], []
    for j in range(args.inits):
        task.thinker.load_state_dict(backbone, strict=False)
        selector_init(task, seed, j)
        task.thinker.eval()
        init_state = trained_state(task.thinker, settings.trainable)
        val_before = task.score("val", RATIOS)
        histories.append(train_selector(task, settings, args, seed, work / f"selector-seed{seed}-init{j}"))
        inits.append({"init": j, "val_untrained": val_before, "val_trained": task.score("val", RATIOS),
                      "init_state": init_state})
        states.append(trained_state(task.thinker, settings.trainable))
    return inits, states, histories


def choose_and_test(task: Task, inits: list[dict], states: list) -> tuple[int, dict, dict, dict]:
    """Keep the init with the best held-out training accuracy (ties: the lower index); only then score the
    test clips. Every init is reported on them for transparency; only the chosen one is the result.
    Returns (chosen, trained, untrained, untrained mean over the inits), each on the test clips."""
    thinker = task.thinker
    chosen = max(range(len(inits)), key=lambda j: (inits[j]["val_trained"]["accuracy"], -j))
    for j, info in enumerate(inits):
        thinker.load_state_dict(info.pop("init_state"), strict=False)
        info["test_untrained"] = task.score("test", RATIOS)
        thinker.load_state_dict(states[j], strict=False)
        info["test_trained"] = task.score("test", RATIOS)
    thinker.load_state_dict(states[chosen], strict=False)
    trained = task.score("test", RATIOS)
    assert trained == inits[chosen]["test_trained"]
    untrained = inits[chosen]["test_untrained"]
    untrained_mean = {k: float(np.mean([i["test_untrained"][k] for i in inits])) for k in untrained}
    return chosen, trained, untrained, untrained_mean


def run_seed(seed: int, work: Path, out: Path, ref_model, cache, train_samples, test_samples, args) -> SeedResult:
    """The whole experiment for one seed; prints one line and draws the seed's selector curves."""
    start = time.perf_counter()
    task = prepare(seed, work, ref_model, cache, train_samples, test_samples, args.val)
    backbone_loss, backbone_val = fit_backbone(task, seed, args)
    check = projection_check(task.model, test_samples[0], task.test, 0)
    full = task.score("test", None)
    randoms = [task.score("test", RATIOS, RandomScorer(seed * 100 + r)) for r in range(args.random_draws)]
    random_mean = {k: float(np.mean([r[k] for r in randoms])) for k in randoms[0]}
    inits, states, histories = train_inits(task, seed, work, args)
    chosen, trained, untrained, untrained_mean = choose_and_test(task, inits, states)
    plot_inits(histories, chosen, out / f"selector-curve-seed{seed}.png", seed)
    result = SeedResult(seed, full, random_mean, untrained, trained, backbone_loss, [list(x) for x in backbone_val],
                        histories[chosen], check, time.perf_counter() - start, chosen, inits, untrained_mean,
                        histories)
    print(seed_line(result), flush=True)
    return result


def seed_line(r: SeedResult) -> str:
    """One line of what a seed measured."""
    val = f"backbone {len(r.backbone_loss)} steps, val {r.backbone_val[-1][1]:.2f}; " if r.backbone_val else ""
    per_init = ", ".join(f"init {i['init']}: val {i['val_untrained']['accuracy']:.2f}->"
                         f"{i['val_trained']['accuracy']:.2f}" for i in r.inits)
    return (f"seed {r.seed}: {val}full {r.full['accuracy']:.3f}, random {r.random['accuracy']:.3f} "
            f"(beep kept {r.random['beep_kept']:.2f}), chosen init {r.chosen} [{per_init}], untrained "
            f"{r.untrained['accuracy']:.3f} ({r.untrained['beep_kept']:.2f}), trained {r.trained['accuracy']:.3f} "
            f"({r.trained['beep_kept']:.2f}), retention {r.trained['retention']:.3f}, projection check "
            f"{r.projection_check:.1e}, {r.seconds:.0f} s")
