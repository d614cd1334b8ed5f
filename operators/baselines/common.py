"""Pieces the baselines share: evenly spaced selection, per-frame top-k, and the audio policy of the
video-only methods.

Every baseline counts what it keeps the way the rest of the registry does (`omnisift.ratios.kept_count`:
`int(n * rho)` dropped per frame for video and per chunk for audio, as the OmniSIFT release counts;
`rho_audio = 1` keeps all audio, `omnisift.ratios.audio_kept_count`), so at one `(rho_video, rho_audio)`
pair all methods keep the same numbers of tokens unless their docstring names an exception. One exception
is OmniSIFT's own: where it has no video to guide its audio (rho_video = 1, or no video in a stream's
chunk before), it keeps all audio; the video-only baselines do not look at video to count audio.
"""

from __future__ import annotations

import torch

from omnisift.ratios import Ratios, audio_kept_count
from omnisift.stvp import keep_top
from operators.compress import Compressor

AUDIO_POLICIES = ("uniform", "random", "all")


def uniform_mask(n: int, keep: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """[n] bool: `keep` evenly spaced tokens, index floor((i + 1/2) n / keep) for i < keep."""
    mask = torch.zeros(n, dtype=torch.bool, device=device)
    if keep > 0:
        mask[(torch.arange(keep, device=device) * 2 + 1) * n // (2 * keep)] = True
    return mask


def top_mask(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """[n] bool: the `keep` highest scores of a [n] row (ties to the earlier token)."""
    return keep_top(scores.unsqueeze(0), torch.tensor([keep], device=scores.device))[0]


class VideoOnlyCompressor(Compressor):
    """A method that only says which video to keep. Its audio keeps `audio_kept_count(n_a, rho_audio)` tokens:
    evenly spaced in time (`audio="uniform"`, the default: deterministic and content-blind), a seeded
    random subset (`audio="random"`), or every token (`audio="all"`, an exception to equal counts)."""

    def __init__(self, ratios: Ratios, selector=None, audio: str = "uniform", seed: int = 0, **options) -> None:
        super().__init__(ratios, selector, **options)
        if audio not in AUDIO_POLICIES:
            raise ValueError(f"audio must be one of {', '.join(AUDIO_POLICIES)}, got {audio!r}")
        self.audio_policy = audio
        self.seed = seed
        self.generator = torch.Generator().manual_seed(seed)

    def audio_keep(self, audio: torch.Tensor, kept_video: torch.Tensor) -> torch.Tensor:
        n = audio.shape[0]
        if self.audio_policy == "all":
            return torch.ones(n, dtype=torch.bool, device=audio.device)
        keep = audio_kept_count(n, self.ratios.rho_audio)
        if self.audio_policy == "uniform":
            return uniform_mask(n, keep, audio.device)
        return top_mask(torch.rand(n, generator=self.generator).to(audio.device), keep)

    def reset(self) -> None:
        super().reset()
        self.generator.manual_seed(self.seed)
