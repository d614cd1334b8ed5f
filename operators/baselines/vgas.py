"""VGAS alone, for ablations: OmniSIFT's vision-guided audio selection with a content-blind video choice.

Paper: OmniSIFT (ICML 2026, arXiv 2602.04804), section "VGAS"; docs/design.md section 3.

Video keeps `kept_count(n_p, rho_video)` tokens per frame, evenly spaced over the grid in raster order
(`video="uniform"`, default) or a seeded random subset (`video="random"`); audio is exactly the
`omnisift` compressor's: the selector scores the chunk's audio tokens guided by the kept video tokens
and keeps `audio_kept_count(n_a, rho_audio)`. Needs the VGAS selector, like `omnisift`.
"""

from __future__ import annotations

import torch

from omnisift.ratios import Ratios, kept_count
from operators.baselines.common import top_mask, uniform_mask
from operators.compress import OmniSIFTCompressor, register_compressor


@register_compressor("vgas")
class VGASCompressor(OmniSIFTCompressor):
    """Uniform (or random) video, VGAS audio (see the module docstring)."""

    def __init__(self, ratios: Ratios, selector=None, video: str = "uniform", seed: int = 0) -> None:
        super().__init__(ratios, selector)
        if video not in ("uniform", "random"):
            raise ValueError(f"video must be 'uniform' or 'random', got {video!r}")
        self.video_policy, self.seed = video, seed
        self.generator = torch.Generator().manual_seed(seed)

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        steps, n_p = video.shape[:2]
        keep = kept_count(n_p, self.ratios.rho_video)
        if self.video_policy == "uniform":
            return uniform_mask(n_p, keep, video.device).expand(steps, n_p).clone()
        return torch.stack([top_mask(torch.rand(n_p, generator=self.generator).to(video.device), keep)
                            for _ in range(steps)])

    def reset(self) -> None:
        super().reset()
        self.generator.manual_seed(self.seed)
