"""Proof that selector training works, on a CPU in minutes: a synthetic audio-visual QA task.

Each clip (4 s, 2 chunks) shows a screen whose colour changes every second and plays low noise with
two loud 80 ms noise bursts (distractors) and one 80 ms beep (2 of the clip's 100 audio tokens) of one
of four pitches (300/600/1200/2400 Hz). The question asks the beep's pitch (A-D). The answer depends on
a few salient audio tokens: if compression drops the beep, the model can only guess.

Steps (all through the real code paths: media written to mp4 with PyAV, decoded by `streams`,
encoded by `operators`' towers into the feature cache, laid out by `omnisift.training`):

1. Generate train and test clips (different seeds, different files); cache the tiny model's tower
   outputs once.
2. Per seed: a tiny Qwen2.5-Omni (towers shared, text backbone and selector from the seed) has its
   text backbone and its audio tower's final projection (`audio_tower.proj`, re-initialised by PCA
   whitening on the training clips, see `whiten_projection`) trained on the task with all tokens,
   then frozen. Training stops once full-token accuracy on held-out *training* clips (`--val`, never
   the test clips) reaches `--target`. The projection's inputs are recovered exactly from the cached
   outputs, and `projection_check` reruns the trained tower on a test clip to confirm the features used.
3. Evaluate at about 25% retention (rho_video 0.5 of 4 tokens per frame, rho_audio 0.8 of 50 per
   chunk: 14 of 58 tokens per chunk kept) with random audio selection (mean of `--random-draws`), the
   untrained selector, and the selector trained with `Trainer` (hard top-k, straight-through
   estimator through the gate `--gate`: `embedding` as in DESIGN section 3, or `attention`, see
   `omnisift.key_gate`); also full tokens. The selector's first `--selector-warmup` training steps use a lower
   audio drop ratio (`--warmup-rho-audio`); evaluation always uses the ratios above.
   The selector is trained from `--inits` initialisations (the seed's own and fresh ones) on the
   backbone's fit clips; the one with the best accuracy at those ratios on the held-out *training*
   clips is kept (model selection on validation data). Only then are the test clips evaluated.

Seeds run in parallel processes (`--jobs`).

    python -m pipeline.offline.synthetic_task --seed-ids 5 6 7 8 9 --gate attention --selector-warmup 0 \
        --work /tmp/w --out docs/training-results/attention --no-progress

writes `results.md`, `results.json` and learning curves there.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import time
from dataclasses import dataclass, replace
from pathlib import Path

import av
import numpy as np
import torch

from omnisift.data import Sample
from omnisift.ratios import Ratios
from omnisift.training import (
    GATES,
    Example,
    PromptTemplate,
    RandomScorer,
    Trainer,
    TrainSettings,
    batch_stream,
    build_example,
    collate,
    compressed_forward,
    cosine_with_warmup,
    option_logits,
)

log = logging.getLogger(__name__)

PITCHES = (300.0, 600.0, 1200.0, 2400.0)
NAMES = ("low", "medium", "high", "very high")
QUESTION = "What is the pitch of the beep?"
CLIP_SECONDS = 4
RATE = 16_000
SIZE = 56
FPS = 4
BEEP_SECONDS = 0.08  # 2 audio tokens (25 per second)
BURST_SECONDS = 0.08  # distractors: loud noise bursts as short as the beep
N_BURSTS = 2
# The audio track ends one AAC frame early: the encoder's padding would otherwise make the decoder
# emit a third, 32 ms chunk after the two 2-second ones.
AUDIO_SAMPLES = CLIP_SECONDS * RATE - 1024
COLOURS = np.array([(220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 220, 40), (240, 240, 240), (20, 20, 20)])
RATIOS = Ratios(rho_video=0.5, rho_audio=0.8)


@dataclass(frozen=True)
class ClipSpec:
    pitch: int  # index into PITCHES
    beep_start: float  # seconds
    colours: tuple[int, ...]  # per second
    bursts: tuple[float, ...]  # noise burst start times


def random_spec(rng: np.random.Generator) -> ClipSpec:
    latest = AUDIO_SAMPLES / RATE - BEEP_SECONDS - 0.1
    beep = float(rng.uniform(0.1, latest))
    bursts = []
    while len(bursts) < N_BURSTS:  # distractors never overlap the beep
        t = float(rng.uniform(0.1, latest))
        if abs(t - beep) > BEEP_SECONDS + BURST_SECONDS:
            bursts.append(t)
    bursts = tuple(bursts)
    return ClipSpec(int(rng.integers(len(PITCHES))), beep, tuple(int(c) for c in rng.integers(len(COLOURS),
                                                                                               size=CLIP_SECONDS)),
                    bursts)


def clip_audio(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """[AUDIO_SAMPLES] float32: noise floor, short loud noise bursts, one beep."""
    audio = 0.01 * rng.standard_normal(AUDIO_SAMPLES)
    for t in spec.bursts:
        s, m = int(t * RATE), int(BURST_SECONDS * RATE)
        audio[s:s + m] += 0.3 * rng.standard_normal(len(audio[s:s + m]))
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
    from omnisift.tiny import make_tiny_omni

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


def projection_inputs(proj: torch.nn.Linear, audio: torch.Tensor) -> torch.Tensor:
    """Invert the audio tower's final projection: the inputs z [A, d] with `proj(z) == audio` [A, D].

    The tower ends in `proj(ln_post(h))` with `proj` a d -> D linear map (d = 32 < D = 64, full column rank),
    so its cached outputs determine z exactly; training `proj` then needs no second run of the tower.
    """
    w, b = proj.weight.detach().double(), proj.bias.detach().double()
    z = ((audio.double() - b) @ torch.linalg.pinv(w).T).float()
    with torch.no_grad():
        err = float((proj(z) - audio).abs().max())
    if err > 1e-4:
        raise ValueError(f"audio features are not in the projection's range (error {err:.2e})")
    return z


def audio_rows(example: Example, audio_token_id: int, video_token_id: int) -> torch.Tensor:
    """[N_av] bool: which rows of `example.av_features` are audio tokens."""
    ids = example.input_ids
    return ids[(ids == audio_token_id) | (ids == video_token_id)] == audio_token_id


@dataclass
class TaskExamples:
    """Laid-out examples plus, per example, the audio projection's inputs and which rows are audio."""

    examples: list[Example]
    z: list[torch.Tensor]  # [n_audio, d]
    is_audio: list[torch.Tensor]  # [N_av] bool

    def batch(self, idx: list[int], pad_id: int, proj: torch.nn.Linear | None = None):
        """Collated examples; with `proj`, the audio rows are recomputed as `proj(z)` (differentiably)."""
        batch = collate([self.examples[i] for i in idx], pad_id)
        if proj is not None:
            is_audio = torch.cat([self.is_audio[i] for i in idx]).unsqueeze(-1)
            audio = proj(torch.cat([self.z[i] for i in idx]))
            batch = replace(batch, av_features=batch.av_features.masked_scatter(is_audio, audio))
        return batch

    def subset(self, idx: list[int]) -> TaskExamples:
        return TaskExamples([self.examples[i] for i in idx], [self.z[i] for i in idx],
                            [self.is_audio[i] for i in idx])

    @torch.no_grad()
    def with_projection(self, proj: torch.nn.Linear) -> TaskExamples:
        """The examples with their audio features recomputed by `proj` (the trained tower's outputs)."""
        out = []
        for e, z, a in zip(self.examples, self.z, self.is_audio, strict=True):
            feats = e.av_features.clone()
            feats[a] = proj(z)
            out.append(replace(e, av_features=feats))
        return TaskExamples(out, self.z, self.is_audio)


