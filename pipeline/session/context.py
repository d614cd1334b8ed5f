"""The live KV cache: a fixed prefix, compressed chunks appended at their TMRoPE positions, and a
sliding window that keeps memory and positions bounded on streams with no end.

Questions fork off the live context: their tokens are appended, answered and cropped away again,
so the context continues exactly as if no question had been asked.

Window: when the newest chunk is `window + stride` chunks (of media time) past the position origin,
the chunks older than `window` leave. The rest are then
re-prefilled from their stored compressed tokens at positions shifted back so the window's first chunk
sits at `st` again. The cache then *is* a fresh prefill of the window at the shifted positions (the
test proves it), positions never exceed `st + 50 * (window + stride)` plus a question, and memory is
flat. Re-prefilling costs one window's prefill every `stride` chunks; rotating cached keys instead
would be cheaper but not exact, because the kept hidden states would still have attended to chunks
that left the window.

The window is bounded by tokens too (`window_tokens`): when the chunks in the cache hold more, the oldest
leave until the rest fit in three quarters of it (the same quarter of slack as the stride), re-based the
same way. Chunks vary in size (a compressor may keep more of a busy chunk), so tokens, not seconds, are
what must stay inside the model's context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from transformers import DynamicCache

from omnisift.token_layout import POSITIONS_PER_CHUNK
from operators.chunks import CompressedChunk


@dataclass
class _Cached:
    """A chunk in the cache: its compressed tokens (kept for re-prefill) and absolute positions."""

    chunk: CompressedChunk
    positions: torch.Tensor  # [3, K] absolute


@dataclass
class LiveContext:
    """KV cache and position bookkeeping of one live stream (no model code beyond `forward`)."""

    thinker: object
    prefix_ids: torch.Tensor  # [P]
    prefix_positions: torch.Tensor  # [3, P]
    av_start: int
    window_chunks: int | None = None
    stride_chunks: int = 1
    window_tokens: int | None = None  # most chunk tokens the cache may hold (prefix not counted)
    cache: DynamicCache = field(init=False)
    chunks: list[_Cached] = field(default_factory=list)
    origin: int | None = None  # chunk index whose tokens sit at `av_start`
    segment_end: int | None = None  # absolute position after the last uncompressed block
    evicted: int = 0
    rebases: int = 0

    def __post_init__(self) -> None:
        self.reset()

    @property
    def device(self) -> torch.device:
        return self.thinker.lm_head.weight.device

    def reset(self) -> None:
        """Drop everything and prefill the prefix again."""
        self.cache = DynamicCache(config=self.thinker.config.get_text_config())
        self.chunks, self.origin, self.segment_end = [], None, None
        self.forward_embeds(self.embed(self.prefix_ids), self.prefix_positions)

    def __len__(self) -> int:
        return self.cache.get_seq_length()

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Token embeddings [n, D] of ids [n]."""
        return self.thinker.get_input_embeddings()(ids.to(self.device))

    @torch.inference_mode()
    def forward_embeds(self, embeds: torch.Tensor, positions: torch.Tensor, logits: int = 0) -> torch.Tensor | None:
        """Run embeds [n, D] at positions [3, n] on top of the cache; logits [logits, V] of the last `logits`
        positions, or None for 0. The LM head runs only where logits are read: a prefilled chunk needs none,
        and at a 152k vocabulary its logits would be the largest temporary of the prefill."""
        dtype = self.thinker.lm_head.weight.dtype
        out = self.thinker.model.language_model(
            inputs_embeds=embeds.to(self.device, dtype).unsqueeze(0),
            position_ids=positions.to(self.device).unsqueeze(1),  # [3, 1, n]
            attention_mask=torch.ones(1, len(self) + embeds.shape[0], dtype=torch.long, device=self.device),
            cache=self.cache, use_cache=True,
        )
        if logits <= 0:
            return None
        return self.thinker.lm_head(out.last_hidden_state[0, -logits:])

    def append(self, chunk: CompressedChunk) -> None:
        """Prefill one compressed chunk at its absolute positions; slide the window if it is full."""
        positions = self.place(chunk)
        self.forward_embeds(chunk.tokens, positions)
        self.commit(chunk, positions)

    def place(self, chunk: CompressedChunk) -> torch.Tensor:
        """The absolute positions [3, K] the chunk's tokens take in this context (the first chunk sets the
        origin). `append` is `place`, a forward of the tokens at those positions, then `commit`; a batched
        prefill (`pipeline.session.batch`) runs the forward of several contexts at once in between."""
        if self.origin is None:
            self.origin = chunk.index
        return chunk.positions + (self.av_start - POSITIONS_PER_CHUNK * self.origin)

    def commit(self, chunk: CompressedChunk, positions: torch.Tensor) -> None:
        """Record a chunk whose tokens the cache now holds at `positions`; slide the window if it is full."""
        shift = self.av_start - POSITIONS_PER_CHUNK * self.origin
        self.chunks.append(_Cached(chunk, positions))
        self.segment_end = chunk.last_block_end + shift
        if self.window_chunks is not None and chunk.index - self.origin >= self.window_chunks + self.stride_chunks - 1:
            self.slide(chunk.index)
        elif self.window_tokens is not None and self.chunk_tokens() > self.window_tokens:
            self.slide_tokens()

    def slide(self, newest: int) -> None:
        """Evict chunks older than the window (by media time, so gaps count), re-prefill the rest
        at positions re-based on the oldest chunk that stays."""
        staying = [c for c in self.chunks if c.chunk.index > newest - self.window_chunks]
        self.evicted += len(self.chunks) - len(staying)
        self.rebases += 1
        self.cache.crop(-self.chunk_tokens())
        self.chunks, self.origin = [], None
        for cached in staying:
            self.append_without_slide(cached.chunk)

    def chunk_tokens(self) -> int:
        """Tokens the cached chunks hold (everything but the prefix)."""
        return len(self) - self.prefix_ids.numel()

    def slide_tokens(self) -> None:
        """Evict the oldest chunks until the newest fit in three quarters of `window_tokens`; re-prefill
        them re-based on the oldest that stays (as `slide`). The newest chunk always stays."""
        budget, kept, staying = self.window_tokens * 3 // 4, 0, []
        for cached in reversed(self.chunks):
            kept += cached.chunk.tokens.shape[0]
            if staying and kept > budget:
                break
            staying.append(cached)
        self.evicted += len(self.chunks) - len(staying)
        self.rebases += 1
        self.cache.crop(-self.chunk_tokens())
        self.chunks, self.origin = [], None
        for cached in reversed(staying):
            self.append_without_slide(cached.chunk)

    def append_without_slide(self, chunk: CompressedChunk) -> None:
        window, tokens = self.window_chunks, self.window_tokens
        self.window_chunks = self.window_tokens = None
        try:
            self.append(chunk)
        finally:
            self.window_chunks, self.window_tokens = window, tokens

    def positions(self) -> torch.Tensor:
        """[3, L] absolute positions of every cached token, prefix first."""
        return torch.cat([self.prefix_positions] + [c.positions.cpu() for c in self.chunks], dim=1)

    def fork(self) -> int:
        """Mark the live context's length before a question is appended."""
        return len(self)

    def rollback(self, mark: int) -> None:
        """Crop everything appended since `fork()`."""
        extra = len(self) - mark
        if extra > 0:
            self.cache.crop(-extra)
