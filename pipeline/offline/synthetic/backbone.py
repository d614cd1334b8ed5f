"""The synthetic task's model: a tiny Qwen2.5-Omni whose text backbone and audio projection learn the task
with every token kept (step 2 of the package docstring), then stay frozen while the selector trains."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from omnisift.data import Sample
from omnisift.training import Example, collate, compressed_forward, cosine_with_warmup
from pipeline.offline.synthetic.scoring import evaluate


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
    position embedding, identical in every clip, and what a sound changes is about 1% of it (docs/design.md section 5:
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
