"""VGAS and select_audio (docs/design.md section 3) against functional re-implementations from the same weights."""

from __future__ import annotations

import omnisift_reference as ref
import pytest
import torch
from torch import nn

import omnisift


def expected_parameter_count(d: int, hidden: int = 512, score_hidden: int = 256) -> int:
    linear = lambda i, o: i * o + o  # noqa: E731
    return (
        2 * linear(d, hidden)  # v_proj, a_proj
        + 3 * 2 * hidden  # v_norm, a_norm, post_attn_norm (weight + bias)
        + 3 * hidden * hidden + 3 * hidden + linear(hidden, hidden)  # cross_attn in_proj + out_proj
        + linear(hidden, score_hidden) + linear(score_hidden, 1)  # score_head.0, score_head.2
    )


def test_vgas_parameter_count_at_7b_width():
    sel = omnisift.VisionGuidedAudioSelector(3584)
    count = sum(p.numel() for p in sel.parameters())
    assert count == expected_parameter_count(3584) == 4_856_321


def test_vgas_submodules_match_official_checkpoint_layout():
    d = 3584
    sel = omnisift.VisionGuidedAudioSelector(d)
    assert isinstance(sel.cross_attn, nn.MultiheadAttention)
    assert sel.cross_attn.batch_first and sel.cross_attn.num_heads == 8
    shapes = {k: tuple(v.shape) for k, v in sel.state_dict().items()}
    assert shapes == {
        "v_proj.weight": (512, d), "v_proj.bias": (512,),
        "a_proj.weight": (512, d), "a_proj.bias": (512,),
        "v_norm.weight": (512,), "v_norm.bias": (512,),
        "a_norm.weight": (512,), "a_norm.bias": (512,),
        "cross_attn.in_proj_weight": (1536, 512), "cross_attn.in_proj_bias": (1536,),
        "cross_attn.out_proj.weight": (512, 512), "cross_attn.out_proj.bias": (512,),
        "post_attn_norm.weight": (512,), "post_attn_norm.bias": (512,),
        "score_head.0.weight": (256, 512), "score_head.0.bias": (256,),
        "score_head.2.weight": (1, 256), "score_head.2.bias": (1,),
    }
    assert isinstance(sel.score_head[1], nn.SiLU)


def randomized_selector(d: int = 48, seed: int = 0) -> omnisift.VisionGuidedAudioSelector:
    """A selector with every weight random (norms and biases too), so each term of the formula shows."""
    torch.manual_seed(seed)
    sel = omnisift.VisionGuidedAudioSelector(d, hidden_dim=64, num_heads=8)
    with torch.no_grad():
        for p in sel.parameters():
            p.copy_(torch.randn_like(p) * (0.2 if p.ndim > 1 else 0.5))
    return sel.eval()


def test_vgas_forward_equals_functional_reimplementation():
    sel = randomized_selector()
    video, audio = torch.randn(30, 48), torch.randn(50, 48)
    scores = sel(video, audio)
    assert scores.shape == (50,)
    torch.testing.assert_close(scores.double(), ref.vgas(sel, video, audio), atol=1e-5, rtol=1e-4)


def test_vgas_scores_lie_strictly_between_zero_and_one():
    sel = randomized_selector(seed=1)
    scores = sel(torch.randn(12, 48) * 5, torch.randn(50, 48) * 5)
    assert torch.all((scores > 0) & (scores < 1))


