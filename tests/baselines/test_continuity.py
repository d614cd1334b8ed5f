"""Baselines carry state only from the chunk just before (`Compressor.carrying`): after a gap, out of
order or a restart a chunk is compressed as a stream's first, and the same chunk again changes nothing
the chunks after it see. Each is checked against fresh compressors fed the sequence it should equal.
Consecutive chunks carrying is checked in test_rules (and for `stvp` in tests/operators)."""

from __future__ import annotations

import pytest
import torch

from omnisift.ratios import Ratios
from operators.baselines import timechat
from operators.baselines.omnizip import OmniZipCompressor
from operators.compress import make_compressor
from tests.baselines.test_rules import stream

CARRYING = {  # every baseline that carries state across chunks, with options that change what it carries
    "timechat": {}, "timechat_threshold": {"mode": "threshold", "threshold": 0.0},
    "dycoke": {}, "dycoke_window6": {"window": 6}, "vidcom2": {}, "omnizip": {},
}
# omnizip's audio saliency, by chunk index: retention against the running threshold differs a lot
# between chunks, so the video each keeps shows which thresholds were used
OFFSETS = (0.0, 0.3, -0.4, 0.6, 0.5)


@pytest.fixture(autouse=True)
def saliency_by_index(monkeypatch):
    monkeypatch.setattr(OmniZipCompressor, "audio_saliency",
                        lambda self, chunk: torch.linspace(0, 1, chunk.audio.shape[0]) + OFFSETS[chunk.index])


def compressor(key):
    return make_compressor(key.split("_")[0], Ratios(0.7, 0.3), **CARRYING[key])


def run(key, chunks, comp=None):
    """Each chunk compressed in turn by `comp` (a fresh compressor if None)."""
    comp = compressor(key) if comp is None else comp
    return [comp.process(c) for c in chunks]


def assert_same(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert a.index == b.index
        assert torch.equal(a.positions, b.positions) and torch.equal(a.is_video, b.is_video)
        assert torch.equal(a.tokens, b.tokens)


# 1 or 5 chunks before (odd, not a multiple of 3), so that carrying dycoke's window phase (4 or 6 frames)
# on would not land on a window's start by chance
@pytest.mark.parametrize("key", CARRYING)
@pytest.mark.parametrize("before,after", [([0], [2, 3]), ([0, 1, 2, 3, 4], [2, 3]), ([0, 1, 2, 3, 4], [0, 1])],
                         ids=["gap", "out-of-order", "restart"])
def test_a_chunk_not_right_after_the_one_processed_last_starts_as_a_streams_first(key, before, after):
    chunks = stream(5)
    comp = compressor(key)
    run(key, [chunks[i] for i in before], comp)
    tail = [chunks[i] for i in after]
    assert_same(run(key, tail, comp), run(key, tail))  # and the chunk after it carries from it again


@pytest.mark.parametrize("key", CARRYING)
def test_the_same_chunk_again_starts_as_a_streams_first_and_the_next_ones_as_if_it_came_once(key):
    chunks = stream(4)
    comp = compressor(key)
    run(key, chunks[:2], comp)
    assert_same(run(key, [chunks[1]], comp), run(key, [chunks[1]]))  # chunk 1 again
    assert_same(run(key, chunks[2:], comp), run(key, chunks)[2:])


def test_a_chunk_that_fails_half_way_carries_nothing_to_the_next(monkeypatch):
    chunks = stream(3)
    comp = compressor("timechat")
    run("timechat", chunks[:2], comp)

    def fail(*args):
        raise RuntimeError("failed half-way")

    with monkeypatch.context() as patch, pytest.raises(RuntimeError, match="half-way"):
        patch.setattr(timechat, "top_mask", fail)  # chunk 1 again fails on its second frame
        comp.process(chunks[1])
    assert_same(run("timechat", chunks[2:], comp), run("timechat", chunks[2:]))
