"""Selector training: the layout equals the processor's and `get_rope_index`'s; one step lowers the
straight-through loss on a fixed batch and changes only selector weights; checkpoints round-trip."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from omnisift import load_selector
from omnisift.inputs import processor_inputs
from omnisift.loading import DEFAULT_SYSTEM_PROMPT
from omnisift.ratios import Ratios
from omnisift.selector import straight_through_mask
from omnisift.sequence import decide_sequence
from omnisift.training import (
    ClipFeatures,
    PromptTemplate,
    Trainer,
    TrainSettings,
    build_example,
    collate,
    cosine_with_warmup,
    embed_batch,
)

D = 64


def _template(model):
    cfg = model.thinker.config
    return PromptTemplate.from_processor(model.processor, DEFAULT_SYSTEM_PROMPT, cfg.video_token_id,
                                         cfg.audio_token_id)


def test_layout_equals_the_processor_and_get_rope_index(tiny_model):
    frames = np.random.default_rng(0).integers(0, 255, (8, 56, 56, 3), dtype=np.uint8)
    audio = (0.1 * np.random.default_rng(1).standard_normal(64000)).astype(np.float32)
    inp = processor_inputs(tiny_model, frames, audio, "What colour?")
    th = tiny_model.thinker
    positions, _ = th.get_rope_index(inp["input_ids"], None, inp["video_grid_thw"], inp["attention_mask"], True,
                                     inp["feature_attention_mask"].sum(-1), inp.get("video_second_per_grid"))
    t, h, w = (int(x) for x in inp["video_grid_thw"][0])
    features = ClipFeatures(torch.zeros(t, h * w // 4, D), torch.zeros(100, D), [2, 2], [50, 50], (h // 2, w // 2))
    q = tiny_model.processor.tokenizer("What colour?", add_special_tokens=False)["input_ids"]
    example = build_example(_template(tiny_model), features, q, None)
    assert torch.equal(example.input_ids, inp["input_ids"][0])
    assert torch.equal(example.positions, positions[:, 0])


def _batch(model, seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    tok = model.processor.tokenizer
    examples = []
    for i in range(n):
        features = ClipFeatures(torch.randn(4, 4, D, generator=g), torch.randn(100, D, generator=g), [2, 2],
                                [50, 50], (2, 2))
        examples.append(build_example(_template(model), features, tok("Which?")["input_ids"],
                                      tok(" ABCD"[1 + i % 4])["input_ids"]))
    return collate(examples, tok.pad_token_id)


def _surrogate_loss(thinker, batch, keep, scores0, ratios):
    """Independent re-computation of the straight-through objective with fixed hard decisions `keep`:
    audio embeddings times (keep - scores0 + scores(theta)), kept tokens only, next-token CE."""
    cfg = thinker.config
    embeds = embed_batch(thinker, batch)
    scores = decide_sequence(embeds, batch.input_ids, batch.positions, video_token_id=cfg.video_token_id,
                             audio_token_id=cfg.audio_token_id, selector=thinker.compressor,
                             rho_video=ratios.rho_video, rho_audio=ratios.rho_audio,
                             attention_mask=batch.attention_mask).audio_scores
    gate = keep.float() - scores0 + scores
    is_audio = batch.input_ids == cfg.audio_token_id
    embeds = embeds * torch.where(is_audio, gate, 1.0).unsqueeze(-1)
    rows = []
    for b in range(batch.input_ids.shape[0]):
        sel = keep[b] & batch.attention_mask[b].bool()
        out = thinker.model.language_model(inputs_embeds=embeds[b, sel][None],
                                           position_ids=batch.positions[:, b, sel][:, None])
        logits = thinker.lm_head(out.last_hidden_state)[0]
        labels = batch.labels[b, sel]
        rows.append((logits[:-1], labels[1:]))
    logits = torch.cat([r[0] for r in rows])
    labels = torch.cat([r[1] for r in rows])
    return torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100)


def test_one_step_lowers_the_loss_and_changes_only_the_selector(tiny_path):
    from omnisift.loading import load_model

    model = load_model(tiny_path, device="cpu", dtype="float32")
    thinker = model.thinker
    batch = _batch(model)
    settings = TrainSettings(steps=10, lr=1e-3, warmup_steps=0, rho_video=0.5, rho_audio=0.7, max_grad_norm=0)
    trainer = Trainer(thinker, settings)
    before = copy.deepcopy(thinker.state_dict())
    ratios = Ratios(settings.rho_video, settings.rho_audio)
    with torch.no_grad():
        cfg = thinker.config
        d0 = decide_sequence(embed_batch(thinker, batch), batch.input_ids, batch.positions,
                             video_token_id=cfg.video_token_id, audio_token_id=cfg.audio_token_id,
                             selector=thinker.compressor, rho_video=ratios.rho_video, rho_audio=ratios.rho_audio,
                             attention_mask=batch.attention_mask)
        loss0 = _surrogate_loss(thinker, batch, d0.keep, d0.audio_scores, ratios)
    result = trainer.step(batch)
    assert result.stepped and result.optimizer_step == 1
    torch.testing.assert_close(torch.tensor(result.loss), loss0, rtol=1e-4, atol=1e-5)  # same objective
    with torch.no_grad():
        loss1 = _surrogate_loss(thinker, batch, d0.keep, d0.audio_scores, ratios)
    assert loss1 < loss0 - 1e-6
    changed = {k for k, v in thinker.state_dict().items() if not torch.equal(before[k], v)}
    assert changed and all(k.startswith("compressor.") for k in changed)
    assert len(changed) == len([k for k in before if k.startswith("compressor.")])  # every selector tensor
    assert all(not p.requires_grad for n, p in thinker.named_parameters() if not n.startswith("compressor."))


def test_straight_through_gate_is_one_at_kept_tokens():
    scores = torch.rand(10, requires_grad=True)
    hard = scores.detach() > 0.5
    gate = straight_through_mask(hard, scores)
    torch.testing.assert_close(gate.detach(), hard.float())
    gate.sum().backward()
    torch.testing.assert_close(scores.grad, torch.ones(10))


def test_checkpoint_round_trips_and_resumes(tiny_path, tmp_path):
    from omnisift.loading import load_model

    model = load_model(tiny_path, device="cpu", dtype="float32")
    settings = TrainSettings(steps=4, lr=1e-3, warmup_steps=1, grad_accum=2, rho_video=0.5, rho_audio=0.7)
    trainer = Trainer(model.thinker, settings, out_dir=tmp_path)
    batches = [_batch(model, seed=s, n=2) for s in range(8)]
    for b in batches[:4]:
        trainer.step(b)
    folder = trainer.save(tmp_path / "checkpoint-2")
    loaded = load_selector(folder / "selector.safetensors")
    for k, v in model.thinker.compressor.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    from safetensors import safe_open

    with safe_open(str(folder / "selector.safetensors"), framework="pt") as f:
        assert all(k.startswith("thinker.compressor.") for k in f.keys())
    # A second trainer resumed from the checkpoint continues exactly like the first.
    model2 = load_model(tiny_path, device="cpu", dtype="float32")
    resumed = Trainer(model2.thinker, settings, out_dir=tmp_path / "b")
    resumed.resume(folder)
    assert resumed.optimizer_step == 2 and resumed.scheduler.last_epoch == trainer.scheduler.last_epoch
    for b in batches[4:]:
        r1, r2 = trainer.step(b), resumed.step(b)
        assert r1.lr == r2.lr
    for (k, v), v2 in zip(model.thinker.compressor.state_dict().items(),
                          model2.thinker.compressor.state_dict().values(), strict=True):
        torch.testing.assert_close(v, v2, msg=k)


def test_cosine_schedule_with_warmup():
    assert cosine_with_warmup(0, 10, 110) == pytest.approx(0.1)
    assert cosine_with_warmup(9, 10, 110) == pytest.approx(1.0)
    assert cosine_with_warmup(60, 10, 110, 0.0) == pytest.approx(0.5)
    assert cosine_with_warmup(110, 10, 110, 0.1) == pytest.approx(0.1)
