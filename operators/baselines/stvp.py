"""STVP alone, for ablations: OmniSIFT's video pruning with audio kept without VGAS.

Paper: OmniSIFT (ICML 2026, arXiv 2602.04804), section "STVP"; docs/design.md section 3.

Video is exactly the `omnisift` compressor's (spatial saliency on a chunk's first frame, temporal on the
second, `kept_count(n_p, rho_video)` per frame; `carry_previous_frame` and `saliency_dtype` as there,
the carried frame from the chunk just before only). Audio keeps `audio_kept_count(n_a, rho_audio)`
tokens evenly spaced in time (`audio="uniform"`, default, so the ablation isolates what VGAS adds over a
content-blind choice at the same count), or a seeded random subset (`audio="random"`), or every token
(`audio="all"`, an exception to equal counts: STVP's own effect).
"""

from __future__ import annotations

from omnisift.ratios import Ratios
from operators.baselines.common import VideoOnlyCompressor
from operators.compress import OmniSIFTCompressor, register_compressor


@register_compressor("stvp")
class STVPCompressor(VideoOnlyCompressor):
    """STVP for video; audio by a content-blind policy (see the module docstring)."""

    def __init__(self, ratios: Ratios, selector=None, carry_previous_frame: bool = False,
                 saliency_dtype: str = "float32", **options) -> None:
        super().__init__(ratios, selector, **options)
        self.video = OmniSIFTCompressor(ratios, None, carry_previous_frame=carry_previous_frame,
                                        saliency_dtype=saliency_dtype)

    def video_keep(self, video):
        with self.video.carrying(self.chunk_index):  # the inner compressor's process() is not run
            return self.video.stvp_mask(video)

    def reset(self) -> None:
        super().reset()
        self.video.reset()
