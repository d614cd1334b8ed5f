"""Batched encoding across streams at the real Qwen2.5-Omni-7B widths (towers 1280 wide, output 3584, one
layer each, random weights, float32): the chunks of several streams through one forward of each tower and
then each stream's compressor give what each stream's chunks give one at a time, chunk after chunk. Small
frames keep it quick; the frame sizes differ so the packed vision sequence holds different grids."""

from __future__ import annotations

import numpy as np
import torch

from operators import Compression, encode_many
from streams.chunk import AVChunk

STREAMS = {"door": (112, 84, True), "yard": (140, 112, True), "hall": (84, 84, False)}  # (w, h, audio)


def stream_chunk(name: str, index: int, seed: int) -> AVChunk:
    width, height, audio = STREAMS[name]
    rng = np.random.default_rng(100 * seed + index)
    frames = rng.integers(0, 256, (4, height, width, 3), dtype=np.uint8)
    t = np.arange(32000) / 16000 + 2 * index
    sound = (0.3 * np.sin(2 * np.pi * (300 + 60 * seed) * t)).astype(np.float32) if audio else None
    return AVChunk(name, index, 2.0 * index, frames, sound)


def test_batched_equals_one_at_a_time_at_real_width_across_chunks(real_full):
    compression = Compression.of("omnisift", retention=0.25, options={"carry_previous_frame": True})
    alone = {name: compression.chunk_encoder(real_full) for name in STREAMS}
    batched = {name: compression.chunk_encoder(real_full) for name in STREAMS}
    for index in range(2):
        chunks = {name: stream_chunk(name, index, seed) for seed, name in enumerate(STREAMS)}
        expected = [alone[name].process(chunks[name]) for name in STREAMS]
        got = encode_many([(batched[name], chunks[name]) for name in STREAMS])
        for g, e in zip(got, expected, strict=True):
            assert g.tokens.shape[1] == 3584
            assert torch.equal(g.positions, e.positions) and torch.equal(g.is_video, e.is_video)
            torch.testing.assert_close(g.tokens, e.tokens, atol=1e-5, rtol=1e-5)
