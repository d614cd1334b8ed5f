"""The real Qwen2.5-Omni-7B shapes: tokens per frame, what OmniSIFT keeps, a live session, each actor's
weights, and context budgets, on a model at the real widths (see conftest.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from omnisift.qwen_sizes import MAX_PIXELS_7B, MIN_PIXELS_7B
from operators import Compression, Preprocessor
from pipeline.config import load_pipeline_config
from pipeline.ray.encoder_worker import EncoderWorker
from pipeline.ray.model_worker import ModelWorker
from pipeline.ray.models import stream_budget
from pipeline.session import OmniSession
from pipeline.session.budget import frame_tokens
from streams.chunk import AVChunk
from tests.pipeline.test_session_exactness import ANSWER, QUESTION, offline_reference

# (width, height) -> tokens per frame with the released processor bounds (issue "The real Qwen2.5-Omni-7B
# shapes": 640x480 is 391 tokens, 720p 1196, 1080p 2691)
RELEASED = {(640, 480): 391, (480, 640): 391, (1280, 720): 1196, (720, 1280): 1196, (1920, 1080): 2691}


def processor_tokens(processor, width: int, height: int, **size) -> int:
    """Tokens per frame as the model's own processor grids a 2-frame clip: t * h * w / merge^2 / t."""
    video = torch.zeros(2, 3, height, width, dtype=torch.uint8)
    out = processor.video_processor(videos=[video], return_tensors="pt", do_sample_frames=False, **size)
    t, h, w = (int(x) for x in out["video_grid_thw"][0])
    return h * w // 4


def chunk(width: int, height: int, index: int = 0, seed: int = 0) -> AVChunk:
    rng = np.random.default_rng(seed + index)
    frames = rng.integers(0, 256, (4, height, width, 3), dtype=np.uint8)
    t = np.arange(32000) / 16000 + 2 * index
    return AVChunk("cam", index, 2.0 * index, frames, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32))


@pytest.mark.parametrize(("size", "tokens"), RELEASED.items())
def test_tokens_per_frame_are_the_processor_grid_at_the_released_bounds(real_processor, size, tokens):
    assert processor_tokens(real_processor, *size) == tokens
    pre = Preprocessor(real_processor.video_processor, "cpu", MIN_PIXELS_7B, MAX_PIXELS_7B)
    _, (t, h, w) = pre.video_patches(np.zeros((4, size[1], size[0], 3), np.uint8))
    assert h * w // 4 == tokens
    assert frame_tokens(MAX_PIXELS_7B, MIN_PIXELS_7B, size) == tokens


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (720, 1280), (1920, 1080), (3840, 2160)])
def test_the_default_cap_holds_any_frame_to_at_most_391_tokens(real_processor, size):
    pre = Preprocessor(real_processor.video_processor, "cpu")  # no max_pixels: the default cap
    _, (t, h, w) = pre.video_patches(np.zeros((4, size[1], size[0], 3), np.uint8))
    expected = processor_tokens(real_processor, *size, size={"shortest_edge": MIN_PIXELS_7B,
                                                              "longest_edge": 640 * 480})
    assert h * w // 4 == expected <= 391
    assert frame_tokens(640 * 480, MIN_PIXELS_7B, size) == expected


def kept_by_retention(retention: float, n_p: int, n_a: int = 50) -> tuple[int, int]:
    """Video and audio tokens a chunk keeps, derived here from the method's rules: audio drops
    floor(0.3 n_a), video keeps the rest of retention x (2 n_p + n_a) over two frames."""
    audio = n_a - math.floor(0.3 * n_a)
    rho_v = 1 - (retention * (2 * n_p + n_a) - audio) / (2 * n_p)
    return 2 * (n_p - math.floor(n_p * rho_v)), audio


