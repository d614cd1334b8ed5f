"""One retention target over audio + video becomes per-modality drop ratios."""

from __future__ import annotations

import math

import pytest

from omnisift.ratios import kept_count, ratios_for_retention


def kept_total(tokens_per_frame: int, ratios) -> int:
    """Kept tokens of a chunk by the release's count: int(n * rho) dropped, in Python floats."""
    video = tokens_per_frame - int(tokens_per_frame * ratios.rho_video)
    audio = 50 - int(50 * ratios.rho_audio)
    return 2 * video + audio


@pytest.mark.parametrize("tokens_per_frame", [144, 256, 576])
@pytest.mark.parametrize("retention", [0.25, 0.35])
def test_retention_keeps_audio_at_the_release_ratio_and_sets_video(tokens_per_frame, retention):
    ratios = ratios_for_retention(retention, tokens_per_frame)
    assert ratios.rho_audio == 0.3
    total = 2 * tokens_per_frame + 50
    assert abs(kept_total(tokens_per_frame, ratios) - retention * total) <= 2  # floor rule on two frames


def test_release_video_ratio_point_eight_is_about_a_quarter_at_144_tokens():
    kept = 2 * kept_count(144, 0.8) + kept_count(50, 0.3)
    assert kept / (2 * 144 + 50) == pytest.approx(0.27, abs=0.01)


def test_small_frames_keep_one_video_token_each_and_cut_audio():
    ratios = ratios_for_retention(0.25, 16)  # 35 release audio tokens alone exceed 0.25 * 82 = 20.5
    assert kept_count(16, ratios.rho_video) == 1
    assert kept_count(50, ratios.rho_audio) == 50 - math.floor(50 - 18.5)
    assert kept_total(16, ratios) == 21


def test_a_retention_too_small_for_any_audio_still_keeps_one_audio_token_not_all():
    # rho_audio = 1 would mean "keep all audio" to the release; the computed ratio stays below it.
    ratios = ratios_for_retention(0.01, 4)
    assert ratios.rho_audio < 1.0 and 50 - int(50 * ratios.rho_audio) == 1


def test_retention_outside_unit_interval_is_refused():
    with pytest.raises(ValueError, match="retention must be a fraction"):
        ratios_for_retention(1.2, 144)
