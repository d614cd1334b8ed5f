"""Proof that selector training works, on a CPU in minutes: a synthetic audio-visual QA task.

Each clip (8 s, 4 chunks) shows a screen whose colour changes every second and plays low noise with
loud noise bursts (distractors) and one short beep (120 ms, about 3 of the clip's 200 audio tokens) of
one of four pitches. The question asks the beep's pitch (A-D). The answer depends on a few salient
audio tokens: if compression drops the beep, the model can only guess.

Steps (all through the real code paths: media written to mp4 with PyAV, decoded by `streams`,
encoded by `operators`' towers into the feature cache, laid out by `omnisift.training`):

1. Generate train and test clips; cache the tiny model's tower outputs once.
2. Per seed: a tiny Qwen2.5-Omni (towers shared, text backbone and selector from the seed) has its
   text backbone trained briefly on the task with all tokens, then frozen.
3. Evaluate at about 25% retention (rho_video 0.5 of 4 tokens per frame, rho_audio 0.8 of 50 per
   chunk: 14 of 58 tokens per chunk kept) with random audio selection, the untrained selector, and
   the selector trained with `Trainer` (hard top-k, straight-through estimator); also full tokens.

    python -m pipeline.synthetic_task --seeds 3 --out docs/training-results

writes `results.md`, `results.json` and learning curves there.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import torch

from omnisift.data import Sample
from omnisift.ratios import Ratios
from omnisift.training import (
    Example, PromptTemplate, RandomScorer, Trainer, TrainSettings, batch_stream, collate, compressed_forward,
    build_example, option_logits, plot_curve,
)

log = logging.getLogger(__name__)

PITCHES = (300.0, 600.0, 1200.0, 2400.0)
NAMES = ("low", "medium", "high", "very high")
QUESTION = "What is the pitch of the beep?"
CLIP_SECONDS = 8
RATE = 16_000
SIZE = 56
FPS = 4
BEEP_SECONDS = 0.32
COLOURS = np.array([(220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 220, 40), (240, 240, 240), (20, 20, 20)])
RATIOS = Ratios(rho_video=0.5, rho_audio=0.8)


@dataclass(frozen=True)
class ClipSpec:
    pitch: int  # index into PITCHES
    beep_start: float  # seconds
    colours: tuple[int, ...]  # per second
    bursts: tuple[float, ...]  # noise burst start times


def random_spec(rng: np.random.Generator) -> ClipSpec:
    beep = float(rng.uniform(0.1, CLIP_SECONDS - BEEP_SECONDS - 0.1))
    bursts = tuple(float(t) for t in rng.uniform(0.1, CLIP_SECONDS - BEEP_SECONDS - 0.1, size=3))
    return ClipSpec(int(rng.integers(len(PITCHES))), beep, tuple(int(c) for c in rng.integers(len(COLOURS),
                                                                                               size=CLIP_SECONDS)),
                    bursts)


def clip_audio(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """[CLIP_SECONDS * 16000] float32: noise floor, three noise bursts, one beep."""
    n = CLIP_SECONDS * RATE
    audio = 0.01 * rng.standard_normal(n)
    for t in spec.bursts:
        s = int(t * RATE)
        audio[s:s + int(BEEP_SECONDS * RATE)] += 0.3 * rng.standard_normal(int(BEEP_SECONDS * RATE))
    s, m = int(spec.beep_start * RATE), int(BEEP_SECONDS * RATE)
    tt = np.arange(m) / RATE
    audio[s:s + m] += 0.8 * np.sin(2 * np.pi * PITCHES[spec.pitch] * tt) * np.hanning(m) ** 0.25
    return np.clip(audio, -1, 1).astype(np.float32)


def write_clip(path: Path, spec: ClipSpec, seed: int) -> Path:
    """An mp4 (H.264 + AAC) of the clip."""
    rng = np.random.default_rng(seed)
    audio = clip_audio(spec, rng)
    with av.open(str(path), "w") as container:
        vs = container.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = SIZE, SIZE, "yuv420p"
        aus = container.add_stream("aac", rate=RATE, layout="mono")
        for i in range(CLIP_SECONDS * FPS):
            frame = np.empty((SIZE, SIZE, 3), np.uint8)
            frame[:] = COLOURS[spec.colours[i // FPS]]
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        step = aus.codec_context.frame_size or 1024
        for start in range(0, len(audio), step):
            frame = av.AudioFrame.from_ndarray(audio[None, start:start + step], format="fltp", layout="mono")
            frame.sample_rate, frame.pts = RATE, start
            for packet in aus.encode(frame):
                container.mux(packet)
        for packet in aus.encode():
            container.mux(packet)
    return path


def make_dataset(folder: Path, n: int, seed: int) -> list[Sample]:
    """Write `n` clips and their samples (also as `data.jsonl`, the training JSONL format)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples, lines = [], []
    for i in range(n):
        spec = random_spec(rng)
        path = folder / f"clip-{i:04d}.mp4"
        if not path.exists():
            write_clip(path, spec, seed * 100_003 + i)
        options = tuple(f"{name} ({int(p)} Hz)" for name, p in zip(NAMES, PITCHES, strict=True))
        sample = Sample(f"clip-{i:04d}", path, QUESTION, "ABCD"[spec.pitch], options,
                        meta={"beep_start": spec.beep_start})
        samples.append(sample)
        lines.append(json.dumps({"id": sample.id, "media": path.name, "question": QUESTION,
                                 "options": list(options), "answer": sample.answer, "beep_start": spec.beep_start}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    return samples


# ---- model -------------------------------------------------------------------------------------

def tiny_model(folder: Path, seed: int, towers_from=None, hidden_size: int = 64):
    """A tiny Qwen2.5-Omni (loaded through `load_model`); towers copied from `towers_from` if given."""
    from omnisift.loading import load_model
    from omnisift.testing import make_tiny_omni

    path = folder / f"tiny-seed{seed}"
    if not (path / "config.json").exists():
        make_tiny_omni(path, seed=seed, hidden_size=hidden_size)
    model = load_model(path, device="cpu", dtype="float32", compress=True)
    if towers_from is not None:
        towers = {k: v for k, v in towers_from.thinker.state_dict().items()
                  if k.startswith(("model.audio_tower.", "model.visual."))}
        missing = model.thinker.load_state_dict(towers, strict=False)
        assert not missing.unexpected_keys
    return model


def train_backbone(thinker, examples: list[Example], pad_id: int, *, steps: int, batch_size: int, lr: float,
                   seed: int) -> list[float]:
    """Train the text backbone (language model + head) on the task with every token kept."""
    thinker.requires_grad_(False)
    params = list(thinker.model.language_model.parameters()) + list(thinker.lm_head.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / 20))
    thinker.train()
    losses = []
    for step, batch in enumerate(batch_stream(examples, batch_size, pad_id, seed=seed)):
        if step >= steps:
            break
        loss = compressed_forward(thinker, batch, None).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    thinker.eval()
    thinker.requires_grad_(False)
    return losses


@torch.no_grad()
def evaluate(thinker, examples: list[Example], samples: list[Sample], option_ids: list[int], pad_id: int,
             ratios: Ratios | None, selector=None, batch_size: int = 32) -> dict:
    """Accuracy by score over the options, kept fraction of tokens, and how often a beep token was kept."""
    correct, total, kept, before, beep_kept = 0, 0, 0, 0, 0
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i:i + batch_size], pad_id)
        result = compressed_forward(thinker, batch, ratios, selector)
        pred = option_logits(result, batch, option_ids).argmax(1)
        for row, s in enumerate(samples[i:i + batch_size]):
            correct += int(pred[row]) == s.answer_index
            total += 1
            kept_idx = result.index[row][result.kept_mask[row].bool()]
            ids = batch.input_ids[row, kept_idx]
            audio_pos = batch.positions[0, row, kept_idx][ids == thinker.config.audio_token_id]
            first_audio = int(batch.positions[0, row][batch.input_ids[row] == thinker.config.audio_token_id].min())
            k = audio_pos - first_audio
            b0 = s.meta["beep_start"] * 25
            beep_kept += bool(((k + 1 > b0) & (k < b0 + BEEP_SECONDS * 25)).any())
        kept += result.video[1] + result.audio[1]
        before += result.video[0] + result.audio[0]
    return {"accuracy": correct / total, "retention": kept / before, "beep_kept": beep_kept / total, "n": total}


