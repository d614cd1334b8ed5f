"""Streams with no end: the window keeps memory and positions bounded, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.session import OmniSession
from tests.pipeline.conftest import moving_square_chunks

QUESTION, ANSWER = "What colour is the moving shape?", "red"


def _session(path, target, **kwargs) -> OmniSession:
    return OmniSession.from_pretrained(str(path), **target.load(), **kwargs)


def test_after_a_shift_answers_equal_a_fresh_prefill_of_the_window(tiny_model_path, target):
    chunks = moving_square_chunks(7)
    windowed = _session(tiny_model_path, target, window_seconds=8)  # 4 chunks, re-based every chunk past 4
    for chunk in chunks:
        windowed.append(chunk)
    assert windowed.context.rebases >= 1
    kept = [c.chunk.index for c in windowed.context.chunks]
    fresh = _session(tiny_model_path, target)
    for chunk in chunks[kept[0]:]:
        fresh.append(chunk)
    assert kept == list(range(kept[0], 7))
    assert torch.equal(windowed.context_positions(), fresh.context_positions())
    assert windowed.score(QUESTION, ANSWER) == pytest.approx(fresh.score(QUESTION, ANSWER),
                                                             abs=target.atol(float32=1e-5, bfloat16=0.1))
    assert windowed.ask(QUESTION, max_new_tokens=6) == fresh.ask(QUESTION, max_new_tokens=6)


def test_the_system_prompt_stays_when_chunks_leave(tiny_model_path, target):
    session = _session(tiny_model_path, target, window_seconds=4)
    prefix = session.context if session.context else None
    for chunk in moving_square_chunks(6):
        session.append(chunk)
    prefix_len = session.context.prefix_ids.numel()
    positions = session.context_positions()
    assert torch.equal(positions[:, :prefix_len], session.context.prefix_positions)
    assert prefix is None and session.context.evicted >= 3


def test_cache_and_positions_stay_bounded_over_a_long_stream(tiny_model_path, target):
    """Thirteen minutes of stream (400 chunks of small frames) through a 20-second window: the cache
    returns to the same size at the same phase of every re-base, and positions stay under a bound."""
    from streams.chunk import AVChunk

    session = _session(tiny_model_path, target, window_seconds=20, min_pixels=28 * 28, max_pixels=28 * 28 * 4)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (4, 56, 56, 3), dtype=np.uint8)
    audio = (rng.standard_normal(32000) * 0.1).astype(np.float32)
    sizes, max_position = [], 0
    for i in range(400):
        session.append(AVChunk("long", i, 2.0 * i, frames, audio))
        sizes.append(len(session.context))
        max_position = max(max_position, int(session.context.positions().max()))
    window, stride = session.context.window_chunks, session.context.stride_chunks
    per_chunk = sizes[1] - sizes[0]  # constant: same frames and ratios every chunk
    prefix = session.context.prefix_ids.numel()
    assert max(sizes) <= prefix + (window + stride) * per_chunk
    assert all(sizes[i] == sizes[i - stride] for i in range(100, 400))  # periodic, not growing
    assert max_position < session.layout.av_start + 50 * (window + stride)
    assert session.context.evicted == 400 - len(session.context.chunks)
    # The end of a day of media time (43200 chunks): positions are still re-based under the same bound.
    for i in range(43190, 43200):
        session.append(AVChunk("long", i, 2.0 * i, frames, audio))
        assert len(session.context) <= prefix + (window + stride) * per_chunk
    assert int(session.context.positions().max()) < session.layout.av_start + 50 * (window + stride)


def test_the_token_window_keeps_the_newest_chunks_that_fit_and_equals_a_fresh_prefill_of_them(tiny_model_path, target):
    chunks = moving_square_chunks(8)
    windowed = _session(tiny_model_path, target, window_tokens=150)  # a chunk here keeps about 43 tokens
    sizes = []
    for chunk in chunks:
        windowed.append(chunk)
        sizes.append(windowed.context.chunk_tokens())
    assert max(sizes) <= 150 and windowed.context.rebases >= 1
    kept = [c.chunk.index for c in windowed.context.chunks]
    assert kept == list(range(kept[0], 8)) and sum(c.chunk.tokens.shape[0] for c in windowed.context.chunks) <= 150
    fresh = _session(tiny_model_path, target)
    for chunk in chunks[kept[0]:]:
        fresh.append(chunk)
    assert torch.equal(windowed.context_positions(), fresh.context_positions())
    assert windowed.score(QUESTION, ANSWER) == pytest.approx(fresh.score(QUESTION, ANSWER),
                                                             abs=target.atol(float32=1e-5, bfloat16=0.1))
