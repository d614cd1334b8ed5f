"""Preprocess gives the towers exactly what the Qwen2.5-Omni processor would."""

from __future__ import annotations

import numpy as np
import torch
from transformers import WhisperFeatureExtractor

from omnisift.tiny import build_processor, build_tokenizer
from operators.preprocess import Preprocessor


def _frames(n: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_video_patches_equal_the_processor_for_a_chunk():
    processor = build_processor(build_tokenizer(), min_pixels=56 * 56, max_pixels=140 * 140)
    frames = _frames(4, 90, 160)
    pre = Preprocessor(processor.video_processor).process(0, frames, None)
    expected = processor.video_processor(videos=[frames], do_sample_frames=False, cap_pixels_per_frame=False,
                                         return_tensors="pt")
    assert pre.grid_thw == tuple(int(x) for x in expected["video_grid_thw"][0])
    torch.testing.assert_close(pre.pixel_values, expected["pixel_values_videos"])


def test_smart_resize_respects_max_pixels_and_multiples_of_28():
    processor = build_processor(build_tokenizer(), min_pixels=56 * 56, max_pixels=112 * 112)
    pre = Preprocessor(processor.video_processor).process(0, _frames(4, 720, 1280), None)
    t, h, w = pre.grid_thw
    height, width = h * 14, w * 14
    assert t == 2 and height % 28 == 0 and width % 28 == 0 and height * width <= 112 * 112


def test_one_frame_chunk_is_padded_to_one_temporal_step():
    processor = build_processor(build_tokenizer())
    pre = Preprocessor(processor.video_processor).process(0, _frames(1, 112, 112), None)
    assert pre.grid_thw[0] == 1


def test_log_mel_equals_whisper_features_of_the_same_chunk():
    rng = np.random.default_rng(1)
    audio = (0.2 * rng.standard_normal(32000)).astype(np.float32)
    whisper = WhisperFeatureExtractor(feature_size=128, sampling_rate=16000, hop_length=160, n_fft=400)
    expected = whisper(audio, sampling_rate=16000, max_length=32000, padding="max_length",
                       return_tensors="pt")["input_features"][0]
    pre = Preprocessor(build_processor(build_tokenizer()).video_processor).process(0, None, audio)
    assert pre.features.shape == (128, 200)
    torch.testing.assert_close(pre.features, expected, atol=2e-4, rtol=1e-4)
