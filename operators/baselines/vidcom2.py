"""VidCom2-style video-only selection, chunk by chunk, with a running mean instead of the video mean.

Paper: Xuyang Liu, Yiyu Wang, Junpeng Ma, Linfeng Zhang, "Video Compression Commander: Plug-and-Play
Inference Acceleration for Video Large Language Models" (VidCom2), EMNLP 2025, arXiv 2505.14454.

The rule: tokens are L2-normalised on the half of the channels with the lowest variance; each token's
similarity to the video's mean token and to its frame's mean token is a multi-scale Gaussian kernel
(sum over alpha in 2^-3 .. 2^1 of exp(-|x - c|^2 / (2 alpha))). Frames that are further from the video
mean (more unique) get a larger share of the budget, `scale_f = base (1 + p_f - mean p)` with
`p = softmax(-mean video-similarity of the frame / 0.01)`; in each frame the tokens with the lowest
(video + frame) similarity, the outliers, are kept.

Deviations made to run it live:
- The video mean is a running mean of all normalised tokens seen so far in the stream (this chunk
  included), not the mean of the whole video; `reset()` clears it. Low-variance channels are chosen on
  the current chunk, and past tokens stay in the running mean as they were normalised on their own
  chunk's channels (zero elsewhere).
- Only from the chunk just before (`Compressor.carrying`): a chunk that does not directly follow the one
  processed last (a gap, out of order, a restarted source, the same chunk again) starts the running mean
  over from its own tokens, as a stream's first chunk does.
- Budget: a chunk keeps `G * kept_count(n_p, rho_video)` video tokens in total, so counts per chunk equal
  the other methods'; VidCom2's uniqueness only moves budget between the chunk's frames (rounded, then
  corrected so the total is exact, at most `n_p` per frame). The paper shares it across all frames.
- Audio (VidCom2 is video-only): see `VideoOnlyCompressor` (evenly spaced at `audio_kept_count(n_a, rho_audio)`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisift.ratios import Ratios, kept_count
from operators.baselines.common import VideoOnlyCompressor, top_mask
from operators.compress import register_compressor

ALPHAS = (0.125, 0.25, 0.5, 1.0, 2.0)
TEMPERATURE = 0.01


def gaussian_similarity(x: torch.Tensor, center: torch.Tensor) -> torch.Tensor:
    """Multi-scale Gaussian kernel of [..., C] tokens against a broadcastable center: [...]."""
    dist = ((x - center) ** 2).sum(-1)
    return sum(torch.exp(-dist / (2 * a)) for a in ALPHAS)


def frame_budgets(uniqueness: torch.Tensor, total: int, n_p: int) -> torch.Tensor:
    """Split `total` kept tokens over frames by VidCom2's softmax scales; [G] long, sums to `total`.

    uniqueness: [G] mean video-similarity of each frame (lower = more unique)."""
    steps = uniqueness.shape[0]
    p = torch.softmax((-uniqueness - (-uniqueness).max()) / TEMPERATURE, dim=0)
    share = (1 + p - p.mean()) * total / steps  # [G], sums to total
    counts = share.floor().long().clamp(0, n_p)
    for _ in range(total - int(counts.sum())):  # largest remainders first, frames not yet full
        room = (share - counts).masked_fill(counts >= n_p, float("-inf"))
        counts[int(room.argmax())] += 1
    return counts


@register_compressor("vidcom2")
class VidCom2Compressor(VideoOnlyCompressor):
    """VidCom2 with a running video mean; see the module docstring."""

    carried = ("sum", "count")

    def __init__(self, ratios: Ratios, selector=None, **options) -> None:
        super().__init__(ratios, selector, **options)
        self.forget()

    def forget(self) -> None:
        self.sum: torch.Tensor | None = None  # [D] running sum of normalised tokens (all channels)
        self.count = 0

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        steps, n_p, d = video.shape
        x = video.float()
        channels = torch.topk(x.reshape(-1, d).var(0, unbiased=False), d // 2, largest=False).indices
        # normalise on the chosen channels; keep a running sum over all channels of those tokens
        sel = F.normalize(x[..., channels], dim=-1)  # [G, n_p, C]
        full = torch.zeros_like(x)
        full[..., channels] = sel
        with self.carrying(self.chunk_index):
            if self.sum is not None and self.sum.shape[0] != d:
                self.reset()
            self.sum = full.sum((0, 1)) if self.sum is None else self.sum + full.sum((0, 1))
            self.count += steps * n_p
            video_center = (self.sum / self.count)[channels]  # [C] running mean
        frame_center = sel.mean(1, keepdim=True)  # [G, 1, C]
        v_score = gaussian_similarity(sel, video_center)  # [G, n_p]
        f_score = gaussian_similarity(sel, frame_center)  # [G, n_p]
        budgets = frame_budgets(v_score.mean(-1), steps * kept_count(n_p, self.ratios.rho_video), n_p)
        return torch.stack([top_mask(-(v_score[g] + f_score[g]), int(budgets[g])) for g in range(steps)])