@torch.no_grad()
def whiten_projection(proj: torch.nn.Linear, z: torch.Tensor, eps: float = 1e-6) -> None:
    """Re-initialise the audio tower's final projection as PCA whitening of its inputs `z` [N, d].

    The tiny model's random tower barely encodes its input: over 96% of its output is the audio
    position embedding, identical in every clip, and what a sound changes is about 1% of it (DESIGN:
    the real tower is pretrained and does not have this problem). Whitening (statistics of the
    training clips' audio tokens only, no labels) gives every direction of z unit variance, so the
    directions in which sounds differ become as large as the position ones; training then goes on
    from there. Output: `Q diag((lambda + eps)^-1/2) U^T (z - mean) / sqrt(d)`, with U, lambda the
    eigenvectors and eigenvalues of z's covariance and Q an orthonormal basis of the old weight's columns.
    """
    z = z.double()
    mean = z.mean(0)
    lam, u = torch.linalg.eigh(torch.cov((z - mean).T))
    q, _ = torch.linalg.qr(proj.weight.double())  # [D, d]
    w = q @ torch.diag((lam.clamp(min=0) + eps).rsqrt()) @ u.T / z.shape[1] ** 0.5
    proj.weight.copy_(w.to(proj.weight.dtype))
    proj.bias.copy_((-(w @ mean)).to(proj.bias.dtype))