def test_vgas_batched_forward_with_padding_equals_per_chunk_forward():
    sel = randomized_selector(seed=2)
    lengths_v, lengths_a = [30, 7, 0, 18], [50, 50, 25, 3]
    videos = [torch.randn(n, 48) for n in lengths_v]
    audios = [torch.randn(n, 48) for n in lengths_a]
    video = torch.zeros(4, max(lengths_v), 48)
    audio = torch.zeros(4, max(lengths_a), 48)
    mask = torch.zeros(4, max(lengths_v), dtype=torch.bool)
    for i, (v, a) in enumerate(zip(videos, audios, strict=True)):
        video[i, : len(v)], audio[i, : len(a)], mask[i, : len(v)] = v, a, True
    video[~mask] = 99.0  # padding content must not matter
    batched = sel(video, audio, mask)
    for i, (v, a) in enumerate(zip(videos, audios, strict=True)):
        torch.testing.assert_close(batched[i, : len(a)], sel(v, a), atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(batched[i, : len(a)].double(), ref.vgas(sel, v, a), atol=1e-5, rtol=1e-4)


def test_vgas_chunk_without_video_scores_audio_alone():
    sel = randomized_selector(seed=3)
    audio = torch.randn(50, 48)
    scores = sel(torch.zeros(0, 48), audio)
    assert scores.shape == (50,) and torch.isfinite(scores).all()
    torch.testing.assert_close(scores.double(), ref.vgas(sel, torch.zeros(0, 48), audio), atol=1e-5, rtol=1e-4)


def test_vgas_accepts_bf16_tokens_with_fp32_weights():
    sel = randomized_selector(seed=4)
    video, audio = torch.randn(10, 48).bfloat16(), torch.randn(20, 48).bfloat16()
    torch.testing.assert_close(sel(video, audio), sel(video.float(), audio.float()))


@pytest.mark.parametrize("n_a,rho", [(50, 0.3), (50, 0.29), (25, 0.3), (7, 0.5), (1, 0.3), (50, 0.0), (50, 0.99)])
def test_select_audio_keeps_highest_scores_in_time_order(n_a, rho):
    scores = torch.rand(n_a, generator=torch.Generator().manual_seed(n_a))
    kept = omnisift.select_audio(scores, rho)
    assert kept.tolist() == ref.select_audio(scores, rho)
    assert len(kept) == n_a - ref.dropped(n_a, rho)


def test_select_audio_at_rho_one_keeps_every_token_as_the_release_does():
    kept = omnisift.select_audio(torch.rand(50, generator=torch.Generator().manual_seed(1)), 1.0)
    assert kept.tolist() == list(range(50))


def test_select_audio_without_video_left_keeps_every_token_as_the_release_does():
    kept = omnisift.select_audio(torch.rand(50, generator=torch.Generator().manual_seed(2)), 0.3, kept_video=0)
    assert kept.tolist() == list(range(50))


def test_select_audio_rejects_ratio_outside_unit_interval():
    with pytest.raises(ValueError, match="rho_audio"):
        omnisift.select_audio(torch.rand(10), 1.2)


def test_straight_through_mask_is_exactly_binary_and_trains_selector():
    sel = randomized_selector(seed=5).train()
    video, audio = torch.randn(20, 48), torch.randn(50, 48)
    scores = sel(video, audio)
    kept, mask = omnisift.select_audio(scores, 0.3, straight_through=True)
    expected = torch.zeros(50)
    expected[ref.select_audio(scores, 0.3)] = 1.0
    assert torch.equal(mask.detach(), expected)  # exact 0/1, not approximately
    assert kept.tolist() == expected.nonzero().squeeze(-1).tolist()
    gated = audio * mask.unsqueeze(-1)
    gated.sum().backward()
    for name, p in sel.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    # d(sum(gated))/d(score_i) is the sum of audio token i: the straight-through identity.
    sel.zero_grad()
    scores = sel(video, audio)
    _, mask = omnisift.select_audio(scores, 0.3, straight_through=True)
    scores.retain_grad()
    (audio * mask.unsqueeze(-1)).sum().backward()
    torch.testing.assert_close(scores.grad, audio.sum(-1))


def test_loss_backward_reaches_compressor_and_not_frozen_backbone(tiny_dir, clip_inputs, target):
    from omnisift.loading import load_model

    model = load_model(tiny_dir, **target.load())
    thinker = model.thinker
    thinker.requires_grad_(False)
    thinker.compressor.requires_grad_(True)
    thinker.train()
    inputs = dict(clip_inputs)
    labels = inputs["input_ids"].clone()
    labels[:, : labels.shape[1] - 8] = -100  # loss on the last few text tokens, after the clip
    out = thinker(**inputs, labels=labels, use_audio_in_video=True)
    assert out.loss is not None and torch.isfinite(out.loss)
    out.loss.backward()
    grads = {n: p.grad for n, p in thinker.compressor.named_parameters()}
    assert all(g is not None for g in grads.values()), [n for n, g in grads.items() if g is None]
    assert sum(g.abs().sum() for g in grads.values()) > 0
    backbone = [n for n, p in thinker.named_parameters() if not n.startswith("compressor.")]
    assert backbone and all(thinker.get_parameter(n).grad is None for n in backbone)
