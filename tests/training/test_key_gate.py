"""The "attention" straight-through gate: its forward is the forward without the dropped tokens; a closed
key's gradient is the change of the attention output on opening it (checked against plain softmax
attention), an open key's is the tangent; the selector's scores pass the gradient to its logits, centred
per chunk."""

from __future__ import annotations

import pytest
import torch

from omnisift.key_gate import key_gated_attention
from omnisift.ratios import Ratios
from omnisift.sequence import decide_sequence, straight_through_scores
from omnisift.training import compressed_forward, embed_batch

from .test_training import _batch, _surrogate_loss

RATIOS = Ratios(rho_video=0.5, rho_audio=0.7)


@pytest.fixture()
def model(tiny_path):
    from omnisift.loading import load_model

    model = load_model(tiny_path, device="cpu", dtype="float32")
    model.thinker.requires_grad_(False)
    model.thinker.compressor.requires_grad_(True)
    return model


def _decision(thinker, batch):
    cfg = thinker.config
    with torch.no_grad():
        return decide_sequence(embed_batch(thinker, batch), batch.input_ids, batch.positions,
                               video_token_id=cfg.video_token_id, audio_token_id=cfg.audio_token_id,
                               selector=thinker.compressor, rho_video=RATIOS.rho_video,
                               rho_audio=RATIOS.rho_audio, attention_mask=batch.attention_mask)


def test_attention_gate_forward_equals_the_model_without_the_dropped_tokens(model):
    thinker = model.thinker
    batch = _batch(model)
    d = _decision(thinker, batch)
    result = compressed_forward(thinker, batch, RATIOS, gate="attention")
    with torch.no_grad():
        removed = _surrogate_loss(thinker, batch, d.keep, d.audio_scores, RATIOS)
    torch.testing.assert_close(result.loss.detach(), removed, rtol=1e-5, atol=1e-5)
    assert result.audio[1] < result.audio[0]  # tokens were dropped


def _attention(q, k, v, allowed):
    """Plain softmax attention over the `allowed` [Lq, Lk] keys: q [H, Lq, d], k/v [H, Lk, d]."""
    logits = (q @ k.transpose(1, 2)) / q.shape[-1] ** 0.5
    return torch.softmax(logits.masked_fill(~allowed, float("-inf")), -1) @ v  # [H, Lq, d]


