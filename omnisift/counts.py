"""Audio and video token counts before and after compression, and the one formula for what was kept.

Every report of what a compressor kept (a chunk's stats, a prefill's, a file's, an evaluation's) is a
`TokenCounts` or extends it. Plain numbers, no torch: the driver and the network faces read it too.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenCounts:
    """Audio and video tokens before and after compression."""

    video_before: int = 0
    video_after: int = 0
    audio_before: int = 0
    audio_after: int = 0

    @property
    def before(self) -> int:
        return self.video_before + self.audio_before

    @property
    def after(self) -> int:
        return self.video_after + self.audio_after

    @property
    def retention(self) -> float:
        """Fraction of audio + video tokens kept (1.0 when there were none)."""
        return self.after / self.before if self.before else 1.0

    def counts(self) -> TokenCounts:
        """Just the four counts (of a type that extends this one)."""
        return TokenCounts(self.video_before, self.video_after, self.audio_before, self.audio_after)

    def __add__(self, other: TokenCounts) -> TokenCounts:
        return TokenCounts(self.video_before + other.video_before, self.video_after + other.video_after,
                           self.audio_before + other.audio_before, self.audio_after + other.audio_after)

    def summary(self) -> str:
        return (f"video tokens {self.video_before} -> {self.video_after}, audio tokens {self.audio_before} -> "
                f"{self.audio_after}, kept {self.retention:.1%} of audio+video")
