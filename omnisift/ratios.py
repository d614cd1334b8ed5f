"""How many tokens a ratio keeps, and how one retention target becomes per-modality ratios.

OmniSIFT's ratios count what is *dropped*: `rho_video` of each frame's tokens and `rho_audio` of each
chunk's audio tokens. The count is the public release's, `int(n * rho)` dropped in Python float
arithmetic, so a product that lands just under an integer rounds down: 0.7 * 90 is 62.99999999999999,
62 dropped and 28 kept (the exact rational floor would drop 63). The OmniSIFT-7B checkpoint was trained
with this rule; at rho_video = 0.7 it keeps one token more than the exact floor for n_p in {90, 170, 180,
330-360, 650-730}. Two audio rules of the release come with it (`audio_kept_count`): `rho_audio = 1`
keeps every audio token (the release reads 1 as "audio pruning off"), and a chunk with no video token left
to guide the selector keeps all its audio. Retention is always counted over audio and video together.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omnisift.token_layout import AUDIO_TOKENS_PER_CHUNK

RELEASE_RHO_VIDEO = 0.7
RELEASE_RHO_AUDIO = 0.3
RHO_VIDEO_25 = 0.8  # with RELEASE_RHO_AUDIO, about 25% of audio+video tokens kept (the paper's main table)


def check_ratio(name: str, value: float) -> float:
    """Return `value` if it is a fraction in [0, 1], else raise a one-line ValueError naming it."""
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


def kept_count(n: int, rho: float) -> int:
    """Tokens kept out of `n` when `int(n * rho)` are dropped (float arithmetic, as the release counts)."""
    return n - int(n * rho)


def audio_kept_count(n_a: int, rho_audio: float, kept_video: int | None = None) -> int:
    """Audio tokens kept of a chunk's `n_a`, by the release's rules.

    `rho_audio = 1` keeps all audio (the release reads 1 as "off", not "drop all"); so does a chunk with
    no video token left to guide the selector (`kept_video == 0`, e.g. at rho_video = 1); otherwise
    `kept_count(n_a, rho_audio)`. `kept_video=None`: the method does not look at video (baselines).
    """
    if rho_audio >= 1.0 or kept_video == 0:
        return n_a
    return kept_count(n_a, rho_audio)


@dataclass(frozen=True)
class Ratios:
    """Per-modality drop ratios."""

    rho_video: float = RELEASE_RHO_VIDEO
    rho_audio: float = RELEASE_RHO_AUDIO

    def __post_init__(self) -> None:
        check_ratio("rho_video", self.rho_video)
        check_ratio("rho_audio", self.rho_audio)

    @classmethod
    def or_release(cls, rho_video: float | None = None, rho_audio: float | None = None) -> Ratios:
        """The given ratios, each left out (None) taking the release default."""
        return cls(rho_video=RELEASE_RHO_VIDEO if rho_video is None else rho_video,
                   rho_audio=RELEASE_RHO_AUDIO if rho_audio is None else rho_audio)


def resolve_ratios(retention: float | None = None, rho_video: float | None = None,
                   rho_audio: float | None = None) -> Ratios:
    """The drop ratios a user asked for: `retention` or `rho_video`/`rho_audio`, never both (a one-line
    ValueError), each ratio left out taking the release default. With a retention target, the video
    ratio is set per frame size later (`ratios_for_retention`); audio keeps the ratio returned here."""
    if retention is not None and (rho_video is not None or rho_audio is not None):
        raise ValueError("give either retention or rho_video/rho_audio, not both")
    if retention is not None:
        check_ratio("retention", retention)
    return Ratios.or_release(rho_video, rho_audio)


def ratios_for_retention(
    retention: float, tokens_per_frame: int, frames_per_chunk: int = 2, audio_per_chunk: int = AUDIO_TOKENS_PER_CHUNK,
    rho_audio: float = RELEASE_RHO_AUDIO,
) -> Ratios:
    """Drop ratios that keep about `retention` of a chunk's audio + video tokens.

    Audio keeps the release ratio (`rho_audio`) and video absorbs the rest; when that would leave less
    than one video token per frame (small frames), each frame keeps one token and audio is cut further.
    A stream without audio (`audio_per_chunk=0`) spends the whole target on video. The result is exact up
    to the count rule. A computed audio ratio stays below 1 (at most one token kept), since the release
    reads `rho_audio = 1` as "keep all audio".
    """
    check_ratio("retention", retention)
    total = frames_per_chunk * tokens_per_frame + audio_per_chunk
    target = retention * total
    audio_kept = audio_kept_count(audio_per_chunk, rho_audio)
    video_budget = target - audio_kept
    if tokens_per_frame == 0:  # audio only
        return Ratios(rho_video=0.0, rho_audio=_audio_ratio(target, audio_per_chunk))
    if video_budget >= frames_per_chunk or audio_per_chunk == 0:  # enough for video, or video is all there is
        rho_video = 1.0 - max(video_budget, frames_per_chunk) / (frames_per_chunk * tokens_per_frame)
        return Ratios(rho_video=min(max(rho_video, 0.0), 1.0), rho_audio=rho_audio)
    # Audio at the release ratio alone would exceed the target (small frames): every frame still keeps
    # one token, so the picture is never lost, and audio takes the rest of the budget.
    rho_video = 1.0 - 1.0 / tokens_per_frame
    audio_target = max(target - frames_per_chunk, 0.0)
    return Ratios(rho_video=rho_video, rho_audio=_audio_ratio(audio_target, audio_per_chunk))


def _audio_ratio(kept_target: float, n_a: int) -> float:
    """The audio ratio keeping about `kept_target` of `n_a` tokens, kept in [0, 1): at least one token."""
    return min(max(1.0 - kept_target / n_a, 0.0), (n_a - 0.5) / n_a)
