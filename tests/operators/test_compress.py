"""The compressor registry: exact counts, original positions, and OmniSIFT's rule per chunk."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

import operators  # noqa: F401 - registers the baselines too
from omnisift.ratios import Ratios
from omnisift.selector import VisionGuidedAudioSelector
from operators.chunks import EncodedChunk
from operators.compress import COMPRESSORS, make_compressor

D = 32


def _chunk(index: int = 3, steps: int = 2, rows: int = 3, cols: int = 4, n_audio: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(steps, rows * cols, D, generator=g)
    audio = torch.randn(n_audio, D, generator=g)
    return EncodedChunk(index, video, audio, (rows, cols))


def _kept(n: int, rho: float) -> int:
    return n - math.floor(Fraction(str(rho)) * n)


@pytest.mark.parametrize("name", ["random", "omnisift"])
@pytest.mark.parametrize("rho_video,rho_audio", [(0.8, 0.3), (0.7, 0.3), (0.65, 0.35)])
def test_every_compressor_keeps_the_floor_rule_counts(name, rho_video, rho_audio):
    torch.manual_seed(0)
    comp = make_compressor(name, Ratios(rho_video, rho_audio), VisionGuidedAudioSelector(D))
    out = comp.process(_chunk())
    assert out.video_after == 2 * _kept(12, rho_video)
    assert out.audio_after == _kept(50, rho_audio)
    assert (out.video_before, out.audio_before) == (24, 50)


def test_retention_is_counted_over_audio_and_video_together():
    comp = make_compressor("random", Ratios(0.8, 0.3))
    out = comp.process(_chunk(rows=12, cols=12))
    expected = (2 * _kept(144, 0.8) + _kept(50, 0.3)) / (2 * 144 + 50)
    assert (out.video_after + out.audio_after) / (out.video_before + out.audio_before) == pytest.approx(expected)


def test_kept_tokens_carry_their_original_tmrope_positions():
    out = make_compressor("full", Ratios()).process(_chunk(index=3, rows=3, cols=4))
    video_pos, audio_pos = out.positions[:, out.is_video], out.positions[:, ~out.is_video]
    expected_video = [(25 * g, r, c) for g in (6, 7) for r in range(3) for c in range(4)]
    assert [tuple(p) for p in video_pos.T.tolist()] == expected_video
    assert audio_pos.T.tolist() == [[k, k, k] for k in range(150, 200)]
    assert out.last_block_end == 200


def test_omnisift_compressor_applies_stvp_then_vgas_on_kept_video():
    torch.manual_seed(0)
    selector = VisionGuidedAudioSelector(D).eval()
    chunk = _chunk(seed=5)
    out = make_compressor("omnisift", Ratios(0.5, 0.4), selector).process(chunk)
    f1, f2 = chunk.video[0], chunk.video[1]
    spatial = 1 - torch.nn.functional.cosine_similarity(f1, f1.mean(0, keepdim=True), dim=-1)
    temporal = 1 - torch.nn.functional.cosine_similarity(f2, f1, dim=-1)
    keep1 = torch.sort(torch.topk(spatial, 6).indices).values
    keep2 = torch.sort(torch.topk(temporal, 6).indices).values
    kept_video = torch.cat([f1[keep1], f2[keep2]])
    torch.testing.assert_close(out.tokens[out.is_video], kept_video)
    with torch.no_grad():
        scores = selector(kept_video, chunk.audio)
    keep_a = torch.sort(torch.topk(scores, 30).indices).values
    torch.testing.assert_close(out.tokens[~out.is_video], chunk.audio[keep_a])


def test_carrying_the_previous_frame_scores_the_first_frame_temporally():
    chunk0, chunk1 = _chunk(index=0, seed=1), _chunk(index=1, seed=2)
    comp = make_compressor("omnisift", Ratios(0.5, 0.0), VisionGuidedAudioSelector(D), carry_previous_frame=True)
    comp.process(chunk0)
    out = comp.process(chunk1)
    temporal = 1 - torch.nn.functional.cosine_similarity(chunk1.video[0], chunk0.video[1], dim=-1)
    keep1 = torch.sort(torch.topk(temporal, 6).indices).values
    torch.testing.assert_close(out.tokens[:6], chunk1.video[0][keep1])


def test_random_compressor_is_reproducible_after_reset():
    comp = make_compressor("random", Ratios(0.7, 0.3), seed=7)
    first = comp.process(_chunk()).positions
    comp.reset()
    assert torch.equal(comp.process(_chunk()).positions, first)


def test_unknown_compressor_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown compressor 'nope'.*full.*omnisift.*random"):
        make_compressor("nope", Ratios())
    assert {"full", "random", "omnisift"} <= set(COMPRESSORS)


def test_each_compressor_lists_the_keyword_options_its_constructors_take():
    # written from the constructors: a class's own keywords, plus its base's when it passes **options on
    expected = {
        "full": (), "random": ("seed",), "omnisift": ("carry_previous_frame",), "vgas": ("seed", "video"),
        "stvp": ("audio", "carry_previous_frame", "seed"), "vidcom2": ("audio", "seed"),
        "dycoke": ("anchor", "audio", "seed", "window"), "timechat": ("audio", "mode", "seed", "threshold"),
        "omnizip": ("contextual_ratio", "g", "knn", "span"),
    }
    assert {name: cls.option_names() for name, cls in COMPRESSORS.items()} == expected


def test_an_option_the_compressor_does_not_take_is_one_line_naming_the_options_it_does():
    with pytest.raises(ValueError) as info:
        make_compressor("stvp", Ratios(), carry_previous_frames=True)
    assert str(info.value) == ("compressor 'stvp' has no option carry_previous_frames; "
                               "its options: audio, carry_previous_frame, seed")
