"""One forward over several live contexts at once: each stream's new tokens (a chunk's kept tokens, or
one decode token) run on top of its own KV cache, in one batched call of the language model.

Design: the per-stream `DynamicCache`s are stacked into one batch cache, each left-padded to the longest
(keys/values `[B, H, L, d]`, zeros where a stream has no token); the new tokens are right-padded to the
longest (`[B, n, D]`), each at its own TMRoPE positions (`[3, B, n]`); a 2-D attention mask `[B, L + n]`
marks what is real. So in the batch, stream `b`'s sequence is `[pad][cache_b][new_b][pad]`: its queries
see exactly its own cache and its own earlier new tokens (the padding is masked, and causality by index
still orders the new tokens), which is what it would see alone; rotary embeddings are applied per token
before caching, so stacking keys changes nothing. After the forward, each stream's new keys/values (the
`n_b` real ones) are appended to its own cache. Results equal sequential prefill up to the order of
floating-point sums (the tests hold it to 1e-4 in fp32).

Costs: every batched forward copies each stream's whole cache into the stack and back (memory traffic of
the whole context, about what `DynamicCache.update`'s own `torch.cat` already costs per forward), holds the
stacked copy while it runs (twice the KV memory of the batch at peak), and computes the padding (wasted
work grows with the spread of context lengths and of chunk sizes). A paged or static multi-stream cache
would avoid the copies; `transformers`' `DynamicCache` has no per-row length, so the copy is the price of
keeping each stream's cache its own (window slides, forks and rollbacks stay per stream). With
FlashAttention-2 the same mask works (varlen: the padding is removed, causality is bottom-right aligned).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import DynamicCache

from operators.chunks import CompressedChunk
from pipeline.session.context import LiveContext


@torch.inference_mode()
def forward_batch(contexts: Sequence[LiveContext], embeds: Sequence[torch.Tensor], positions: Sequence[torch.Tensor],
                  logits: bool = False) -> list[torch.Tensor] | None:
    """Run embeds[b] [n_b, D] at positions[b] [3, n_b] on top of contexts[b]'s cache, all in one forward;
    each context's cache grows by its n_b tokens. With `logits`, the logits [V] after each one's last token."""
    if len(contexts) == 1:
        out = contexts[0].forward_embeds(embeds[0], positions[0], logits=int(logits))
        return None if out is None else [out[-1]]
    first = contexts[0]
    thinker, device = first.thinker, first.device
    dtype = thinker.lm_head.weight.dtype
    lengths = [len(c) for c in contexts]
    sizes = [e.shape[0] for e in embeds]
    batch, past, new = len(contexts), max(lengths), max(sizes)
    stacked = DynamicCache(ddp_cache_data=_stack_layers(contexts, lengths, past))
    x = torch.zeros(batch, new, embeds[0].shape[-1], dtype=dtype, device=device)  # [B, n, D]
    pos = torch.zeros(3, batch, new, dtype=torch.long)  # [3, B, n]
    mask = torch.zeros(batch, past + new, dtype=torch.long)  # [B, L + n]
    for b, (e, p, length, size) in enumerate(zip(embeds, positions, lengths, sizes, strict=True)):
        x[b, :size] = e.to(device, dtype)
        pos[:, b, :size] = p
        pos[:, b, size:] = p[:, -1:]
        mask[b, past - length:past + size] = 1
    out = thinker.model.language_model(inputs_embeds=x, position_ids=pos.to(device), attention_mask=mask.to(device),
                                       cache=stacked, use_cache=True)
    for b, (context, size) in enumerate(zip(contexts, sizes, strict=True)):
        for mine, all_ in zip(context.cache.layers, stacked.layers, strict=True):
            mine.update(all_.keys[b:b + 1, :, past:past + size], all_.values[b:b + 1, :, past:past + size])
    if not logits:
        return None
    last = torch.tensor(sizes, device=device) - 1
    return list(thinker.lm_head(out.last_hidden_state[torch.arange(batch, device=device), last]))  # B x [V]


def _stack_layers(contexts: Sequence[LiveContext], lengths: list[int], past: int):
    """(keys, values) [B, H, past, d] per layer: each context's cache left-padded with zeros to `past`."""
    layers = []
    for per_context in zip(*(c.cache.layers for c in contexts), strict=True):
        k0 = per_context[0].keys
        keys = k0.new_zeros(len(contexts), k0.shape[1], past, k0.shape[3])
        values = torch.zeros_like(keys)
        for b, (layer, length) in enumerate(zip(per_context, lengths, strict=True)):
            keys[b, :, past - length:] = layer.keys[0]
            values[b, :, past - length:] = layer.values[0]
        layers.append((keys, values))
    return layers


def prefill_batch(contexts: Sequence[LiveContext], chunks: Sequence[CompressedChunk]) -> None:
    """Append chunks[b] to contexts[b] (distinct contexts) in one forward, each at the positions it takes
    alone; then each context records its chunk and slides its window if full (a slide re-prefills that
    stream's window on its own, as `LiveContext.append` does)."""
    placed = [c.place(chunk) for c, chunk in zip(contexts, chunks, strict=True)]
    forward_batch(contexts, [chunk.tokens for chunk in chunks], placed)
    for context, chunk, positions in zip(contexts, chunks, placed, strict=True):
        context.commit(chunk, positions)
