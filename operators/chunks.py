"""What flows between the per-chunk operators: preprocessed, encoded and compressed chunks."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from omnisift.counts import TokenCounts


@dataclass
class PreprocessedChunk:
    """Model inputs of one chunk.

    pixel_values: [grid_t * grid_h * grid_w, 3 * 2 * 14 * 14] patches in the processor's order, or None.
    grid_thw:     (grid_t, grid_h, grid_w) of the patch grid (grid_t = 1 or 2 temporal steps), or None.
    features:     [128, n_mel] log-mel frames at 100 per second, or None.
    """

    index: int
    pixel_values: torch.Tensor | None
    grid_thw: tuple[int, int, int] | None
    features: torch.Tensor | None


@dataclass
class EncodedChunk:
    """Tower outputs of one chunk, in the language model's width D.

    video: [grid_t, n_p, D] tokens of each visual frame (n_p = grid_h * grid_w / 4), or None.
    audio: [n_a, D] audio tokens (25 per second), or None.
    grid_hw: merged-token grid (rows, cols) of a visual frame.
    audio_features, audio_tower: optional, the [128, n_mel] log-mel frames and the audio tower that made
        `audio`, for compressors that run a separate pass of the tower (OmniZip's attention scores).
        They stay in the encoding process (the compressor runs there); only `CompressedChunk` travels.
    """

    index: int
    video: torch.Tensor | None
    audio: torch.Tensor | None
    grid_hw: tuple[int, int] | None
    audio_features: torch.Tensor | None = None
    audio_tower: torch.nn.Module | None = field(default=None, repr=False, compare=False)


@dataclass
class CompressedChunk:
    """The tokens a compressor kept, in sequence order (video then audio), with TMRoPE positions.

    tokens:    [K, D] kept embeddings.
    positions: [3, K] long, relative to the stream's first audio-video position (add `st`).
    is_video:  [K] bool.
    last_block_end: relative position after the chunk's last uncompressed block (audio if any, else
                    video), where text following the audio-video segment would continue.
    """

    index: int
    tokens: torch.Tensor
    positions: torch.Tensor
    is_video: torch.Tensor
    video_before: int
    audio_before: int
    last_block_end: int

    @property
    def video_after(self) -> int:
        return int(self.is_video.sum())

    @property
    def audio_after(self) -> int:
        return int(self.is_video.numel() - self.is_video.sum())

    @property
    def counts(self) -> TokenCounts:
        """What the compressor kept of this chunk."""
        return TokenCounts(self.video_before, self.video_after, self.audio_before, self.audio_after)