@pytest.mark.parametrize("retention", [0.25, 0.35])
def test_kept_counts_at_real_width_meet_the_retention_target(real_full, retention):
    enc = Compression.of("omnisift", retention=retention).chunk_encoder(real_full, max_pixels=MAX_PIXELS_7B)
    out = enc.process(chunk(640, 480))
    assert (out.video_before, out.audio_before) == (2 * 391, 50)
    assert (out.video_after, out.audio_after) == kept_by_retention(retention, 391)
    assert out.tokens.shape == (out.video_after + out.audio_after, 3584)
    if retention == 0.25:
        assert (out.video_after, out.audio_after) == (174, 35)  # the measurement


def test_a_session_at_real_width_scores_what_the_whole_offline_sequence_scores(real_width_path, target):
    session = OmniSession.from_pretrained(str(real_width_path), **target.load(),
                                          rho_video=0.7, rho_audio=0.3, max_pixels=224 * 224)
    chunks = [chunk(224, 224, i) for i in range(2)]
    for c in chunks:
        session.append(c)
    assert isinstance(session.ask(QUESTION, max_new_tokens=3), str)
    expected_score, expected_positions = offline_reference(session, chunks, 0.7, 0.3)
    assert session.score(QUESTION, ANSWER) == pytest.approx(expected_score, rel=1e-4, abs=1e-3)
    live = session.context_positions()  # the prefix and the kept audio-video tokens: the offline sequence's start
    assert torch.equal(live, expected_positions[:, :live.shape[1]])


def parameters(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_the_encoder_holds_only_the_towers_and_the_model_only_the_language_model(real_width_path, real_full):
    spec = {"path": str(real_width_path), "compressor": "omnisift", "device": "cpu", "dtype": "float32"}
    encoder, model = EncoderWorker(spec), ModelWorker(spec)
    full = real_full.thinker
    towers = parameters(full.model.visual) + parameters(full.model.audio_tower) + parameters(full.compressor)
    language = parameters(full.model.language_model) + parameters(full.lm_head) + parameters(full.compressor)
    assert parameters(encoder.model.thinker) == towers
    assert parameters(model.model.thinker) == language
    assert encoder.model.thinker.model.language_model is None and encoder.model.thinker.lm_head is None
    assert model.model.thinker.model.visual is None and model.model.thinker.model.audio_tower is None
    for part in (encoder.model.thinker, model.model.thinker):
        ours = dict(part.named_parameters())
        reference = dict(full.named_parameters())
        assert all(torch.equal(p, reference[name]) for name, p in ours.items())


@pytest.mark.parametrize("config", ["configs/rtsp.yaml", "configs/compose.yaml", "configs/webcam.yaml",
                                    "configs/demo.yaml"])
def test_every_shipped_config_fits_the_real_context(real_width_path, real_processor, real_full, config):
    cfg = load_pipeline_config(config)
    spec = cfg.model.model_copy(update={"path": str(real_width_path)})
    for stream in cfg.streams:
        budget = stream_budget(spec, stream.source, real_processor, real_full.thinker.config)
        budget.check(stream.name)  # raises if it does not fit
        assert budget.worst_case <= 32768 and budget.tokens_per_frame <= 391


def test_a_config_past_the_context_is_refused_in_one_line_naming_the_numbers(real_processor, real_full):
    cfg = load_pipeline_config("configs/rtsp.yaml", model={"path": "unused", "compressor": "full",
                                                             "window_seconds": 300, "max_pixels": 640 * 480})
    budget = stream_budget(cfg.model, cfg.streams[0].source, real_processor, real_full.thinker.config)
    # 720p capped at 640x480 is 364 tokens a frame (the processor's grid); full keeps 2 x 364 + 50 per chunk
    assert (budget.tokens_per_frame, budget.kept_per_chunk, budget.window_chunks) == (364, 778, 150)
    with pytest.raises(ValueError) as info:
        budget.check("stream 'door'")
    message = str(info.value)
    assert "\n" not in message and message.startswith("stream 'door': context budget of ")
    assert f"{budget.worst_case} tokens (150 chunks x 778 kept tokens at 364 per frame" in message
    assert "more than the model's 32768" in message
