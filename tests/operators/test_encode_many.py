"""Batched encoding across streams (`operators.encode_many`): the chunks of several streams through one
forward of each tower, then each compressed with its own stream's carried state, give what each stream's
chunks give one at a time through their own `ChunkEncoder.process`: the same kept tokens (1e-5, float32),
positions and kept ids, chunk after chunk."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from omnisift.loading import load_model
from operators import Compression, encode_many
from streams.chunk import AVChunk

# frame sizes that give different patch grids at the tiny processor's bounds (56*56 .. 112*112 pixels)
STREAMS = {  # name: (height, width, has video, has audio)
    "square": (112, 112, True, True),
    "wide": (56, 112, True, True),
    "small": (84, 84, True, False),
    "mic": (0, 0, False, True),
}


def stream_chunks(name: str, n: int, seed: int) -> list[AVChunk]:
    """n consecutive 2 s chunks of noise frames (4 at 2 fps) and a tone, per the stream's shape."""
    h, w, video, audio = STREAMS[name]
    rng = np.random.default_rng(seed)
    chunks = []
    for i in range(n):
        frames = rng.integers(0, 256, (4, h, w, 3), dtype=np.uint8) if video else None
        t = np.arange(32000) / 16000 + 2.0 * i
        sound = (0.3 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.05 * rng.standard_normal(32000)
                 ).astype(np.float32) if audio else None
        chunks.append(AVChunk(name, i, 2.0 * i, frames, sound))
    return chunks


@pytest.fixture(scope="module")
def tiny(tiny_model_path, target):
    return load_model(tiny_model_path, **target.load(), part="towers")


def encoders(model, names):
    compression = Compression.of("omnisift", rho_video=0.5, rho_audio=0.4,
                                 options={"carry_previous_frame": True})
    return {name: compression.chunk_encoder(model) for name in names}


def assert_same(batched, alone, target):
    assert batched.index == alone.index
    assert torch.equal(batched.positions, alone.positions)  # kept ids at their TMRoPE positions
    assert torch.equal(batched.is_video, alone.is_video)
    torch.testing.assert_close(batched.tokens, alone.tokens,
                               **target.tol(float32=(1e-5, 1e-5), bfloat16=(0.05, 0.02)))
    assert (batched.video_before, batched.audio_before, batched.last_block_end) == (
        alone.video_before, alone.audio_before, alone.last_block_end)


@pytest.mark.parametrize("names", [("square", "wide", "small", "mic"), ("square", "wide")],
                         ids=["mixed-sizes-and-modalities", "two-av-streams"])
def test_batched_chunks_equal_one_at_a_time_across_consecutive_chunks(tiny, names, target):
    chunks = {name: stream_chunks(name, 3, seed) for seed, name in enumerate(names)}
    alone_enc, batch_enc = encoders(tiny, names), encoders(tiny, names)
    for i in range(3):
        alone = [alone_enc[name].process(chunks[name][i]) for name in names]
        batched = encode_many([(batch_enc[name], chunks[name][i]) for name in names])
        for b, a in zip(batched, alone, strict=True):
            assert_same(b, a, target)


class Broken:
    """A compressor whose every chunk fails."""

    def process(self, chunk):
        raise RuntimeError("compressor broke")


def test_a_chunk_whose_compression_fails_gives_its_exception_and_the_others_their_tokens(tiny, target):
    enc = encoders(tiny, ["square", "wide"])
    enc["wide"].compressor = Broken()
    good, other = stream_chunks("square", 1, 0)[0], stream_chunks("wide", 1, 1)[0]
    ok, failed = encode_many([(enc["square"], good), (enc["wide"], other)])
    assert isinstance(failed, RuntimeError) and str(failed) == "compressor broke"
    assert_same(ok, encoders(tiny, ["square"])["square"].process(good), target)


def test_a_chunk_that_breaks_the_batched_tower_forward_fails_alone(tiny, target):
    enc = encoders(tiny, ["square", "wide"])
    make_inputs = enc["wide"].preprocessor.process

    def truncated(*args):  # patches cut short of the 1176 values the vision tower takes
        pre = make_inputs(*args)
        pre.pixel_values = pre.pixel_values[:, :1000]
        return pre
    enc["wide"].preprocessor.process = truncated
    good, other = stream_chunks("square", 1, 0)[0], stream_chunks("wide", 1, 1)[0]
    ok, failed = encode_many([(enc["square"], good), (enc["wide"], other)])
    assert isinstance(failed, RuntimeError)
    assert_same(ok, encoders(tiny, ["square"])["square"].process(good), target)


def test_a_stream_twice_in_one_batch_is_refused(tiny):
    enc = encoders(tiny, ["square"])["square"]
    first, second = stream_chunks("square", 2, 0)
    with pytest.raises(ValueError, match="at most one chunk per stream"):
        encode_many([(enc, first), (enc, second)])
