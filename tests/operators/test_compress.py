"""The compressor registry: exact counts, original positions, and OmniSIFT's rule per chunk.

Chunks are made on the `target` device in its dtype (`--device`, `--dtype`); kept tokens are compared exactly
(a compressor selects tokens, it does not compute new ones)."""

from __future__ import annotations

import pytest
import torch

import operators  # noqa: F401 - registers the baselines too
from omnisift.ratios import Ratios
from omnisift.selector import VisionGuidedAudioSelector
from operators.chunks import EncodedChunk
from operators.compress import COMPRESSORS, make_compressor

D = 32


def _chunk(target, index: int = 3, steps: int = 2, rows: int = 3, cols: int = 4, n_audio: int = 50, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(steps, rows * cols, D, generator=g).to(target.torch_device, target.torch_dtype)
    audio = torch.randn(n_audio, D, generator=g).to(target.torch_device, target.torch_dtype)
    return EncodedChunk(index, video, audio, (rows, cols))


def _kept(n: int, rho: float) -> int:
    """The release's count: int(n * rho) dropped, in Python floats."""
    return n - int(n * rho)


@pytest.mark.parametrize("name", ["random", "omnisift"])
@pytest.mark.parametrize("rho_video,rho_audio", [(0.8, 0.3), (0.7, 0.3), (0.65, 0.35)])
def test_every_compressor_keeps_the_release_rule_counts(name, rho_video, rho_audio, target):
    torch.manual_seed(0)
    comp = make_compressor(name, Ratios(rho_video, rho_audio), VisionGuidedAudioSelector(D).to(target.torch_device))
    out = comp.process(_chunk(target))
    assert out.video_after == 2 * _kept(12, rho_video)
    assert out.audio_after == _kept(50, rho_audio)
    assert (out.video_before, out.audio_before) == (24, 50)


def test_retention_is_counted_over_audio_and_video_together(target):
    comp = make_compressor("random", Ratios(0.8, 0.3))
    out = comp.process(_chunk(target, rows=12, cols=12))
    expected = (2 * _kept(144, 0.8) + _kept(50, 0.3)) / (2 * 144 + 50)
    assert (out.video_after + out.audio_after) / (out.video_before + out.audio_before) == pytest.approx(expected)


def test_kept_tokens_carry_their_original_tmrope_positions(target):
    out = make_compressor("full", Ratios()).process(_chunk(target, index=3, rows=3, cols=4))
    video_pos, audio_pos = out.positions[:, out.is_video], out.positions[:, ~out.is_video]
    expected_video = [(25 * g, r, c) for g in (6, 7) for r in range(3) for c in range(4)]
    assert [tuple(p) for p in video_pos.T.tolist()] == expected_video
    assert audio_pos.T.tolist() == [[k, k, k] for k in range(150, 200)]
    assert out.last_block_end == 200


def test_omnisift_compressor_applies_stvp_then_vgas_on_kept_video(target):
    torch.manual_seed(0)
    selector = VisionGuidedAudioSelector(D).to(target.torch_device).eval()
    chunk = _chunk(target, seed=5)
    out = make_compressor("omnisift", Ratios(0.5, 0.4), selector).process(chunk)
    f1, f2 = chunk.video[0].double(), chunk.video[1].double()  # saliency in float64, tokens in their dtype
    spatial = 1 - torch.nn.functional.cosine_similarity(f1, f1.mean(0, keepdim=True), dim=-1)
    temporal = 1 - torch.nn.functional.cosine_similarity(f2, f1, dim=-1)
    keep1 = torch.sort(torch.topk(spatial, 6).indices).values
    keep2 = torch.sort(torch.topk(temporal, 6).indices).values
    kept_video = torch.cat([chunk.video[0][keep1], chunk.video[1][keep2]])
    torch.testing.assert_close(out.tokens[out.is_video], kept_video)
    with torch.no_grad():
        scores = selector(kept_video, chunk.audio)
    keep_a = torch.sort(torch.topk(scores, 30).indices).values
    torch.testing.assert_close(out.tokens[~out.is_video], chunk.audio[keep_a])


def _stvp_reference(video: torch.Tensor, before: torch.Tensor | None, keep: int) -> torch.Tensor:
    """float64 STVP of one chunk's frames [G, n_p, D]: kept tokens in raster order, frame by frame. The
    first frame is scored against `before` (temporal) or, if None, against its own mean (spatial)."""
    cos = torch.nn.functional.cosine_similarity
    v = video.double()
    reference = v[0].mean(0, keepdim=True) if before is None else before.double()
    first = cos(v[0], reference, dim=-1)
    saliency = [1 - first] + [1 - cos(v[g], v[g - 1], dim=-1) for g in range(1, v.shape[0])]
    return torch.cat([video[g][torch.sort(torch.topk(s, keep).indices).values] for g, s in enumerate(saliency)])


def _carrying(name: str, target):
    selector = VisionGuidedAudioSelector(D).to(target.torch_device) if name == "omnisift" else None
    return make_compressor(name, Ratios(0.5, 0.0), selector, carry_previous_frame=True)


@pytest.mark.parametrize("name", ["omnisift", "stvp"])
def test_a_carried_frame_scores_the_next_chunks_first_frame_temporally(name, target):
    comp, chunk4, chunk5 = _carrying(name, target), _chunk(target, index=4, seed=1), _chunk(target, index=5, seed=2)
    comp.process(chunk4)
    out = comp.process(chunk5)
    torch.testing.assert_close(out.tokens[out.is_video], _stvp_reference(chunk5.video, chunk4.video[-1], 6))


@pytest.mark.parametrize("name", ["omnisift", "stvp"])
@pytest.mark.parametrize("before,index", [(4, 6), (5, 4), (7, 0)], ids=["gap", "out-of-order", "restart"])
def test_a_chunk_not_right_after_the_one_processed_last_is_scored_spatially(name, before, index, target):
    comp, earlier = _carrying(name, target), _chunk(target, index=before, seed=1)
    chunk = _chunk(target, index=index, seed=2)
    comp.process(earlier)
    out = comp.process(chunk)
    torch.testing.assert_close(out.tokens[out.is_video], _stvp_reference(chunk.video, None, 6))


@pytest.mark.parametrize("name", ["omnisift", "stvp"])
def test_the_same_chunk_again_is_scored_spatially_and_the_next_one_as_if_it_came_once(name, target):
    comp, chunk4, chunk5 = _carrying(name, target), _chunk(target, index=4, seed=1), _chunk(target, index=5, seed=2)
    comp.process(chunk4)
    again = comp.process(chunk4)
    torch.testing.assert_close(again.tokens[again.is_video], _stvp_reference(chunk4.video, None, 6))
    out = comp.process(chunk5)
    torch.testing.assert_close(out.tokens[out.is_video], _stvp_reference(chunk5.video, chunk4.video[-1], 6))


def test_random_compressor_is_reproducible_after_reset(target):
    comp = make_compressor("random", Ratios(0.7, 0.3), seed=7)
    first = comp.process(_chunk(target)).positions
    comp.reset()
    assert torch.equal(comp.process(_chunk(target)).positions, first)


def test_unknown_compressor_names_the_known_ones():
    with pytest.raises(ValueError, match="unknown compressor 'nope'.*full.*omnisift.*random"):
        make_compressor("nope", Ratios())
    assert {"full", "random", "omnisift"} <= set(COMPRESSORS)


def test_each_compressor_lists_the_keyword_options_its_constructors_take():
    # written from the constructors: a class's own keywords, plus its base's when it passes **options on
    expected = {
        "full": (), "random": ("seed",), "omnisift": ("carry_previous_frame", "saliency_dtype"),
        "vgas": ("seed", "video"), "stvp": ("audio", "carry_previous_frame", "saliency_dtype", "seed"),
        "vidcom2": ("audio", "seed"),
        "dycoke": ("anchor", "audio", "seed", "window"), "timechat": ("audio", "mode", "seed", "threshold"),
        "omnizip": ("contextual_ratio", "g", "knn", "span"),
    }
    assert {name: tuple(cls.option_defaults()) for name, cls in COMPRESSORS.items()} == expected


@pytest.mark.parametrize("option, value, message", [
    ("carry_previous_frame", "false", "option carry_previous_frame must be bool, got str 'false'"),
    ("seed", 1.5, "option seed must be int, got float 1.5"),
    ("seed", True, "option seed must be int, got bool True"),
])
def test_an_option_of_the_wrong_type_is_one_line_naming_the_type_it_takes(option, value, message):
    with pytest.raises(ValueError) as info:
        make_compressor("stvp", Ratios(), **{option: value})
    assert str(info.value) == f"compressor 'stvp' {message}"


def test_an_int_is_taken_where_an_option_is_a_float():
    comp = make_compressor("timechat", Ratios(), threshold=1)
    assert comp.threshold == 1


def test_an_option_the_compressor_does_not_take_is_one_line_naming_the_options_it_does():
    with pytest.raises(ValueError) as info:
        make_compressor("stvp", Ratios(), carry_previous_frames=True)
    assert str(info.value) == ("compressor 'stvp' has no option carry_previous_frames; "
                               "its options: audio, carry_previous_frame, saliency_dtype, seed")