def train_backbone(thinker, data: TaskExamples, pad_id: int, *, steps: int, batch_size: int, lr: float,
                   proj_lr: float, seed: int, whiten: bool = True, val: TaskExamples | None = None,
                   val_samples: list[Sample] | None = None, option_ids: list[int] | None = None,
                   target: float = 1.0, eval_every: int = 100, min_steps: int = 0,
                   ) -> tuple[list[float], list[tuple[int, float]]]:
    """Train the text backbone (embeddings, layers, head) and the audio tower's final projection on the
    task with every token kept (the projection first re-initialised by `whiten_projection` on the
    training clips); everything is frozen afterwards.

    With `val` (held-out *training* clips, never the test clips), full-token accuracy on them is measured
    every `eval_every` steps and training stops once it reaches `target` (after at least `min_steps`),
    or after `steps`. Returns the per-step losses and the (step, validation accuracy) points."""
    thinker.requires_grad_(False)
    proj = thinker.model.audio_tower.proj
    if whiten:
        whiten_projection(proj, torch.cat(data.z))
    backbone = list(thinker.model.language_model.parameters()) + list(thinker.lm_head.parameters())
    params = backbone + list(proj.parameters())
    for p in params:
        p.requires_grad_(True)
    optimizer = torch.optim.AdamW([{"params": backbone, "lr": lr}, {"params": list(proj.parameters()), "lr": proj_lr}],
                                  weight_decay=0.0)
    warmup = max(1, steps // 20)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: cosine_with_warmup(s, warmup, steps, min_ratio=0.05))
    thinker.train()
    losses = []
    order: list[int] = []
    rng = np.random.default_rng(seed)
    val_points: list[tuple[int, float]] = []
    for step in range(1, steps + 1):
        if len(order) < batch_size:
            order = [int(i) for i in rng.permutation(len(data.examples))]
        idx, order = order[:batch_size], order[batch_size:]
        loss = compressed_forward(thinker, data.batch(idx, pad_id, proj), None).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if val is not None and (step % eval_every == 0 or step == steps):
            thinker.eval()
            acc = evaluate(thinker, val.with_projection(proj).examples, val_samples, option_ids, pad_id,
                           None)["accuracy"]
            thinker.train()
            val_points.append((step, acc))
            if acc >= target and step >= min_steps:
                break
    thinker.eval()
    thinker.requires_grad_(False)
    return losses, val_points


def beep_tokens(sample: Sample) -> tuple[float, float]:
    """The beep's span in audio-token units (25 per second)."""
    b0 = sample.meta["beep_start"] * 25
    return b0, b0 + BEEP_SECONDS * 25


@torch.no_grad()
def evaluate(thinker, examples: list[Example], samples: list[Sample], option_ids: list[int], pad_id: int,
             ratios: Ratios | None, selector=None, batch_size: int = 32) -> dict:
    """Accuracy by score over the options, kept fraction of audio+video tokens, and how often a beep
    token (an audio token at least half covered by the beep) was kept."""
    correct, total, kept, before, beep_kept = 0, 0, 0, 0, 0
    audio_id = thinker.config.audio_token_id
    for i in range(0, len(examples), batch_size):
        batch = collate(examples[i:i + batch_size], pad_id)
        result = compressed_forward(thinker, batch, ratios, selector)
        pred = option_logits(result, batch, option_ids).argmax(1)
        for row, s in enumerate(samples[i:i + batch_size]):
            correct += int(pred[row]) == s.answer_index
            total += 1
            kept_idx = result.index[row][result.kept_mask[row].bool()]
            ids = batch.input_ids[row, kept_idx]
            audio_pos = batch.positions[0, row, kept_idx][ids == audio_id]
            first_audio = int(batch.positions[0, row][batch.input_ids[row] == audio_id].min())
            k = (audio_pos - first_audio).double()
            b0, b1 = beep_tokens(s)
            overlap = (torch.minimum(k + 1, torch.tensor(b1)) - torch.maximum(k, torch.tensor(b0))).clamp(min=0)
            beep_kept += bool((overlap >= 0.5).any())
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
    backbone_val: list  # (step, full-token accuracy on the held-out training clips)
    selector_history: list
    projection_check: float  # max |tower rerun - features used|, on one test clip
    seconds: float
    chosen: int = 0  # the selector init picked on the held-out training clips
    inits: list = None  # per init: accuracy on the held-out training clips (before/after), and on test
    untrained_mean: dict = None  # the untrained selector on test, mean over the inits
    init_histories: list = None  # selector loss curve of every init


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


def run_seed(seed: int, work: Path, out: Path, ref_model, cache, train_samples, test_samples, args) -> SeedResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    model = tiny_model(work, seed, towers_from=ref_model)
    thinker, tok = model.thinker, model.processor.tokenizer
    train_data = task_examples(model, cache, train_samples, with_answer=True)
    test_data = task_examples(model, cache, test_samples, with_answer=False)
    pad_id = tok.pad_token_id
    option_ids = [tok(letter, add_special_tokens=False)["input_ids"][0] for letter in "ABCD"[:len(PITCHES)]]
    # Held-out *training* clips decide when the backbone has learned the task (the test clips are never
    # looked at before the final evaluation); the backbone trains on the other training clips.
    n_fit = len(train_samples) - args.val
    fit_idx, val_idx = list(range(n_fit)), list(range(n_fit, len(train_samples)))
    backbone_loss, backbone_val = train_backbone(
        thinker, train_data.subset(fit_idx), pad_id, steps=args.backbone_steps, batch_size=args.batch_size,
        lr=args.backbone_lr, proj_lr=args.proj_lr, seed=seed, val=train_data.subset(val_idx) if args.val else None,
        val_samples=train_samples[n_fit:], option_ids=option_ids, target=args.target, eval_every=args.eval_every,
        min_steps=args.min_backbone_steps)
    proj = thinker.model.audio_tower.proj
    train_ex = train_data.with_projection(proj).examples
    test_data = test_data.with_projection(proj)
    test_ex = test_data.examples
    check = projection_check(model, test_samples[0], test_data, 0)
    full = evaluate(thinker, test_ex, test_samples, option_ids, pad_id, None)
    randoms = [evaluate(thinker, test_ex, test_samples, option_ids, pad_id, RATIOS, RandomScorer(seed * 100 + r))
               for r in range(args.random_draws)]
    random_mean = {k: float(np.mean([r[k] for r in randoms])) for k in randoms[0]}
    # Several selector initialisations per seed (init 0 is the model's own, the one earlier runs used; init j
    # > 0 is a fresh `VisionGuidedAudioSelector` with PyTorch's default init from seed `seed * 1000 + j`).
    # Each trains on the backbone's fit clips with the same settings and data order; the one with the best
    # accuracy on the held-out *training* clips (at RATIOS, OmniSIFT's unchanged rule) is kept. The test
    # clips are evaluated only after the choice is made.
    from omnisift.selector import VisionGuidedAudioSelector

    fit_ex, val_ex = [train_ex[i] for i in fit_idx], [train_ex[i] for i in val_idx]
    val_samples = train_samples[n_fit:]
    compressor = thinker.compressor
    own_init = copy.deepcopy(compressor.state_dict())
    settings = TrainSettings(steps=args.selector_steps, batch_size=args.batch_size, lr=args.selector_lr,
                             warmup_steps=10, min_lr_ratio=0.1, rho_video=RATIOS.rho_video,
                             rho_audio=RATIOS.rho_audio, save_every=0, log_every=10, seed=seed, gate=args.gate)
    inits, states, histories = [], [], []
    for j in range(args.inits):
        if j == 0:
            compressor.load_state_dict(own_init)
        else:
            torch.manual_seed(seed * 1000 + j)
            compressor.load_state_dict(VisionGuidedAudioSelector(compressor.d_model).state_dict())
        thinker.eval()
        init_state = copy.deepcopy(compressor.state_dict())
        val_before = evaluate(thinker, val_ex, val_samples, option_ids, pad_id, RATIOS)
        trainer = Trainer(thinker, settings, out_dir=work / f"selector-seed{seed}-init{j}")
        # Warm-up (training only): the first selector steps drop fewer audio tokens, so the beep is often
        # kept and its tokens get a gradient through the straight-through mask early on; then the target
        # ratios. Inference (`evaluate`) always uses RATIOS with OmniSIFT's unchanged rule.
        if args.selector_warmup:
            trainer.ratios = Ratios(rho_video=RATIOS.rho_video, rho_audio=args.warmup_rho_audio)

        def after_step(r, trainer=trainer) -> None:
            if r.optimizer_step >= args.selector_warmup:
                trainer.ratios = RATIOS

        trainer.run(batch_stream(fit_ex, settings.batch_size, pad_id, seed=seed), progress=args.progress,
                    on_step=after_step)
        thinker.eval()
        val_after = evaluate(thinker, val_ex, val_samples, option_ids, pad_id, RATIOS)
        inits.append({"init": j, "val_untrained": val_before, "val_trained": val_after, "init_state": init_state})
        states.append(copy.deepcopy(compressor.state_dict()))
        histories.append([list(x) for x in trainer.history.train])
    # Best accuracy on the held-out training clips; ties go to the lower init index.
    chosen = max(range(len(inits)), key=lambda j: (inits[j]["val_trained"]["accuracy"], -j))
    # Test clips, only now. Every init is reported on them for transparency; only `chosen` is the result.
    for j, info in enumerate(inits):
        compressor.load_state_dict(info.pop("init_state"))
        info["test_untrained"] = evaluate(thinker, test_ex, test_samples, option_ids, pad_id, RATIOS)
        compressor.load_state_dict(states[j])
        info["test_trained"] = evaluate(thinker, test_ex, test_samples, option_ids, pad_id, RATIOS)
    compressor.load_state_dict(states[chosen])
    trained = evaluate(thinker, test_ex, test_samples, option_ids, pad_id, RATIOS)
    assert trained == inits[chosen]["test_trained"]
    untrained = inits[chosen]["test_untrained"]
    untrained_mean = {k: float(np.mean([i["test_untrained"][k] for i in inits])) for k in untrained}
    plot_inits(histories, chosen, out / f"selector-curve-seed{seed}.png", seed)
    result = SeedResult(seed, full, random_mean, untrained, trained, backbone_loss, [list(x) for x in backbone_val],
                        histories[chosen], check, time.perf_counter() - start, chosen, inits, untrained_mean,
                        histories)
    val_text = f"backbone {len(backbone_loss)} steps, val {backbone_val[-1][1]:.2f}; " if backbone_val else ""
    per_init = ", ".join(f"init {i['init']}: val {i['val_untrained']['accuracy']:.2f}->{i['val_trained']['accuracy']:.2f}"
                         for i in inits)
    print(f"seed {seed}: {val_text}full {full['accuracy']:.3f}, random {random_mean['accuracy']:.3f} "
          f"(beep kept {random_mean['beep_kept']:.2f}), chosen init {chosen} [{per_init}], untrained "
          f"{untrained['accuracy']:.3f} ({untrained['beep_kept']:.2f}), trained {trained['accuracy']:.3f} "
          f"({trained['beep_kept']:.2f}), retention {trained['retention']:.3f}, projection check {check:.1e}, "
          f"{result.seconds:.0f} s", flush=True)
    return result


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


def summary_table(results: list[SeedResult]) -> str:
    k = len(results[0].inits)
    rows = [("| seed | backbone steps (held-out train acc) | full tokens | random audio @25% | "
             f"untrained VGAS @25%: chosen init / mean of {k} | trained + selected VGAS @25% | trained - random | "
             "kept fraction | beep kept: random / untrained (chosen) / trained | chosen init (held-out train acc "
             "after training, per init) |"),
            "|---|---|---|---|---|---|---|---|---|---|"]
    gains = [r.trained["accuracy"] - r.random["accuracy"] for r in results]
    for r, g in zip(results, gains, strict=True):
        val = f" ({r.backbone_val[-1][1]:.2f})" if r.backbone_val else ""
        vals = " / ".join(f"{i['val_trained']['accuracy']:.2f}" for i in r.inits)
        rows.append(f"| {r.seed} | {len(r.backbone_loss)}{val} | {r.full['accuracy']:.3f} | {r.random['accuracy']:.3f} | "
                    f"{r.untrained['accuracy']:.3f} / {r.untrained_mean['accuracy']:.3f} | {r.trained['accuracy']:.3f} | "
                    f"{g:+.3f} | "
                    f"{r.random['retention']:.1%} / {r.untrained['retention']:.1%} / {r.trained['retention']:.1%} | "
                    f"{r.random['beep_kept']:.2f} / {r.untrained['beep_kept']:.2f} / {r.trained['beep_kept']:.2f} | "
                    f"{r.chosen} ({vals}) |")
    sd = lambda xs: float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0
    ms = lambda key, f: (f"{np.mean([getattr(r, key)[f] for r in results]):.3f} ± "
                         f"{sd([getattr(r, key)[f] for r in results]):.3f}")
    ms2 = lambda key: (f"{np.mean([getattr(r, key)['beep_kept'] for r in results]):.2f} ± "
                       f"{sd([getattr(r, key)['beep_kept'] for r in results]):.2f}")
    steps = [len(r.backbone_loss) for r in results]
    rows.append(f"| mean ± sd | {np.mean(steps):.0f} | {ms('full', 'accuracy')} | {ms('random', 'accuracy')} | "
                f"{ms('untrained', 'accuracy')} / {ms('untrained_mean', 'accuracy')} | {ms('trained', 'accuracy')} | "
                f"{np.mean(gains):+.3f} ± {sd(gains):.3f} | "
                f"{np.mean([r.trained['retention'] for r in results]):.1%} | "
                f"{ms2('random')} / {ms2('untrained')} / {ms2('trained')} | |")
    rows.append("")
    rows.append(f"trained - random accuracy per seed: {', '.join(f'{g:+.3f}' for g in gains)} "
                f"(mean {np.mean(gains):+.3f}, sd {sd(gains):.3f}, min {min(gains):+.3f}; "
                f"trained > random on {sum(g > 0 for g in gains)} of {len(gains)} seeds)")
    rows.append("")
    rows.append("Every init on the test clips (reported only; the choice used the held-out training clips):")
    rows.append("")
    rows.append("| seed | init | held-out train acc: untrained -> trained | test acc: untrained -> trained | "
                "test beep kept: untrained -> trained |")
    rows.append("|---|---|---|---|---|")
    for r in results:
        for i in r.inits:
            mark = " (chosen)" if i["init"] == r.chosen else ""
            rows.append(f"| {r.seed} | {i['init']}{mark} | {i['val_untrained']['accuracy']:.3f} -> "
                        f"{i['val_trained']['accuracy']:.3f} | {i['test_untrained']['accuracy']:.3f} -> "
                        f"{i['test_trained']['accuracy']:.3f} | {i['test_untrained']['beep_kept']:.2f} -> "
                        f"{i['test_trained']['beep_kept']:.2f} |")
    return "\n".join(rows)


def plot_inits(histories: list, chosen: int, path: Path, seed: int) -> None:
    """Selector loss (running mean) of every init of one seed; the chosen one drawn bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    w = 10
    for j, h in enumerate(histories):
        ys = [loss for _, loss in h]
        ys = [float(np.mean(ys[max(0, i - w + 1):i + 1])) for i in range(len(ys))]
        ax.plot(ys, lw=2.2 if j == chosen else 1, alpha=1 if j == chosen else 0.6,
                label=f"init {j}" + (" (chosen on held-out train clips)" if j == chosen else ""))
    ax.set_xlabel("micro-batch")
    ax.set_ylabel(f"answer loss (running mean {w})")
    ax.set_title(f"VGAS training, seed {seed}, {len(histories)} inits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_all(results: list[SeedResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
    w = 10
    smooth = lambda ys: [float(np.mean(ys[max(0, i - w + 1):i + 1])) for i in range(len(ys))]
    for r in results:
        axes[0].plot(smooth(r.backbone_loss), label=f"seed {r.seed}")
        axes[1].plot(smooth([loss for _, loss in r.selector_history]), label=f"seed {r.seed}")
    axes[0].axhline(np.log(len(PITCHES)) / 2, color="grey", ls=":", lw=1, label="chance")
    axes[0].set_title("1. backbone + audio projection, all tokens")
    axes[1].set_title(f"2. VGAS @{RATIOS.rho_video}/{RATIOS.rho_audio}, chosen init")
    for ax in axes:
        ax.set_xlabel("step")
        ax.set_ylabel(f"answer loss (running mean {w})")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=5, help="run seeds 0 .. N-1")
    parser.add_argument("--seed-ids", type=int, nargs="+", help="run these seeds instead")
    parser.add_argument("--train", type=int, default=640)
    parser.add_argument("--test", type=int, default=160)
    parser.add_argument("--train-seed", type=int, default=1, help="seed of the generated training clips")
    parser.add_argument("--test-seed", type=int, default=2, help="seed of the generated test clips")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--backbone-steps", type=int, default=1000, help="at most this many backbone steps")
    parser.add_argument("--val", type=int, default=128,
                        help="training clips held out from backbone training to decide when it stops")
    parser.add_argument("--target", type=float, default=0.95,
                        help="stop backbone training at this full-token accuracy on the held-out training clips")
    parser.add_argument("--eval-every", type=int, default=50)
    parser.add_argument("--min-backbone-steps", type=int, default=200)
    parser.add_argument("--random-draws", type=int, default=5)
    parser.add_argument("--selector-warmup", type=int, default=60,
                        help="first selector steps at --warmup-rho-audio (training only)")
    parser.add_argument("--warmup-rho-audio", type=float, default=0.0)
    parser.add_argument("--backbone-lr", type=float, default=1e-3)
    parser.add_argument("--proj-lr", type=float, default=1e-3)
    parser.add_argument("--selector-steps", type=int, default=200)
    parser.add_argument("--selector-lr", type=float, default=1e-3)
    parser.add_argument("--gate", choices=GATES, default="embedding",
                        help="how the straight-through mask reaches the selector (omnisift.training.compressed_forward)")
    parser.add_argument("--inits", type=int, default=3,
                        help="selector initialisations per seed; the best on the held-out training clips is kept")
    parser.add_argument("--work", type=Path, default=Path("/tmp/omnisift-synthetic"))
    parser.add_argument("--out", type=Path, default=Path("docs/training-results"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest for the tiny model)")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run in parallel (processes)")
    parser.add_argument("--no-progress", dest="progress", action="store_false")
    args = parser.parse_args(argv)
    if args.train_seed == args.test_seed:
        parser.error("--train-seed and --test-seed must differ (the test clips would be the training clips)")
    logging.basicConfig(level=logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    from operators import Encoder, Preprocessor
    from pipeline.offline.features import FeatureCache, cache_features

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_samples = make_dataset(args.work / f"train-seed{args.train_seed}", args.train, seed=args.train_seed)
    test_samples = make_dataset(args.work / f"test-seed{args.test_seed}", args.test, seed=args.test_seed)
    t_media = time.perf_counter() - started
    ref = tiny_model(args.work, 0)
    cache = FeatureCache(args.work / "cache", shard_size=64)
    pre = Preprocessor(ref.processor.video_processor, "cpu")
    enc = Encoder(ref.thinker)
    train_samples, s1 = cache_features(train_samples, cache, pre, enc, progress=args.progress)
    test_samples, s2 = cache_features(test_samples, cache, pre, enc, progress=args.progress)
    t_cache = time.perf_counter() - started - t_media
    print(s1.line(), "|", s2.line(), flush=True)
    seeds = list(args.seed_ids if args.seed_ids is not None else range(args.seeds))
    if args.jobs > 1:  # seeds are independent: one process per core, one torch thread each
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            results = list(pool.map(_seed_job, seeds, [args] * len(seeds), [train_samples] * len(seeds),
                                    [test_samples] * len(seeds)))
    else:
        results = [run_seed(seed, args.work, args.out, ref, cache, train_samples, test_samples, args)
                   for seed in seeds]
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