# ---- the experiment ----------------------------------------------------------------------------

@dataclass
class SeedResult:
    seed: int
    full: dict
    random: dict
    untrained: dict
    trained: dict
    backbone_loss: list[float]
    selector_history: list
    seconds: float


def run_seed(seed: int, work: Path, out: Path, ref_model, cache, train_samples, test_samples, args) -> SeedResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = tiny_model(work, seed, towers_from=ref_model)
    thinker, tok = model.thinker, model.processor.tokenizer
    template = PromptTemplate.from_processor(model.processor, "You are a helpful assistant.",
                                             thinker.config.video_token_id, thinker.config.audio_token_id)
    # The options are the same for every clip, so the question is asked without them (shorter sequences).
    q = tok(QUESTION, add_special_tokens=False)["input_ids"]
    train_ex = [build_example(template, cache.get(s.media), q, tok(s.answer, add_special_tokens=False)["input_ids"])
                for s in train_samples]
    test_ex = [build_example(template, cache.get(s.media), q, None) for s in test_samples]
    pad_id = tok.pad_token_id
    option_ids = [tok(letter, add_special_tokens=False)["input_ids"][0] for letter in "ABCD"]
    backbone_loss = train_backbone(thinker, train_ex, pad_id, steps=args.backbone_steps, batch_size=16,
                                   lr=args.backbone_lr, seed=seed)
    full = evaluate(thinker, test_ex, test_samples, option_ids, pad_id, None)
    randoms = [evaluate(thinker, test_ex, test_samples, option_ids, pad_id, RATIOS, RandomScorer(seed * 10 + r))
               for r in range(3)]
    random_mean = {k: float(np.mean([r[k] for r in randoms])) for k in randoms[0]}
    untrained = evaluate(thinker, test_ex, test_samples, option_ids, pad_id, RATIOS)
    settings = TrainSettings(steps=args.selector_steps, batch_size=16, lr=args.selector_lr, warmup_steps=10,
                             min_lr_ratio=0.1, rho_video=RATIOS.rho_video, rho_audio=RATIOS.rho_audio,
                             save_every=0, log_every=10, seed=seed)
    trainer = Trainer(thinker, settings, out_dir=work / f"selector-seed{seed}")
    trainer.run(batch_stream(train_ex, settings.batch_size, pad_id, seed=seed), progress=args.progress)
    thinker.eval()
    trained = evaluate(thinker, test_ex, test_samples, option_ids, pad_id, RATIOS)
    plot_curve(trainer.history, out / f"selector-curve-seed{seed}.png", title=f"VGAS training, seed {seed}")
    return SeedResult(seed, full, random_mean, untrained, trained, backbone_loss,
                      [list(x) for x in trainer.history.train], time.perf_counter() - start)


