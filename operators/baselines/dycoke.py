"""DyCoke's temporal token merging (TTM), chunk by chunk.

Paper: Keda Tao, Can Qin, Haoxuan You, Yang Sui, Huan Wang, "DyCoke: Dynamic Compression of Tokens for
Fast Video Large Language Models", CVPR 2025, arXiv 2411.15024.

The rule: frames are taken in windows of `window` frames (4 in the paper). In a window, a frame at odd
offset is compared with the frame just before it and a frame at even offset > 0 with the window's first
frame (DyCoke's pairs (0,1), (2,3) and then (0,2)); in each compared frame the tokens whose cosine
similarity to the token at the same grid position of the reference frame is highest are pruned
(merged into the reference, which in DyCoke means dropped), the least similar ones are kept.

Deviations made to run it live:
- Windows run over the stream, not over one whole clip: the frame counter, the window's first frame and
  the previous frame are carried across chunks (a window of 4 frames spans two 2-second chunks here,
  since one visual frame is one temporal patch = 1 second). `reset()` starts a new window.
- Equal counts: every frame keeps `kept_count(n_p, rho_video)` tokens. DyCoke keeps the window's first
  frame whole; here it keeps evenly spaced grid tokens at the same count (`anchor="uniform"`, default).
  `anchor="full"` keeps it whole as in the paper, an exception to equal counts (more video is kept).
- DyCoke's second stage (dynamic KV-cache pruning during decoding, driven by attention) is not applied:
  it needs attention weights at every decoding step and changes the cache per question.
- The paper's edge case (the last window's (0,2) pass is skipped) is not reproduced.
- Audio (DyCoke is video-only): see `VideoOnlyCompressor` (evenly spaced at `audio_kept_count(n_a, rho_audio)`).
- A frame-size change starts a new window.
- Only from the chunk just before (`Compressor.carrying`): a chunk that does not directly follow the one
  processed last (a gap, out of order, a restarted source, the same chunk again) starts a new window at
  its first frame, as a stream's first chunk does.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisift.ratios import Ratios, kept_count
from operators.baselines.common import VideoOnlyCompressor, top_mask, uniform_mask
from operators.compress import register_compressor


def dycoke_reference(offset: int) -> str:
    """Which frame a frame at `offset` in its window is compared with: 'none', 'previous' or 'anchor'."""
    if offset == 0:
        return "none"
    return "previous" if offset % 2 == 1 else "anchor"


@register_compressor("dycoke")
class DyCokeCompressor(VideoOnlyCompressor):
    """DyCoke TTM over windows of `window` frames carried across chunks; see the module docstring."""

    carried = ("frame_count", "anchor_frame", "previous_frame")

    def __init__(self, ratios: Ratios, selector=None, window: int = 4, anchor: str = "uniform", **options) -> None:
        super().__init__(ratios, selector, **options)
        if window < 2:
            raise ValueError(f"window must be at least 2 frames, got {window}")
        if anchor not in ("uniform", "full"):
            raise ValueError(f"anchor must be 'uniform' or 'full', got {anchor!r}")
        self.window, self.anchor = window, anchor
        self.forget()

    def forget(self) -> None:
        self.frame_count = 0  # frames seen since the windows started (the first chunk, or one after a break)
        self.anchor_frame: torch.Tensor | None = None  # [n_p, D] first frame of the current window
        self.previous_frame: torch.Tensor | None = None  # [n_p, D]

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        n_p = video.shape[1]
        keep = kept_count(n_p, self.ratios.rho_video)
        masks = []
        with self.carrying(self.chunk_index):
            for frame in video:  # [n_p, D]
                if self.anchor_frame is not None and self.anchor_frame.shape != frame.shape:
                    self.frame_count = 0  # new frame size: a new window
                offset = self.frame_count % self.window
                ref = dycoke_reference(offset)
                if ref == "none":
                    self.anchor_frame = frame
                    mask = (torch.ones(n_p, dtype=torch.bool, device=frame.device) if self.anchor == "full"
                            else uniform_mask(n_p, keep, frame.device))
                else:
                    reference = self.previous_frame if ref == "previous" else self.anchor_frame
                    similarity = F.cosine_similarity(frame.float(), reference.float(), dim=-1)  # [n_p]
                    mask = top_mask(-similarity, keep)
                masks.append(mask)
                self.previous_frame = frame
                self.frame_count += 1
        return torch.stack(masks)  # [G, n_p]