def test_key_gated_attention_equals_attention_over_the_open_keys_and_a_closed_key_gets_the_secant():
    g = torch.Generator().manual_seed(0)
    h, n, d = 2, 6, 4
    q, k, v = (torch.randn(1, h, n, d, generator=g, dtype=torch.float64) for _ in range(3))
    causal = torch.ones(n, n, dtype=torch.bool).tril()
    hard = torch.tensor([1.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    gate = hard.clone().requires_grad_(True)
    out, _ = key_gated_attention(None, q, k, v, causal[None, None], scaling=d ** -0.5, key_gate=gate[None])
    upstream = torch.randn(out.shape, generator=g, dtype=torch.float64)  # [1, Lq, H, d]
    (out * upstream).sum().backward()

    without = _attention(q[0], k[0], v[0], causal & hard.bool())  # [H, Lq, d]
    torch.testing.assert_close(out[0].transpose(0, 1), without)
    up = upstream[0].transpose(0, 1)  # [H, Lq, d]
    for j in (1, 3):  # closed keys: the whole change of the output on opening j, dotted with the upstream
        opened = hard.bool().clone()
        opened[j] = True
        with_j = _attention(q[0], k[0], v[0], causal & opened)
        assert float(gate.grad[j]) == pytest.approx(float(((with_j - without) * up).sum()), rel=1e-9)
    for j in (0, 2, 5):  # open keys: the tangent, sum_i p_ij (v_j - o_i) . upstream_i
        logits = (q[0] @ k[0].transpose(1, 2)) * d ** -0.5
        p = torch.softmax(logits.masked_fill(~(causal & hard.bool()), float("-inf")), -1)  # [H, Lq, Lk]
        tangent = (p[..., j, None] * (v[0][:, j, None, :] - without) * up).sum()
        assert float(gate.grad[j]) == pytest.approx(float(tangent), rel=1e-9)


def test_straight_through_scores_are_the_sigmoid_with_the_gradient_centred_per_chunk():
    logits = torch.tensor([[2.0, -1.0, 0.5, 9.0], [30.0, 1.0, 0.0, 0.0]], requires_grad=True)
    valid = torch.tensor([[True, True, True, False], [True, True, True, True]])
    scores = straight_through_scores(logits, valid)
    torch.testing.assert_close(scores.detach(), torch.sigmoid(logits.detach()))
    upstream = torch.tensor([[1.0, 2.0, 6.0, 5.0], [4.0, 0.0, 0.0, 0.0]])
    (scores * upstream).sum().backward()
    # Each valid token: its upstream minus the mean upstream of its chunk's valid tokens (3, then 1);
    # the padding slot gets nothing.
    torch.testing.assert_close(logits.grad, torch.tensor([[-2.0, -1.0, 3.0, 0.0], [3.0, -1.0, -1.0, -1.0]]))


def _logit_gradients(model, gate: str) -> tuple[torch.Tensor, torch.Tensor]:
    """d loss / d selector logit per audio token [chunks, 50], and which were kept [chunks, 50] bool."""
    thinker = model.thinker
    batch = _batch(model, n=1)
    d = _decision(thinker, batch)
    is_audio = batch.input_ids[0] == thinker.config.audio_token_id
    logits = {}
    hook = thinker.compressor.register_forward_hook(lambda m, i, o: logits.setdefault("z", o).retain_grad())
    try:
        compressed_forward(thinker, batch, RATIOS, gate=gate).loss.backward()
    finally:
        hook.remove()
    return logits["z"].grad.view(-1, 50), d.keep[0][is_audio].view(-1, 50)


def test_attention_gate_gives_each_dropped_audio_token_its_own_gradient(model):
    grads, kept = _logit_gradients(model, "attention")
    for c in range(grads.shape[0]):
        assert grads[c][~kept[c]].std() > 0


def test_embedding_gate_gives_dropped_audio_tokens_no_gradient_of_their_own(model):
    grads, kept = _logit_gradients(model, "embedding")
    # Only kept tokens carry a loss gradient; after centring, every dropped token of a chunk has the same
    # one (minus the chunk's mean), and the kept ones differ from it.
    for c in range(grads.shape[0]):
        dropped = grads[c][~kept[c]]
        torch.testing.assert_close(dropped, dropped[:1].expand_as(dropped))
        assert (grads[c][kept[c]] - dropped[0]).abs().max() > 0


def test_an_unknown_gate_is_refused(model):
    with pytest.raises(ValueError, match="gate must be one of embedding, attention, got 'soft'"):
        compressed_forward(model.thinker, _batch(model, n=1), RATIOS, gate="soft")


def test_key_gated_attention_in_query_blocks_equals_one_block(monkeypatch):
    from omnisift import key_gate

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 4, 9, 8, generator=g, dtype=torch.float64) for _ in range(3))
    allowed = torch.ones(9, 9, dtype=torch.bool).tril()[None, None]
    hard = (torch.rand(2, 9, generator=g) > 0.4).double()

    def run():
        gate = hard.clone().requires_grad_(True)
        qq = q.clone().requires_grad_(True)
        out, _ = key_gate.key_gated_attention(None, qq, k, v, allowed, scaling=8 ** -0.5, key_gate=gate)
        (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out).sin()).sum().backward()
        return out.detach(), gate.grad, qq.grad

    whole = run()
    monkeypatch.setattr(key_gate, "QUERY_BLOCK", 4)  # blocks of 4, 4 and 1 queries
    blocked = run()
    for a, b in zip(whole, blocked, strict=True):
        torch.testing.assert_close(a, b)


def test_key_gate_bench_prints_both_settings(capsys):
    from benchmarks.key_gate import main

    assert main(["--length", "64", "--heads", "2", "--head-dim", "8", "--reps", "1"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith(("| all", "| 512"))]
    assert len(rows) == 2  # a smoke test: the figures themselves belong to BENCHMARKS.md
    assert all(float(r.split("|")[2]) >= 0 and float(r.split("|")[3]) >= 0 for r in rows)