def summary_table(results: list[SeedResult]) -> str:
    rows = ["| seed | full tokens | random audio @25% | untrained VGAS @25% | trained VGAS @25% | retention | "
            "beep kept: random / untrained / trained |", "|---|---|---|---|---|---|---|"]
    for r in results:
        rows.append(f"| {r.seed} | {r.full['accuracy']:.3f} | {r.random['accuracy']:.3f} | "
                    f"{r.untrained['accuracy']:.3f} | {r.trained['accuracy']:.3f} | {r.trained['retention']:.1%} | "
                    f"{r.random['beep_kept']:.2f} / {r.untrained['beep_kept']:.2f} / {r.trained['beep_kept']:.2f} |")
    mean = lambda key, f: float(np.mean([getattr(r, key)[f] for r in results]))  # noqa: E731
    std = lambda key, f: float(np.std([getattr(r, key)[f] for r in results]))  # noqa: E731
    rows.append(f"| mean ± sd | {mean('full', 'accuracy'):.3f} ± {std('full', 'accuracy'):.3f} | "
                f"{mean('random', 'accuracy'):.3f} ± {std('random', 'accuracy'):.3f} | "
                f"{mean('untrained', 'accuracy'):.3f} ± {std('untrained', 'accuracy'):.3f} | "
                f"{mean('trained', 'accuracy'):.3f} ± {std('trained', 'accuracy'):.3f} | "
                f"{mean('trained', 'retention'):.1%} | {mean('random', 'beep_kept'):.2f} / "
                f"{mean('untrained', 'beep_kept'):.2f} / {mean('trained', 'beep_kept'):.2f} |")
    return "\n".join(rows)


