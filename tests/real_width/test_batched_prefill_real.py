"""Batched prefill across streams at the real 7B widths (1 layer, random weights, fp32): scores and
next-token logits equal each stream fed alone, within 1e-4."""

from __future__ import annotations

import pytest
import torch

from pipeline.session import OmniSession
from tests.pipeline.batched_reference import ANSWER, QUESTION, next_token_logits, sequential_and_batched


def test_three_streams_at_real_width_batched_equal_each_alone(real_full, target):
    def make(retention: float) -> OmniSession:
        return OmniSession.from_model(real_full, retention=retention, max_pixels=224 * 224)

    pairs = sequential_and_batched(make, [(0, 0.25, 1), (1, 0.5, 2), (2, 0.35, 3)], size=224)
    assert len({len(alone.context) for alone, _ in pairs}) == 3
    for alone, twin in pairs:
        assert torch.equal(twin.context_positions(), alone.context_positions())
        torch.testing.assert_close(next_token_logits(twin, QUESTION), next_token_logits(alone, QUESTION),
                                   **target.tol(float32=1e-4, bfloat16=0.1))
        assert twin.score(QUESTION, ANSWER) == pytest.approx(alone.score(QUESTION, ANSWER),
                                                             abs=target.atol(float32=1e-4, bfloat16=0.1))
