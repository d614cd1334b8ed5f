"""The model actor's scheduling: a timed-out question stops in the model (issue 17, item 7), a long
answer on one stream lets another stream's chunks in, a streamed answer whose reader leaves is cancelled.
The worker is driven from threads without Ray; the last test goes through a running pipeline's REP path."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import replace

import pytest
import pytest_asyncio

from pipeline.ray import OmniStream
from pipeline.ray.model_worker import ModelWorker
from pipeline.ray.models import load_omni
from pipeline.serve.requests import handle_request
from tests.ray_pipeline.conftest import next_matching, pipeline_config, synthetic
from tests.ray_pipeline.test_workers import _first_chunks

QUESTION = "What is on screen?"


@pytest.fixture(scope="module")
def loaded(tiny_model_path, target):
    return load_omni({"path": str(tiny_model_path), **target.load()})


@pytest.fixture
def worker(av_file, loaded, monkeypatch):
    """A model worker (no Ray) whose answers never meet a stop token, streams 'a' and 'b' with one chunk."""
    from pipeline.ray.encoder_worker import EncoderWorker

    monkeypatch.setattr("pipeline.session.session.stop_ids", lambda *_: set())
    spec = {"path": "unused"}
    enc, model = EncoderWorker(spec, model=loaded), ModelWorker(spec, model=loaded)
    encoded = {}
    for name in ("a", "b"):
        encoded[name] = [(replace(meta, stream=name), enc.encode(chunk))
                         for meta, chunk in _first_chunks(av_file, 3)]
        model.append(*encoded[name][0])
    yield model, encoded
    model.close()


def test_a_timed_out_question_stops_in_the_model_and_the_next_starts_right_after(worker):
    model, _ = worker
    with pytest.raises(TimeoutError):
        model.ask("a", QUESTION, max_new_tokens=4096, timeout=1.0)
    stats = model.scheduler_stats()  # taken the moment the asker got its TimeoutError
    assert stats["timed_out"] == 1 and stats["pending"] == 0  # the model has already let go of it
    assert 0 < stats["tokens"] < 4096
    model.ask("a", QUESTION, max_new_tokens=3)
    assert model.scheduler_stats()["tokens"] == stats["tokens"] + 3


def test_an_ask_cancelled_by_its_ticket_stops_in_the_model(worker):
    """What the driver does when its asker is cancelled or gives up: Ray cannot cancel a running call of a
    threaded actor, so the answer is stopped by the ticket the call carries (before the fix, measured
    through a pipeline: all 4096 tokens generated after the asker had gone)."""
    model, _ = worker
    replies = []
    asking = threading.Thread(target=lambda: replies.append(model.ask("a", QUESTION, max_new_tokens=4096,
                                                                      ticket="t1")))
    asking.start()
    for _ in range(2400):  # until the model is generating this answer (bounded)
        if model.scheduler_stats()["decode_forwards"] > 0:
            break
        threading.Event().wait(0.05)
    model.cancel_ask("t1")
    asking.join(60)
    stats = model.scheduler_stats()
    assert not asking.is_alive() and stats["cancelled"] == 1 and 0 < stats["tokens"] < 4096
    model.cancel_ask("t2")  # before its ask arrives: the ask stops at once
    assert model.ask("a", QUESTION, max_new_tokens=4096, ticket="t2").text == ""
    assert model.scheduler_stats()["cancelled"] == 2


def test_bs_chunks_enter_while_a_long_answer_runs_on_a_and_a_reader_leaving_cancels_it(worker):
    model, encoded = worker
    started, release, pieces = threading.Event(), threading.Event(), []

    def read():
        from pipeline.messages import GenerationSettings

        stream = model.ask_stream("a", QUESTION, GenerationSettings(max_new_tokens=4096))
        for piece in stream:
            pieces.append(piece)
            started.set()
            if release.is_set():
                break
        stream.close()  # the reader leaves: the generator's cleanup cancels the answer

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert started.wait(120)
        for meta, enc in encoded["b"][1:]:
            stats = model.append(meta, enc)
            assert stats.chunks_in_context == meta.index + 1
        assert model.scheduler_stats()["answers"] == 0  # A's answer is still being generated
    finally:
        release.set()
        reader.join(timeout=120)
    assert not reader.is_alive()
    model.ask("a", QUESTION, max_new_tokens=1)  # queued behind the cancelled answer: it has ended
    stats = model.scheduler_stats()
    assert stats["cancelled"] == 1 and stats["tokens"] < 4096 + 1


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(local_ray, tiny_model_path):
    cfg = pipeline_config(tiny_model_path, [{"name": "cam", "source": synthetic()}])
    async with OmniStream.from_config(cfg) as stream:
        await next_matching(stream.stats("cam"), lambda s: True, 60)
        yield stream


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_rep_question_with_timeout_1_and_4096_tokens_times_out_and_frees_the_model(live):
    with pytest.raises(TimeoutError):
        await handle_request(live, json.dumps({"question": QUESTION, "timeout": 1, "max_new_tokens": 4096}).encode())
    answer = await handle_request(live, json.dumps({"question": QUESTION, "max_new_tokens": 2, "timeout": 60}).encode())
    assert answer["ok"]
    stats = await live.model.scheduler_stats.remote()
    assert stats["timed_out"] == 1 and stats["answers"] == 2
    assert stats["tokens"] < 4096  # the timed-out answer stopped well before its 4096 tokens


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.slow
@pytest.mark.timeout(150)
async def test_a_streamed_answer_whose_reader_leaves_through_ray_stops_in_the_model(live):
    """The driver cancels the streaming call when its reader leaves; Ray closes the threaded actor's generator
    (without the cancel it went on: 41 pieces in 2 s against 3), whose cleanup cancels the answer."""
    before = await live.model.scheduler_stats.remote()
    pieces = live.ask_stream(QUESTION, "cam", max_new_tokens=4096)
    assert isinstance(await anext(pieces), str)
    await pieces.aclose()
    for _ in range(600):
        now = await live.model.scheduler_stats.remote()
        if now["cancelled"] > before["cancelled"]:
            break
        await asyncio.sleep(0.05)
    assert now["cancelled"] == before["cancelled"] + 1
    assert now["tokens"] - before["tokens"] < 4096



@pytest.mark.parametrize("given", [{"batch_prefill": False, "max_batch": 3}, {"batch_prefill": True, "max_batch": 5}])
def test_the_configs_model_batch_reaches_the_model_actors_scheduler(loaded, given):
    model = ModelWorker({"path": "unused", "model_batch": given}, model=loaded)
    try:
        assert (model.scheduler.batch_prefill, model.scheduler.max_batch) == (given["batch_prefill"],
                                                                              given["max_batch"])
    finally:
        model.close()
