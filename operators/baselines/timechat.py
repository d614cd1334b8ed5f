"""TimeChat-Online's differential token drop (DTD), chunk by chunk.

Paper: Linli Yao et al., "TimeChat-Online: 80% Visual Tokens are Naturally Redundant in Streaming
Videos", 2025, arXiv 2504.17343.

The rule: each frame is compared with the previous frame, token by token at the same grid position;
tokens that barely changed (cosine similarity above a threshold) are dropped. The first frame of a
stream has nothing to compare with and is kept.

Two modes:
- `mode="ratio"` (default): each frame keeps `kept_count(n_p, rho_video)` tokens, the least similar to
  the previous frame (the paper's ratio variant), so counts equal the other methods'. The stream's very
  first frame keeps evenly spaced grid tokens at the same count (deviation: the paper keeps it whole).
- `mode="threshold"`: a token is kept when its similarity to the previous frame is at most `threshold`
  (the paper's main mode). Counts then follow the content, an exception to equal counts; the stream's
  first frame is kept whole as in the paper.

Deviations made to run it here:
- The previous frame is carried across chunks (one visual frame = one 1-second temporal patch of
  Qwen2.5-Omni, not a single 1 fps frame); `reset()` forgets it, and a frame-size change is treated as
  a first frame.
- Only from the chunk just before (`Compressor.carrying`): a chunk that does not directly follow the one
  processed last (a gap, out of order, a restarted source, the same chunk again) has its first frame
  treated as the stream's first frame.
- Tokens are the language model's inputs after the 2x2 merger (the paper compares ViT features).
- Audio (DTD is video-only): see `VideoOnlyCompressor` (evenly spaced at `audio_kept_count(n_a, rho_audio)`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisift.ratios import Ratios, kept_count
from operators.baselines.common import VideoOnlyCompressor, top_mask, uniform_mask
from operators.compress import register_compressor


@register_compressor("timechat")
class TimeChatCompressor(VideoOnlyCompressor):
    """TimeChat-Online DTD against the previous frame, by ratio or by threshold; see the module docstring."""

    carried = ("previous_frame",)

    def __init__(self, ratios: Ratios, selector=None, mode: str = "ratio", threshold: float = 0.9,
                 **options) -> None:
        super().__init__(ratios, selector, **options)
        if mode not in ("ratio", "threshold"):
            raise ValueError(f"mode must be 'ratio' or 'threshold', got {mode!r}")
        if not -1.0 <= threshold <= 1.0:
            raise ValueError(f"threshold is a cosine similarity in [-1, 1], got {threshold}")
        self.mode, self.threshold = mode, threshold
        self.forget()

    def forget(self) -> None:
        self.previous_frame: torch.Tensor | None = None  # [n_p, D]

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        n_p = video.shape[1]
        keep = kept_count(n_p, self.ratios.rho_video)
        masks = []
        with self.carrying(self.chunk_index):
            for frame in video:  # [n_p, D]
                previous = self.previous_frame
                if previous is None or previous.shape != frame.shape:
                    mask = (torch.ones(n_p, dtype=torch.bool, device=frame.device) if self.mode == "threshold"
                            else uniform_mask(n_p, keep, frame.device))
                else:
                    similarity = F.cosine_similarity(frame.float(), previous.float(), dim=-1)  # [n_p]
                    mask = (similarity <= self.threshold if self.mode == "threshold"
                            else top_mask(-similarity, keep))
                masks.append(mask)
                self.previous_frame = frame
        return torch.stack(masks)  # [G, n_p]
