"""The plain classes inside the actors, driven directly (no Ray)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from pipeline.config import load_pipeline_config
from pipeline.messages import ChunkMeta
from pipeline.ray.encoder_worker import EncoderWorker
from pipeline.ray.model_worker import ModelWorker
from pipeline.ray.models import load_omni
from pipeline.ray.source_worker import SourceWorker


@pytest.fixture(scope="module")
def loaded(tiny_model_path, target):
    return load_omni({"path": str(tiny_model_path), **target.load()})


def _first_chunks(path, n: int) -> list[tuple[ChunkMeta, object]]:
    """The first `n` (meta, chunk) pairs a source worker reads from the file at `path`."""
    src = SourceWorker("cam", {"type": "file", "path": str(path)})
    try:
        return [src.next_chunk(5.0) for _ in range(n)]
    finally:
        src.close()


def test_source_worker_steps_meta_then_chunk_and_ends(av_file):
    w = SourceWorker("cam", {"type": "file", "path": str(av_file)})
    try:
        items = [w.next_chunk(5.0) for _ in range(5)]
    finally:
        w.close()
    kinds = [m.kind for m, _ in items]
    assert kinds == ["chunk"] * 4 + ["end"]
    for i, (meta, chunk) in enumerate(items[:4]):
        assert (meta.stream, meta.index, chunk.index, chunk.stream) == ("cam", i, i, "cam")
        assert meta.start == 2.0 * i and meta.duration == 2.0 and meta.capture_time > 0
    assert items[4][1] is None


def test_source_worker_close_returns_its_final_counters(av_file):
    w = SourceWorker("cam", {"type": "file", "path": str(av_file)})
    taken = [w.next_chunk(5.0) for _ in range(2)]  # two of the file's four 2-second chunks
    final = w.close()
    assert [m.kind for m, _ in taken] == ["chunk", "chunk"]
    assert final["state"] == "closed" and final["chunks_delivered"] == 2 and final["chunks_emitted"] >= 2


def test_source_worker_policy_overrides_apply_to_live_sources_only(av_file):
    live = SourceWorker("s", {"type": "synthetic", "duration": None, "realtime": True}, queue_size=2,
                        drop_policy="drop_oldest")
    fast = SourceWorker("f", {"type": "file", "path": str(av_file)}, queue_size=3, drop_policy="drop_oldest")
    try:
        assert live.source._policy == "drop_oldest" and live.source._queue.maxsize == 2
        assert fast.source._policy == "block" and fast.source._queue.maxsize == 3
    finally:
        live.close()
        fast.close()


def test_encoder_then_model_worker_answer_with_lag_and_media_time(av_file, loaded, monkeypatch):
    spec = {"path": "unused", "max_new_tokens": 3, "rho_video": 0.5, "rho_audio": 0.3}
    enc, model = EncoderWorker(spec, model=loaded), ModelWorker(spec, model=loaded)
    src = SourceWorker("cam", {"type": "file", "path": str(av_file)})
    try:
        stats = []
        for _ in range(3):
            meta, chunk = src.next_chunk(5.0)
            encoded = enc.encode(chunk)
            assert encoded.compressed.tokens.device.type == "cpu"
            stats.append(model.append(meta, encoded))
    finally:
        src.close()
    assert [s.index for s in stats] == [0, 1, 2]
    assert stats[-1].chunks_in_context == 3 and stats[-1].cache_tokens > stats[0].cache_tokens
    assert all(s.audio_after < s.audio_before and s.video_after < s.video_before for s in stats)
    answer = model.ask("cam", "What is on screen?")
    assert answer.media_time == 6.0 and answer.lag >= 0 and answer.chunks_in_context == 3
    # why it ended: max_new_tokens cut it (no token ends an answer) or the model ended it (every token does)
    monkeypatch.setattr("pipeline.session.session.stop_ids", lambda *_: set())
    cut = model.ask("cam", "What is on screen?", max_new_tokens=2)
    monkeypatch.setattr("pipeline.session.session.stop_ids", lambda *_: set(range(len(loaded.processor.tokenizer))))
    ended = model.ask("cam", "What is on screen?", max_new_tokens=2)
    monkeypatch.undo()
    assert (cut.end, ended.end, ended.text) == ("length", "stop", "")
    p = model.yes_probability("cam", "Is it bright?")
    assert 0.0 < p < 1.0 and not math.isnan(p)
    # a fresh worker (what a restarted actor is) starts the stream's context afresh
    fresh = ModelWorker(spec, model=loaded)
    assert fresh.ask("cam", "x").chunks_in_context == 0
    model.remove("cam")
    assert "cam" not in model.cache_tokens()


def test_model_worker_skips_a_chunk_its_context_already_holds_until_the_context_is_reset(av_file, loaded):
    # the driver sends a chunk again when a call failed without Ray knowing whether it ran; on a model that
    # was only unreachable it had, and appending it again would put it in the context twice
    spec = {"path": "unused"}
    enc, model = EncoderWorker(spec, model=loaded), ModelWorker(spec, model=loaded)
    (m0, c0), (m1, c1) = _first_chunks(av_file, 2)
    e0, e1 = enc.encode(c0), enc.encode(c1)
    first, second = model.append(m0, e0), model.append(m1, e1)
    session = model.contexts["cam"].session
    length, positions = len(session.context), session.context_positions().clone()

    again, older = model.append(m1, e1), model.append(m0, e0)
    assert not first.duplicate and not second.duplicate and again.duplicate and older.duplicate
    assert len(session.context) == length and torch.equal(session.context_positions(), positions)
    assert (again.index, again.chunks_in_context, again.cache_tokens, again.prefill) == (1, 2, length, 0.0)
    assert model.ask("cam", "x", max_new_tokens=1).media_time == 4.0  # the newest chunk is still chunk 1

    # a restarted source numbers its chunks from 0 again: from another process, chunk 0 is a new chunk
    restarted = model.append(replace(m0, pid=m0.pid + 1), e0)
    assert not restarted.duplicate and restarted.chunks_in_context == 3 and len(session.context) > length

    # a reset session, or a context created again, takes chunk 0 again
    session.reset()
    assert not model.append(m0, e0).duplicate and len(session.context.chunks) == 1
    model.remove("cam")
    fresh = model.append(m0, e0)
    assert not fresh.duplicate and fresh.chunks_in_context == 1
    assert model.contexts["cam"].session is not session


def test_model_worker_reports_the_prefill_time_its_session_measured_for_the_chunk(av_file, loaded):
    spec = {"path": "unused"}
    enc, model = EncoderWorker(spec, model=loaded), ModelWorker(spec, model=loaded)
    (meta, chunk), = _first_chunks(av_file, 1)
    session = model._context("cam").session
    measured: list[float] = []
    append = session.append_compressed

    def append_and_record(compressed):
        measured.append(append(compressed))
        return measured[-1]

    session.append_compressed = append_and_record
    stats = model.append(meta, enc.encode(chunk))
    assert len(measured) == 1 and stats.prefill == measured[0] > 0.0


def test_model_worker_pads_appends_to_a_minimum_time(av_file, loaded):
    import time

    spec = {"path": "unused", "min_append_seconds": 0.3}
    enc, model = EncoderWorker(spec, model=loaded), ModelWorker(spec, model=loaded)
    (meta, chunk), = _first_chunks(av_file, 1)
    encoded = enc.encode(chunk)
    t = time.perf_counter()
    model.append(meta, encoded)
    assert time.perf_counter() - t >= 0.3
    assert isinstance(meta, ChunkMeta)


def test_encoder_worker_loads_only_the_towers_and_encodes_like_the_full_model(tiny_model_path, loaded, target):
    from tests.pipeline.conftest import moving_square_chunks

    spec = {"path": str(tiny_model_path), "compressor": "omnisift", **target.load()}
    towers = EncoderWorker(spec)  # loads by itself: towers and selector only
    full = EncoderWorker(spec, model=loaded)
    thinker = towers.model.thinker
    assert thinker.model.language_model is None and thinker.lm_head is None
    lm_params = sum(p.numel() for p in loaded.thinker.model.language_model.parameters())
    whole = sum(p.numel() for p in loaded.thinker.parameters())
    assert sum(p.numel() for p in thinker.parameters()) + lm_params <= whole
    for chunk in moving_square_chunks(2):
        a, b = towers.encode(chunk).compressed, full.encode(chunk).compressed
        assert (a.positions == b.positions).all()
        torch.testing.assert_close(a.tokens, b.tokens, **target.tol(float32=1e-5, bfloat16=0.05))


def test_a_configs_compressor_options_reach_the_streams_compressor(loaded):
    from tests.pipeline.conftest import moving_square_chunks

    model = {"compressor": "stvp", "compressor_options": {"carry_previous_frame": True, "audio": "all"}}
    spec = load_pipeline_config({"model": model}).model.model_dump()
    enc = EncoderWorker(spec, model=loaded)
    out = enc.encode(moving_square_chunks(1)[0]).compressed
    compressor = enc.encoders["test"].compressor
    assert compressor.video.carry_previous_frame is True and compressor.audio_policy == "all"
    assert out.audio_after == out.audio_before == 50  # audio="all" keeps every audio token


@pytest.mark.parametrize("worker", [EncoderWorker, ModelWorker])
def test_a_bad_compressor_option_fails_when_the_worker_starts_before_the_model_loads(worker):
    spec = {"path": "/nonexistent/model", "compressor": "omnisift",
            "compressor_options": {"carry_previous_frames": True}}
    with pytest.raises(ValueError) as info:
        worker(spec)
    assert str(info.value) == ("compressor 'omnisift' has no option carry_previous_frames; "
                               "its options: carry_previous_frame, saliency_dtype")


@pytest.mark.parametrize("compressor,options", [("stvp", {"carry_previous_frame": True}), ("random", {})])
def test_a_chunk_encoded_again_gets_its_first_result_and_leaves_the_stream_as_if_it_came_once(
        loaded, compressor, options):
    # the driver sends a chunk again when a call failed without Ray knowing whether it ran; on an encoder that
    # was only unreachable it had: encoding it again would score it spatially (stvp) or draw again (random)
    from tests.pipeline.conftest import moving_square_chunks

    c0, c1, c2 = moving_square_chunks(3)
    spec = {"path": "unused", "compressor": compressor, "compressor_options": options}
    once, twice = EncoderWorker(spec, model=loaded), EncoderWorker(spec, model=loaded)
    expected = [once.encode(c).compressed for c in (c0, c1, c2)]
    got = [twice.encode(c).compressed for c in (c0, c1, c1, c2)]
    for a, b in zip([expected[1], expected[1], expected[2]], got[1:], strict=True):
        assert torch.equal(a.positions, b.positions)
        torch.testing.assert_close(a.tokens, b.tokens, rtol=0, atol=0)


def test_the_encoder_keeps_results_of_a_streams_last_few_chunks_until_the_stream_is_removed(loaded):
    from tests.pipeline.conftest import moving_square_chunks

    enc = EncoderWorker({"path": "unused", "compressor": "full"}, model=loaded, remember=2)
    chunks = moving_square_chunks(4)
    first = [enc.encode(chunk) for chunk in chunks]
    assert enc.encode(chunks[3]) is first[3] and enc.encode(chunks[2]) is first[2]  # the last 2: stored
    assert enc.encode(chunks[1]) is not first[1]  # older: encoded again
    enc.remove("test")
    assert enc.encode(chunks[1]) is not first[1] and enc.encode(chunks[3]) is not first[3]


def test_the_model_worker_keeps_what_was_kept_of_the_newest_chunk(av_file, loaded):
    spec = {"path": "unused", "max_new_tokens": 3, "rho_video": 0.5, "rho_audio": 0.3}
    enc, model = EncoderWorker(spec, model=loaded), ModelWorker(spec, model=loaded)
    assert model.kept_layout("cam") is None
    stats = [model.append(meta, enc.encode(chunk)) for meta, chunk in _first_chunks(av_file, 2)]
    layout = model.kept_layout("cam")
    last = stats[-1]
    assert layout.stream == "cam" and layout.index == 1
    steps, rows, cols = layout.video.shape
    assert steps == 2 and 2 * rows * cols == last.video_before
    # each frame keeps n_p - floor(0.5 n_p) cells (STVP), the chunk's audio 50 - floor(0.3 * 50) tokens
    assert [int(f.sum()) for f in layout.video] == [rows * cols - math.floor(rows * cols * 0.5)] * 2
    assert int(layout.video.sum()) == last.video_after
    assert layout.audio.shape == (50,) and int(layout.audio.sum()) == 50 - math.floor(50 * 0.3) == last.audio_after


def test_the_model_worker_streams_an_answer_as_pieces_then_the_answer_they_make(av_file, loaded):
    from pipeline.messages import Answer, GenerationSettings

    spec = {"path": "unused", "max_new_tokens": 6}
    enc, model = EncoderWorker(spec, model=loaded), ModelWorker(spec, model=loaded)
    for meta, chunk in _first_chunks(av_file, 2):
        model.append(meta, enc.encode(chunk))
    items = list(model.ask_stream("cam", "What is on screen?", GenerationSettings(max_new_tokens=6)))
    answer = items[-1]
    assert isinstance(answer, Answer) and all(isinstance(p, str) for p in items[:-1])
    assert answer.text == "".join(items[:-1]) and answer.media_time == 4.0 and answer.chunks_in_context == 2
    assert answer.text == model.ask("cam", "What is on screen?", max_new_tokens=6).text  # greedy: the same
