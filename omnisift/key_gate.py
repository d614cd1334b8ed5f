"""Attention with a per-key gate: the "attention" straight-through estimator for training the selector.

docs/design.md section 3 trains VGAS by multiplying the straight-through mask into the kept audio embeddings and
removing the dropped tokens. That gradient only says how the loss changes when a *kept* token is scaled,
and the backbone's first RMSNorm makes a token's scale almost irrelevant; a *dropped* token gets no
gradient at all, so nothing tells the selector that a token it dropped was the one the answer needed.

Here every token stays in the sequence and each attention layer weighs key `j` by a gate `g_j`:

    attn_ij = g_j exp(l_ij) / sum_k g_k exp(l_ik)

With the hard mask in value (1 kept, 0 dropped) the forward is exactly the forward without the dropped
tokens (positions are the original TMRoPE ones either way). Backward, `d attn_ij / d g_j` is non-zero
for a dropped key too: the first-order effect of letting it back in. With `g = hard - s.detach() + s`
the selector's scores receive it (the estimator used by token-pruning work such as DynamicViT).

Cost (training only; inference never uses this path): the dropped tokens are computed as well, and the
weights are materialised in float32, one block of `QUERY_BLOCK` queries at a time, recomputed in backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch.utils.checkpoint import checkpoint
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

KEY_GATED = "omnisift_key_gated"


QUERY_BLOCK = 512  # queries whose [B, H, block, Lk] weights are held at once (recomputed in backward)


def key_gated_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        attention_mask: torch.Tensor | None, scaling: float, dropout: float = 0.0,
                        key_gate: torch.Tensor | None = None, **kwargs) -> tuple[torch.Tensor, None]:
    """query [B, H, Lq, d], key/value [B, H_kv, Lk, d], key_gate [B, Lk] -> output [B, Lq, H, d].

    `attention_mask` is the model's causal/padding mask (`key_gated_mask`: bool, True = may attend).
    Longer than `QUERY_BLOCK`, the queries go in blocks, each checkpointed: memory holds one block's
    weights instead of `[B, H, Lq, Lk]` per layer, at the price of recomputing them in backward.
    """
    if attention_mask is None:
        raise ValueError("key-gated attention needs the causal mask; run the model inside `key_gated`")
    groups = query.shape[1] // key.shape[1]
    key, value = key.repeat_interleave(groups, dim=1), value.repeat_interleave(groups, dim=1)
    if query.shape[2] <= QUERY_BLOCK:
        out = _attend(query, key, value, attention_mask, key_gate, scaling)
    else:
        mask = attention_mask.expand(query.shape[0], -1, query.shape[2], -1)  # [B, 1|H, Lq, Lk]
        out = torch.cat([
            checkpoint(_attend, query[:, :, i:i + QUERY_BLOCK], key, value, mask[:, :, i:i + QUERY_BLOCK],
                       key_gate, scaling, use_reentrant=False)
            for i in range(0, query.shape[2], QUERY_BLOCK)
        ], dim=2)
    return out.transpose(1, 2).contiguous(), None


def _attend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, allowed: torch.Tensor,
            key_gate: torch.Tensor | None, scaling: float) -> torch.Tensor:
    """query [B, H, q, d], key/value [B, H, Lk, d], allowed [B, 1|H, q, Lk] bool -> [B, H, q, d]."""
    dtype = torch.promote_types(query.dtype, torch.float32)  # bf16 is computed in float32
    logits = torch.matmul(query, key.transpose(2, 3)).to(dtype) * scaling  # [B, H, q, Lk]
    logits = logits.masked_fill(~allowed, float("-inf"))
    # The largest logit over every allowed key, dropped ones included, keeps exp() finite; rows with no
    # allowed key at all (padding) are clamped so they stay 0 instead of NaN.
    scores = torch.exp(logits - logits.amax(-1, keepdim=True).detach().clamp(min=-1e4))
    if key_gate is not None:
        scores = scores * _secant_gate(key_gate[:, None, None, :].to(dtype), scores.detach())
    weights = scores / scores.sum(-1, keepdim=True).clamp(min=1e-30)
    return torch.matmul(weights.to(value.dtype), value)


def _secant_gate(gate: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """gate [B, 1, 1, Lk] -> [B, H, Lq, Lk]: the same values, with the gradient of a closed key (gate 0)
    rescaled per query from the tangent to the secant.

    At gate 0 the derivative of query i's output is `e_ij (v_j - o_i) / Z_i` (Z_i: the open keys' sum of
    e_ik), unbounded when key j would take most of the attention. Scaling it by `Z_i / (Z_i + e_ij)`
    gives `p_ij (v_j - o_i)` with `p_ij` the weight j would get if let in: the whole change of the
    output on opening the key, so no token's gradient can swamp the rest. Open keys keep the tangent.
    """
    value = gate.detach()
    open_sum = (scores * value).sum(-1, keepdim=True)  # Z_i: [B, H, Lq, 1]
    scale = open_sum / (open_sum + (1 - value) * scores).clamp(min=1e-30)  # 1 at open keys
    return value + (gate - value) * scale


def key_gated_mask(*args, **kwargs) -> torch.Tensor | None:
    """The causal/padding mask as a bool tensor, always built: SDPA's own mask builder may return None
    and leave causality to the kernel's `is_causal` flag, which a custom attention does not have."""
    kwargs.pop("allow_is_causal_skip", None)
    return sdpa_mask(*args, allow_is_causal_skip=False, **kwargs)


AttentionInterface.register(KEY_GATED, key_gated_attention)
AttentionMaskInterface.register(KEY_GATED, key_gated_mask)


@contextlib.contextmanager
def key_gated(language_model: torch.nn.Module) -> Iterator[None]:
    """Within the block, `language_model` attends with `key_gated_attention` (pass `key_gate=` to its
    forward); its own attention implementation is restored afterwards."""
    config = language_model.config
    previous = config._attn_implementation
    config._attn_implementation = KEY_GATED
    try:
        yield
    finally:
        config._attn_implementation = previous
