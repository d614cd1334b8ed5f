"""The model actor's scheduler, driven one `step()` at a time without Ray or threads: a long answer on one
stream does not hold back another stream's chunks, answers equal what they are alone, a stream's own chunks
wait for its answer, and a deadline or a cancel frees the model at the next step."""

from __future__ import annotations

import threading

import pytest

from pipeline.messages import GenerationSettings
from pipeline.session import OmniSession
from pipeline.session.scheduler import ModelScheduler
from tests.pipeline.conftest import moving_square_chunks

QUESTION = "What colour is the moving shape?"
LONG = GenerationSettings(max_new_tokens=64)


@pytest.fixture(scope="module")
def model(tiny_model_path, target):
    return OmniSession.from_pretrained(str(tiny_model_path), **target.load()).model


@pytest.fixture(autouse=True)
def no_stop_tokens(monkeypatch):
    """Answers run to max_new_tokens (the random tiny model may pick an end token at any point)."""
    monkeypatch.setattr("pipeline.session.session.stop_ids", lambda *_: set())


def stream(model, seed: int, n: int = 2) -> tuple[OmniSession, list]:
    """A session with `n` chunks in context, and its next two chunks compressed (not yet appended)."""
    session, encoder = OmniSession.from_model(model, retention=0.35), OmniSession.from_model(model, retention=0.35)
    chunks = [encoder.append(c) for c in moving_square_chunks(n + 2, seed=seed)]
    for c in chunks[:n]:
        session.append_compressed(c)
    return session, chunks[n:]


def run_until(scheduler: ModelScheduler, done, limit: int = 500) -> int:
    for steps in range(1, limit + 1):
        scheduler.step()
        if done():
            return steps
    raise AssertionError("not done within the step limit")


@pytest.mark.parametrize("batch", [True, False])
def test_a_long_answer_on_a_lets_bs_chunks_in_after_one_decode_step(model, batch):
    a, _ = stream(model, 1)
    b, b_chunks = stream(model, 2)
    alone = a.ask(QUESTION, settings=LONG)
    scheduler = ModelScheduler(batch_prefill=batch)
    answer = scheduler.ask("a", a, QUESTION, LONG)
    scheduler.step()  # the question's prefill
    appends = [scheduler.append("b", b, c) for c in b_chunks]
    run_until(scheduler, lambda: all(j.future.done() for j in appends))
    assert not answer.future.done()
    assert answer.decoder.steps <= len(appends)  # at most one decode step per chunk of B
    run_until(scheduler, answer.future.done)
    assert answer.future.result() == alone
    assert len(b.context.chunks) == 4


def test_a_streams_chunk_sent_after_its_question_waits_for_the_answer_and_is_not_lost(model):
    a, a_chunks = stream(model, 3)
    alone = a.ask(QUESTION, settings=LONG)  # the context before the new chunk
    scheduler = ModelScheduler()
    answer = scheduler.ask("a", a, QUESTION, LONG)
    chunk = scheduler.append("a", a, a_chunks[0])
    run_until(scheduler, answer.future.done)
    assert not chunk.future.done() and answer.future.result() == alone
    scheduler.step()
    assert chunk.future.done() and len(a.context.chunks) == 3


def test_answers_on_two_streams_decoded_in_one_batch_equal_each_alone(model):
    (a, _), (b, _) = stream(model, 4), stream(model, 5, n=1)
    expected = [a.ask(QUESTION, settings=LONG), b.ask(QUESTION, max_new_tokens=20)]
    scheduler = ModelScheduler(batch_prefill=True)
    jobs = [scheduler.ask("a", a, QUESTION, LONG), scheduler.ask("b", b, QUESTION, GenerationSettings(20))]
    run_until(scheduler, lambda: all(j.future.done() for j in jobs))
    assert [j.future.result() for j in jobs] == expected
    assert scheduler.counters.decode_forwards == 63  # 19 steps with both in one forward, then 44 of A alone


