"""Choosing an answer's tokens: the ids that end it, the next token (greedy, or temperature / top-k / top-p
sampling) under a question's `pipeline.messages.GenerationSettings`, and the text decoded as it grows.

Written for the GPU: the next token stays on the model's device (a 0-d tensor), sampling runs there too
(no `.cpu()` of the probabilities, no data-dependent indexing that syncs), and the text is decoded over a
window of the last few tokens rather than the whole answer again at every token. The caller decides when
the tokens come to the host (`pipeline.session.answer.AnswerDecoder`: every `sync_every` tokens).
"""

from __future__ import annotations

import torch

from pipeline.messages import GenerationSettings


def stop_ids(tokenizer, thinker) -> set[int]:
    """Token ids that end an answer: Qwen's end-of-turn and end-of-text, and the model's eos."""
    ids = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    eos = thinker.generation_config.eos_token_id if thinker.generation_config else None
    ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return {i for i in ids if isinstance(i, int) and i >= 0}


def device_generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    """A generator on `device` seeded with `seed` (None: the global one), so sampling needs no host copy."""
    return None if seed is None else torch.Generator(device=device).manual_seed(seed)


def next_token(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator | None) -> torch.Tensor:
    """The next token, a 0-d long tensor on logits' device, from logits [V]: greedy, or temperature /
    top-k / top-p sampling. Never synchronises with the host."""
    if not settings.do_sample:
        return logits.argmax()
    logits = logits.float() / max(settings.temperature, 1e-5)
    if settings.top_k > 0:
        kth = torch.topk(logits, min(settings.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)  # [V]
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs > settings.top_p  # [V] in sorted order
        probs = probs.masked_fill(torch.zeros_like(outside).scatter(0, order, outside), 0.0)
        probs = probs / probs.sum()
    # Exponential race (as gpt-fast's multinomial_sample_one_no_sync): argmax p_i / E_i with E_i ~ Exp(1)
    # draws i with probability p_i, without torch.multinomial's host-side checks.
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax()


class IncrementalText:
    """The text of a growing token list, decoded over a short window: each `push` decodes the tokens from
    the last emitted piece's start on (a few tokens), not the whole answer. A piece is held back while it
    ends in an incomplete UTF-8 character (a byte-level token split mid-character decodes to U+FFFD);
    `finish()` gives what is still held back when the answer ends."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = []
        self._start = 0  # first token of the window decoded with each push
        self._read = 0  # tokens whose text has been emitted

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def push(self, token: int) -> str:
        """Add one token; the new text it completes ("" while a character is still incomplete)."""
        self.ids.append(token)
        before = self._decode(self.ids[self._start:self._read])
        now = self._decode(self.ids[self._start:])
        if len(now) <= len(before) or now.endswith("\ufffd"):
            return ""
        self._start, self._read = self._read, len(self.ids)
        return now[len(before):]

    def finish(self) -> str:
        """The text held back at the end (an answer cut mid-character shows U+FFFD for the rest)."""
        before = self._decode(self.ids[self._start:self._read])
        now = self._decode(self.ids[self._start:])
        self._start = self._read = len(self.ids)
        return now[len(before):]
