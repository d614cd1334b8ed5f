"""Choosing an answer's tokens: the ids that end it, and the next token (greedy, or temperature /
top-k / top-p sampling) under a question's `pipeline.messages.GenerationSettings`."""

from __future__ import annotations

import torch

from pipeline.messages import GenerationSettings


def stop_ids(tokenizer, thinker) -> set[int]:
    """Token ids that end an answer: Qwen's end-of-turn and end-of-text, and the model's eos."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    eos = thinker.generation_config.eos_token_id if thinker.generation_config else None
    ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return {i for i in ids if isinstance(i, int) and i >= 0}


def next_token(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator | None) -> int:
    """Greedy, or temperature / top-k / top-p sampling of logits [V]."""
    if not settings.do_sample:
        return int(logits.argmax())
    logits = logits.float() / max(settings.temperature, 1e-5)
    if settings.top_k > 0:
        kth = torch.topk(logits, min(settings.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs > settings.top_p
        probs = probs.clone()
        probs[order[outside]] = 0.0
        probs /= probs.sum()
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
