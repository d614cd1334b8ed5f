"""Exact retention accounting for every registered method at 25% and 35% over audio + video."""

from __future__ import annotations

import pytest
import torch

from omnisift.ratios import ratios_for_retention
from omnisift.selector import VisionGuidedAudioSelector
from operators.chunks import EncodedChunk
from operators.compress import COMPRESSORS, make_compressor
from tests.baselines.conftest import D

N_P = 144  # a 12 x 12 grid


def kept(n: int, rho: float) -> int:
    """The release's count: int(n * rho) dropped, in Python floats."""
    return n - int(n * rho)


def chunks(tower, n=3):
    g = torch.Generator().manual_seed(7)
    return [EncodedChunk(i, torch.randn(2, N_P, D, generator=g), torch.randn(50, D, generator=g), (12, 12),
                         torch.randn(128, 200, generator=g), tower) for i in range(n)]


EQUAL = ["random", "omnisift", "stvp", "vgas", "dycoke", "timechat", "vidcom2"]


@pytest.mark.parametrize("retention", [0.25, 0.35])
@pytest.mark.parametrize("name", [*EQUAL, "omnizip_span0"])
def test_equal_count_methods_keep_exactly_the_release_rule_counts(name, retention, audio_tower):
    ratios = ratios_for_retention(retention, N_P)
    options = {"span": 0.0} if name == "omnizip_span0" else {}
    torch.manual_seed(0)
    comp = make_compressor(name.removesuffix("_span0"), ratios, VisionGuidedAudioSelector(D).eval(), **options)
    expected_v, expected_a = 2 * kept(N_P, ratios.rho_video), kept(50, ratios.rho_audio)
    for c in chunks(audio_tower):
        out = comp.process(c)
        assert (out.video_after, out.audio_after) == (expected_v, expected_a)
        assert (out.video_before, out.audio_before) == (2 * N_P, 50)
        kept_fraction = (out.video_after + out.audio_after) / (out.video_before + out.audio_before)
        assert kept_fraction == pytest.approx(retention, abs=1.0 / (2 * N_P + 50))


def test_every_registered_method_is_covered():
    assert set(COMPRESSORS) == {"full", *EQUAL, "omnizip"}


@pytest.mark.parametrize("retention", [0.25, 0.35])
def test_exceptions_are_exactly_their_documented_rule(retention, audio_tower):
    ratios = ratios_for_retention(retention, N_P)
    cs = chunks(audio_tower)
    # omnizip: audio exact, video per chunk from its own ratio (first chunk: the target)
    comp = make_compressor("omnizip", ratios)
    for i, c in enumerate(cs):
        out = comp.process(c)
        assert out.audio_after == kept(50, ratios.rho_audio)
        assert out.video_after == 2 * kept(N_P, comp.rho_v)
        if i == 0:
            assert comp.rho_v == ratios.rho_video
    # dycoke anchor=full: window-first frames whole, the others at the count
    out = make_compressor("dycoke", ratios, anchor="full").process(cs[0])
    assert out.video_after == N_P + kept(N_P, ratios.rho_video)
    # timechat threshold: first frame whole; audio still exact
    out = make_compressor("timechat", ratios, mode="threshold", threshold=1.0).process(cs[0])
    assert (out.video_after, out.audio_after) == (2 * N_P, kept(50, ratios.rho_audio))
    # audio="all" for the video-only methods
    out = make_compressor("vidcom2", ratios, audio="all").process(cs[0])
    assert (out.video_after, out.audio_after) == (2 * kept(N_P, ratios.rho_video), 50)
