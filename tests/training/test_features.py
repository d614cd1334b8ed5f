"""Feature cache: the towers' per-chunk outputs equal the streaming path's; a build resumes after an
interruption; undecodable media is skipped and counted."""

from __future__ import annotations

import pytest
import torch

from operators import Encoder, Preprocessor
from pipeline.offline.features import FeatureCache, encode_file
from streams import read_chunks


@pytest.fixture(scope="module")
def towers(tiny_model):
    return Preprocessor(tiny_model.processor.video_processor, "cpu"), Encoder(tiny_model.thinker)


def test_cached_features_are_the_streaming_paths_tower_outputs(towers, clips):
    pre, enc = towers
    _, paths = clips
    features = encode_file(paths[0], pre, enc)
    chunks = list(read_chunks({"type": "file", "path": str(paths[0]), "realtime": False}))
    assert features.chunk_steps == [2] * len(chunks) and features.chunk_audio == [50] * len(chunks)
    for i, chunk in enumerate(chunks):  # independent: each chunk through the operators directly
        e = enc.process(pre.process(i, chunk.frames, chunk.audio))
        torch.testing.assert_close(features.video[2 * i:2 * i + 2], e.video)
        torch.testing.assert_close(features.audio[50 * i:50 * i + 50], e.audio)


class Interrupt(Exception):
    pass


def test_cache_resumes_after_an_interruption(tmp_path, towers, clips):
    pre, enc = towers
    folder, paths = clips
    media = [*paths, folder / "broken.mp4"]
    calls = []

    def encode(path, stop_after=None):
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupt
        calls.append(path.name)
        return encode_file(path, pre, enc)

    cache = FeatureCache(tmp_path / "cache", shard_size=2)
    with pytest.raises(Interrupt):
        cache.build(media, lambda p: encode(p, stop_after=3))
    assert calls == ["clip0.mp4", "clip1.mp4", "clip2.mp4"]
    # The first shard (2 files) was written; the third file was pending and is lost.
    resumed = FeatureCache(tmp_path / "cache", shard_size=2)
    assert len(resumed) == 2 and paths[0] in resumed and paths[2] not in resumed
    calls.clear()
    summary = resumed.build(media, encode)
    assert calls == ["clip2.mp4", "clip3.mp4", "broken.mp4"]
    assert (summary.encoded, summary.reused, len(summary.failed)) == (2, 2, 1)
    assert "broken.mp4" in next(iter(summary.failed))
    # A third run encodes nothing; the broken file stays counted as failed.
    calls.clear()
    again = FeatureCache(tmp_path / "cache").build(media, encode)
    assert calls == [] and (again.reused, len(again.failed)) == (4, 1)
    # Contents equal an uninterrupted build.
    fresh = FeatureCache(tmp_path / "fresh", shard_size=10)
    fresh.build(paths, lambda p: encode_file(p, pre, enc))
    final = FeatureCache(tmp_path / "cache")
    for p in paths:
        a, b = final.get(p), fresh.get(p)
        assert torch.equal(a.video, b.video) and torch.equal(a.audio, b.audio)
        assert (a.chunk_steps, a.chunk_audio, a.grid_hw) == (b.chunk_steps, b.chunk_audio, b.grid_hw)
    assert not list((tmp_path / "cache").glob("*.tmp"))