def test_a_timed_out_answer_stops_at_the_next_step_and_the_next_question_starts_then(model):
    a, _ = stream(model, 6)
    scheduler = ModelScheduler()
    slow = scheduler.ask("a", a, QUESTION, GenerationSettings(max_new_tokens=4096, timeout=600.0))
    after = scheduler.ask("a", a, QUESTION, GenerationSettings(max_new_tokens=2))
    for _ in range(3):
        scheduler.step()
    slow.decoder.deadline = 0.0  # the deadline passes (monotonic time is past 0)
    scheduler.step()
    with pytest.raises(TimeoutError):
        slow.future.result(timeout=0)
    assert slow.decoder.steps == 2 and slow.decoder.forwards == 2  # no token after the deadline
    scheduler.step()
    assert after.decoder is not None  # the next question was prefilled at the very next step
    assert scheduler.counters.timed_out == 1


def test_a_question_whose_deadline_passed_in_the_queue_never_starts(model):
    a, a_chunks = stream(model, 7)
    scheduler = ModelScheduler()
    scheduler.append("a", a, a_chunks[0])
    late = scheduler.ask("a", a, QUESTION, GenerationSettings(timeout=600.0))
    late.deadline = 0.0
    scheduler.step()
    scheduler.step()
    with pytest.raises(TimeoutError):
        late.future.result(timeout=0)
    assert late.decoder is None and scheduler.pending() == 0


def test_a_cancelled_answer_ends_at_the_next_step_with_its_text_so_far(model):
    a, _ = stream(model, 8)
    before = len(a.context)
    scheduler = ModelScheduler()
    job = scheduler.ask("a", a, QUESTION, LONG)
    for _ in range(4):
        scheduler.step()
    job.cancel()
    scheduler.step()
    assert job.future.done() and job.decoder.steps == 3
    assert job.future.result() == "".join(job.text)
    assert len(a.context) == before and scheduler.counters.cancelled == 1


@pytest.mark.parametrize("model_ends", [False, True])
def test_an_answer_says_whether_the_model_or_max_new_tokens_ended_it(model, monkeypatch, model_ends):
    if model_ends:  # every token ends an answer: the model ends it at its first token
        vocab = model.thinker.get_input_embeddings().num_embeddings
        monkeypatch.setattr("pipeline.session.session.stop_ids", lambda *_: set(range(vocab)))
    a, _ = stream(model, 9)
    scheduler = ModelScheduler()
    job = scheduler.ask("a", a, QUESTION, GenerationSettings(max_new_tokens=3))
    run_until(scheduler, job.future.done)
    assert (job.end, job.decoder.steps) == (("stop", 1) if model_ends else ("length", 3))


def test_a_failing_call_fails_its_own_job_and_the_others_go_on(model):
    (a, _), (b, b_chunks) = stream(model, 9), stream(model, 10)
    scheduler = ModelScheduler()
    bad = scheduler.call("a", a, lambda: 1 / 0)
    good = scheduler.append("b", b, b_chunks[0])
    scheduler.step()
    with pytest.raises(ZeroDivisionError):
        bad.future.result(timeout=0)
    assert good.future.result(timeout=0)[2] == 3


def test_run_serves_jobs_submitted_from_other_threads_and_streams_pieces(model):
    a, _ = stream(model, 11)
    alone = a.ask(QUESTION, max_new_tokens=12)
    scheduler, stop = ModelScheduler(), threading.Event()
    loop = threading.Thread(target=scheduler.run, args=(stop,))
    loop.start()
    try:
        job = scheduler.ask("a", a, QUESTION, GenerationSettings(max_new_tokens=12))
        assert "".join(job.pieces(timeout=60)) == alone == job.future.result(timeout=60)
    finally:
        stop.set()
        loop.join(timeout=60)
    assert not loop.is_alive()


@pytest.mark.parametrize("batch", [True, False])
def test_an_append_reports_how_many_chunks_shared_its_prefill_forward(model, batch):
    a, a_chunks = stream(model, 1)
    b, b_chunks = stream(model, 2)
    c, c_chunks = stream(model, 3)
    scheduler = ModelScheduler(batch_prefill=batch, max_batch=2)
    jobs = [scheduler.append(name, s, ch[0]) for name, s, ch in (("a", a, a_chunks), ("b", b, b_chunks),
                                                                  ("c", c, c_chunks))]
    scheduler.step()  # at most max_batch=2 appends in one step: a and b
    scheduler.step()  # then c alone
    assert [j.future.result()[3] for j in jobs] == ([2, 2, 1] if batch else [1, 1, 1])
    assert [j.future.result()[2] for j in jobs] == [3, 3, 3]  # each context holds its third chunk
