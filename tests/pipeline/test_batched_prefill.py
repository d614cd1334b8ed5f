"""Batched prefill across streams equals sequential prefill: each stream's question scores and next-token
logits after chunks prefilled in one forward with other streams' chunks, against the same stream fed
alone (tiny model, fp32; the real widths in tests/real_width/test_batched_prefill_real.py)."""

from __future__ import annotations

import pytest
import torch

from pipeline.session import OmniSession
from pipeline.session.session import append_compressed_batch
from tests.pipeline.batched_reference import ANSWER, QUESTION, next_token_logits, sequential_and_batched


@pytest.fixture(scope="module")
def make(tiny_model_path, target):
    model = OmniSession.from_pretrained(str(tiny_model_path), **target.load()).model

    def session(retention: float, **kwargs) -> OmniSession:
        return OmniSession.from_model(model, retention=retention, **kwargs)
    return session


def assert_same(alone: OmniSession, twin: OmniSession, target) -> None:
    assert len(twin.context) == len(alone.context)
    assert torch.equal(twin.context_positions(), alone.context_positions())
    torch.testing.assert_close(next_token_logits(twin, QUESTION), next_token_logits(alone, QUESTION),
                               **target.tol(float32=1e-4, bfloat16=0.1))
    assert twin.score(QUESTION, ANSWER) == pytest.approx(alone.score(QUESTION, ANSWER),
                                                         abs=target.atol(float32=1e-4, bfloat16=0.1))


def test_three_streams_of_different_lengths_and_chunk_sizes_prefilled_in_one_forward(make, target):
    # 0, 2 and 4 chunks already in context; retention 0.25 / 0.5 / 1.0 gives different chunk sizes
    pairs = sequential_and_batched(make, [(0, 0.25, 1), (2, 0.5, 2), (4, 1.0, 3)], rounds=2)
    sizes = {p[0].context.chunks[-1].chunk.tokens.shape[0] for p in pairs}
    assert len(sizes) == 3
    for alone, twin in pairs:
        assert_same(alone, twin, target)


def test_two_streams_batched_then_each_continues_alone_identically(make, target):
    pairs = sequential_and_batched(make, [(1, 0.35, 4), (3, 0.35, 5)])
    for alone, twin in pairs:
        assert_same(alone, twin, target)
        assert twin.ask(QUESTION, max_new_tokens=6) == alone.ask(QUESTION, max_new_tokens=6)


def test_a_batched_chunk_that_fills_the_window_slides_and_re_prefills_like_alone(make, target):
    def windowed(retention: float) -> OmniSession:
        return make(retention, window_seconds=4.0)  # 2 chunks + stride 1: the third chunk slides

    pairs = sequential_and_batched(lambda r: windowed(r) if r == 0.5 else make(r), [(2, 0.5, 6), (1, 0.35, 7)])
    (alone, twin), other = pairs[0], pairs[1]
    assert twin.context.rebases == alone.context.rebases == 1
    assert_same(alone, twin, target)
    assert_same(*other, target)


def test_one_session_twice_in_a_batch_is_refused(make):
    session = make(0.35)
    with pytest.raises(ValueError, match="one chunk per session"):
        append_compressed_batch([session, session], [None, None])
