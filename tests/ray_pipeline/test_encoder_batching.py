"""The encoder actor's batching across streams: the plain `EncoderWorker` driven from threads (no Ray),
then a pipeline on local Ray with three streams whose chunks share tower forwards."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace

import pytest
import torch

from pipeline.ray import OmniStream
from pipeline.ray.encoder_worker import EncoderWorker
from pipeline.ray.models import load_omni
from tests.pipeline.conftest import moving_square_chunks
from tests.ray_pipeline.conftest import pipeline_config

JOIN = 60.0  # seconds any thread may take
SIZES = {"a": 112, "b": 84, "c": 56}  # a frame size per stream: different patch grids in one forward


@pytest.fixture(scope="module")
def loaded(tiny_model_path, target):
    return load_omni({"path": str(tiny_model_path), **target.load()})


def spec(max_batch: int, max_wait_ms: float = 1000.0) -> dict:
    return {"path": "unused", "compressor": "omnisift", "rho_video": 0.5, "rho_audio": 0.4,
            "compressor_options": {"carry_previous_frame": True},
            "encoder_batch": {"max_batch": max_batch, "max_wait_ms": max_wait_ms}}


def streams(n_chunks: int = 3) -> dict[str, list]:
    out = {}
    for seed, (name, size) in enumerate(SIZES.items()):
        out[name] = [replace(c, stream=name) for c in moving_square_chunks(n_chunks, size=size, seed=seed)]
    return out


def encode_from_threads(worker: EncoderWorker, chunks: dict[str, list]) -> dict[str, list]:
    """Each stream's chunks encoded in order on a thread of its own, the streams at the same time."""
    results: dict[str, list] = {name: [] for name in chunks}

    def run(name):
        for chunk in chunks[name]:
            results[name].append(worker.encode(chunk))
    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in chunks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert all(not t.is_alive() for t in threads)
    return results


def test_streams_encoded_together_equal_each_stream_one_chunk_at_a_time(loaded, target):
    tol = target.tol(float32=(1e-5, 1e-5), bfloat16=(0.05, 0.02))
    chunks = streams()
    alone = EncoderWorker(spec(1), model=loaded)
    expected = {name: [alone.encode(c).compressed for c in cs] for name, cs in chunks.items()}
    batched = EncoderWorker(spec(4), model=loaded)
    got = encode_from_threads(batched, chunks)
    for name in chunks:
        assert [r.index for r in got[name]] == [0, 1, 2]
        for r, e in zip(got[name], expected[name], strict=True):
            assert torch.equal(r.compressed.positions, e.positions)
            torch.testing.assert_close(r.compressed.tokens, e.tokens, **tol)
    stats = batched.stats()
    assert stats.items == 9 and stats.largest <= 3
    assert stats.multi >= 1  # the three streams waited (up to 1 s) for one another: they shared forwards
    assert alone.stats().largest == 1


def test_each_result_names_the_size_of_the_forward_that_encoded_it(loaded):
    """`CompressedChunkReply.batch` (which becomes `ChunkStats.encode_batch`) agrees with the batcher's own
    count of batch sizes: a batch of k chunks gives k results that say k."""
    batched = EncoderWorker(spec(4), model=loaded)
    got = encode_from_threads(batched, streams())
    said: dict[int, int] = {}
    for r in (r for rs in got.values() for r in rs):
        said[r.batch] = said.get(r.batch, 0) + 1
    assert said == {k: k * n for k, n in batched.stats().sizes.items()}
    assert max(said) > 1  # some chunks did share a forward
    alone = EncoderWorker(spec(1), model=loaded)
    assert {alone.encode(c).batch for c in streams(2)["a"]} == {1}


def test_a_chunk_sent_again_while_batching_gets_its_first_result(loaded):
    c0, c1, c2 = streams()["a"]
    worker = EncoderWorker(spec(4, max_wait_ms=5), model=loaded)
    worker.encode(c0)
    both: list = []
    threads = [threading.Thread(target=lambda: both.append(worker.encode(c1)), daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN)
    assert len(both) == 2 and both[0] is both[1]  # encoded once: the second call found the stored result
    after = worker.encode(c2).compressed
    reference = EncoderWorker(spec(1), model=loaded)
    expected = [reference.encode(c).compressed for c in (c0, c1, c2)][-1]
    assert torch.equal(after.positions, expected.positions)  # the stream's state advanced once for c1


@pytest.mark.asyncio
@pytest.mark.slow
@pytest.mark.timeout(240)
async def test_three_streams_share_tower_forwards_and_every_chunk_arrives(local_ray, tiny_model_path, media_dir):
    from tests.pipeline.media import write_clip

    # three 8 s files read as fast as they decode, the streams paused until all three sources have
    # started (seconds apart here) and then resumed together, each with up to 8 chunks in flight, so that
    # their chunks reach the encoder at the same time; a batch waits up to 0.4 s for the other streams
    files = {name: write_clip(media_dir / f"batch-{name}.mp4", seconds=8.0) for name in SIZES}
    cfg = pipeline_config(tiny_model_path, [{"name": n, "source": {"type": "file", "path": str(p)}, "paused": True}
                                            for n, p in files.items()],
                          model={"encoder_batch": {"max_batch": 4, "max_wait_ms": 400}},
                          backpressure={"max_in_flight": 8})
    async with OmniStream.from_config(cfg) as p:
        for name in files:
            await p.resume_stream(name)
        deadline = time.monotonic() + 180
        while any(p.snapshot()["streams"][n]["state"] != "ended" for n in files):
            assert time.monotonic() < deadline, p.snapshot()
            await asyncio.sleep(0.2)
        snap = p.snapshot()["streams"]
        stats = await p.encoder.stats.remote()
        sample = p.metrics.registry.get_sample_value
        observed = [sample("omnisift_batch_chunks_" + s, {"kind": "encoder"}) for s in ("count", "sum")]
    assert {n: (snap[n]["chunks"], snap[n]["dropped"], snap[n]["lost"]) for n in files} == {
        n: (4, 0, 0) for n in files}  # an 8 s file: four chunks each, all in the context
    assert stats.items == 12 and stats.largest <= 3
    assert stats.multi >= 1, stats  # chunks of different streams went through one tower forward
    # every chunk's stats said the size of its forward: k chunks saying k for each batch of k
    assert observed == [12, sum(k * k * n for k, n in stats.sizes.items())]
