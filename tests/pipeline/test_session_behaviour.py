"""Session behaviours a live user meets: gaps in a modality, early questions, concurrency, reset, bf16."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import numpy as np
import pytest
import torch

from pipeline.session import OmniSession
from streams.chunk import AVChunk, ChunkFlags
from tests.pipeline.conftest import moving_square_chunks

QUESTION, ANSWER = "What colour is the moving shape?", "red"


@pytest.fixture(scope="module")
def session(tiny_model_path, target):
    return OmniSession.from_pretrained(str(tiny_model_path), **target.load())


def test_a_question_before_the_first_chunk_is_answered_from_the_prompt_alone(session):
    session.reset()
    assert isinstance(session.ask(QUESTION, max_new_tokens=3), str)
    assert np.isfinite(session.score(QUESTION, ANSWER))
    assert len(session.context) == session.context.prefix_ids.numel()


def test_a_chunk_without_audio_gets_silence_and_keeps_the_layout(session):
    session.reset()
    first, second = moving_square_chunks(2)
    session.append(first)
    gap = AVChunk("test", 1, 2.0, second.frames, None, ChunkFlags(audio_filled=True))
    out = session.append(gap)
    assert out.audio_before == 50  # 2 s of silence still occupies its 50 audio positions
    assert session.context.segment_end == session.layout.av_start + 100  # text resumes after 4 s of audio


def test_a_chunk_without_frames_holds_the_last_frame(session):
    session.reset()
    first, second = moving_square_chunks(2)
    session.append(first)
    out = session.append(AVChunk("test", 1, 2.0, None, second.audio, ChunkFlags(frames_repeated=True)))
    assert out.video_before == first.frames.shape[0] // 2 * 16  # two steps of a 4 x 4 grid


def test_questions_while_chunks_arrive_from_another_thread(session, target):
    session.reset()
    chunks = moving_square_chunks(4)
    session.append(chunks[0])
    errors: list[BaseException] = []

    def feed():
        try:
            for chunk in chunks[1:]:
                session.append(chunk)
        except BaseException as err:  # noqa: BLE001 - surfaced by the assertion below
            errors.append(err)

    feeder = threading.Thread(target=feed)
    feeder.start()
    scores = [session.score(QUESTION, ANSWER) for _ in range(5)]
    feeder.join(timeout=120)
    assert not feeder.is_alive() and not errors
    assert all(np.isfinite(scores))
    after = session.score(QUESTION, ANSWER)
    reference = OmniSession.from_pretrained(str(session.model.thinker.name_or_path), **target.load())
    for chunk in chunks:
        reference.append(chunk)
    assert after == pytest.approx(reference.score(QUESTION, ANSWER), abs=target.atol(float32=1e-5, bfloat16=0.1))


def test_reset_starts_an_empty_context(session):
    session.append(moving_square_chunks(1)[0])
    session.reset()
    assert session.context is None
    session.append(moving_square_chunks(1)[0])
    assert session.context_positions()[0, -1] < session.layout.av_start + 50


def test_bf16_runs_and_stays_close_to_fp32(tiny_model_path, target):
    chunks = moving_square_chunks(2)
    scores = {}
    for dtype in (torch.float32, torch.bfloat16):
        s = OmniSession.from_pretrained(str(tiny_model_path), device=target.device, dtype=dtype)
        for chunk in chunks:
            s.append(chunk)
        scores[dtype] = s.score(QUESTION, ANSWER)
    assert scores[torch.bfloat16] == pytest.approx(scores[torch.float32], abs=0.5)


def test_append_compressed_returns_the_seconds_its_prefill_took(session):
    session.reset()
    first, second = moving_square_chunks(2)
    session.append(first)  # the prompt prefix is prefilled with the first chunk: not part of the timing
    compressed = session.chunk_encoder.process(second)
    started = time.perf_counter()
    prefill = session.append_compressed(compressed)
    elapsed = time.perf_counter() - started
    assert isinstance(prefill, float) and 0.0 < prefill <= elapsed


def test_an_unknown_compressor_is_refused_before_loading(tiny_model_path):
    with pytest.raises(ValueError, match="unknown compressor 'zip'.*omnisift"):
        OmniSession.from_pretrained(str(tiny_model_path), compressor="zip")


def test_a_bad_compressor_option_value_is_refused_when_the_session_is_created(session):
    # without the check at creation it would surface at the first chunk, when the compressor is built
    with pytest.raises(ValueError, match=r"^audio must be one of uniform, random, all, got 'loud'$"):
        OmniSession.from_model(session.model, "stvp", audio="loud")


def test_a_selector_compressor_on_a_model_without_selector_names_the_missing_keys(tmp_path):
    from omnisift.checkpoint import CheckpointError
    from omnisift.tiny import make_tiny_omni

    base = make_tiny_omni(tmp_path / "base", with_selector=False)
    with pytest.raises(CheckpointError, match=r"no OmniSIFT selector.*missing compressor\."):
        OmniSession.from_pretrained(str(base), compressor="omnisift")
    assert OmniSession.from_pretrained(str(base), compressor="random") is not None


def test_prefill_computes_logits_only_where_they_are_read(tiny_model_path, target):
    """A prefilled chunk needs no logits; a question needs those of its last position (generation) or
    of its answer tokens (scoring). Counted as rows through the LM head."""
    session = OmniSession.from_pretrained(str(tiny_model_path), **target.load())
    rows: list[int] = []
    session.model.thinker.lm_head.register_forward_hook(lambda m, args, out: rows.append(args[0].shape[-2]))
    for chunk in moving_square_chunks(3):
        session.append(chunk)
    assert rows == []
    answer = session.layout_tokens("red cup")
    session.score("What is it?", "red cup")
    assert rows == [len(answer) + 1]
    rows.clear()
    session.ask("What is it?", max_new_tokens=4, do_sample=True, seed=0)  # sampling: no early stop on a tie
    assert rows and all(r == 1 for r in rows)


def test_a_stream_without_audio_keeps_the_retention_target_in_video(tiny_model_path, target):
    session = OmniSession.from_pretrained(str(tiny_model_path), **target.load(), retention=0.25)
    chunks = [replace(c, audio=None) for c in moving_square_chunks(2)]
    outs = [session.append(c) for c in chunks]
    for out in outs:
        assert out.audio_before == 0 and out.video_before == 32  # two frames of 16 tokens
        assert out.video_after == 8  # a quarter of each frame: 4 of 16


def test_a_question_over_max_question_tokens_is_refused_and_the_context_kept(session):
    short = OmniSession.with_compression(session.model, session.compression, max_question_tokens=8)
    short.append(moving_square_chunks(1)[0])
    words = ["red"] * 40
    n_tokens = [len(short.layout_tokens(" ".join(words[:k]))) for k in range(1, 41)]
    fits = " ".join(words[:n_tokens.index(8) + 1])  # exactly 8 tokens
    over = " ".join(words[:n_tokens.index(8) + 2])  # one word more
    before = len(short.context)
    assert isinstance(short.ask(fits, max_new_tokens=1), str)
    with pytest.raises(ValueError, match=r"^question of \d+ tokens is too long: at most 8 "):
        short.ask(over, max_new_tokens=1)
    with pytest.raises(ValueError, match=r"^question of 65 characters is too long: at most 64 "):
        short.score("x" * 65, ANSWER)  # refused on characters, before tokenizing
    assert len(short.context) == before