def plot_all(results: list[SeedResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for r in results:
        ys = r.backbone_loss
        axes[0].plot(ys, alpha=0.7, label=f"seed {r.seed}")
        ys = [loss for _, loss in r.selector_history]
        w = 10
        smooth = [float(np.mean(ys[max(0, i - w + 1):i + 1])) for i in range(len(ys))]
        axes[1].plot(smooth, label=f"seed {r.seed}")
    axes[0].set_title("1. text backbone, all tokens")
    axes[1].set_title("2. VGAS selector @25% retention (running mean 10)")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel("answer loss")
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--train", type=int, default=320)
    parser.add_argument("--test", type=int, default=160)
    parser.add_argument("--backbone-steps", type=int, default=400)
    parser.add_argument("--backbone-lr", type=float, default=3e-3)
    parser.add_argument("--selector-steps", type=int, default=120)
    parser.add_argument("--selector-lr", type=float, default=1e-3)
    parser.add_argument("--work", type=Path, default=Path("/tmp/omnisift-synthetic"))
    parser.add_argument("--out", type=Path, default=Path("docs/training-results"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from operators import Encoder, Preprocessor
    from pipeline.features import FeatureCache, cache_features

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_samples = make_dataset(args.work / "train", args.train, seed=1)
    test_samples = make_dataset(args.work / "test", args.test, seed=2)
    t_media = time.perf_counter() - started
    ref = tiny_model(args.work, 0)
    cache = FeatureCache(args.work / "cache", shard_size=64)
    pre = Preprocessor(ref.processor.video_processor, "cpu")
    enc = Encoder(ref.thinker)
    train_samples, s1 = cache_features(train_samples, cache, pre, enc, progress=args.progress)
    test_samples, s2 = cache_features(test_samples, cache, pre, enc, progress=args.progress)
    t_cache = time.perf_counter() - started - t_media
    print(s1.line(), "|", s2.line(), flush=True)
    results = [run_seed(seed, args.work, args.out, ref, cache, train_samples, test_samples, args)
               for seed in range(args.seeds)]
    table = summary_table(results)
    plot_all(results, args.out / "curves.png")
    total = time.perf_counter() - started
    (args.out / "results.json").write_text(json.dumps(
        {"args": {k: str(v) for k, v in vars(args).items()}, "media_seconds": t_media, "cache_seconds": t_cache,
         "total_seconds": total, "seeds": [copy.deepcopy(r.__dict__) for r in results]}, indent=1))
    (args.out / "results.md").write_text(table + "\n")
    print(table)
    print(f"media {t_media:.0f} s, feature cache {t_cache:.0f} s, total {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
