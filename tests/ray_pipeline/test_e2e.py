"""End to end on local Ray with the tiny model: answers through the async API and ZeroMQ, standing
questions, two streams, add/pause/resume/remove while running, killed actors, bad requests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import time
import urllib.request

import pytest
import pytest_asyncio
import ray
import zmq
import zmq.asyncio

from pipeline.messages import Answer, ChunkStats, WatchEvent
from pipeline.ray import OmniStream, StreamNotFound
from streams.errors import SourceError
from tests.pipeline.media import write_clip
from tests.ray_pipeline.conftest import assert_actor_ends, next_matching, pipeline_config, synthetic

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(150)]


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(local_ray, tiny_model_path):
    """One live synthetic stream with a standing question, shared by the tests of this module."""
    cfg = pipeline_config(tiny_model_path, [{"name": "cam", "source": synthetic()}],
                          watch=[{"question": "Is the screen red?", "stream": "cam", "every": 0}])
    async with OmniStream.from_config(cfg) as stream:
        await next_matching(stream.stats("cam"), lambda s: True, 60)
        yield stream


async def _sub(endpoint: str) -> zmq.asyncio.Socket:
    sock = zmq.asyncio.Context.instance().socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    sock.connect(endpoint)  # the stream publishes all the time: waits for messages cover ZeroMQ's slow joiner
    return sock


async def _recv_until(sock, pred, timeout: float) -> list[dict]:
    got, end = [], time.monotonic() + timeout
    while time.monotonic() < end:
        if not await sock.poll(int(max(0.0, end - time.monotonic()) * 1000)):
            break
        topic, body = await sock.recv_multipart()
        msg = json.loads(body)
        assert msg["type"] == topic.decode()
        got.append(msg)
        if pred(msg, got):
            return got
    raise AssertionError(f"no matching message within {timeout}s; got {[m['type'] for m in got]}")


async def test_file_source_answers_through_the_api_and_zeromq(local_ray, tiny_model_path, av_file):
    cfg = pipeline_config(tiny_model_path, [])
    async with OmniStream.from_config(cfg, resources={"encoder": {"num_cpus": 0.25}, "model": {"num_cpus": 0.25}}) as p:
        sub = await _sub(p.endpoints["pub"])
        await p.add_stream("clip", {"type": "file", "path": str(av_file)})
        msgs = await _recv_until(sub, lambda m, _: m["type"] == "stream" and m["state"] == "ended", 60)
        stats = [m for m in msgs if m["type"] == "stats"]
        assert [m["index"] for m in stats] == [0, 1, 2, 3]  # a file is read whole: nothing dropped
        assert all(m["stream"] == "clip" and m["lag"] >= 0 and m["dropped"] == 0 for m in stats)

        answer = await p.ask("What is on screen?", "clip")
        assert isinstance(answer, Answer) and answer.media_time == 8.0 and answer.chunks_in_context == 4
        assert answer.lag >= 0 and isinstance(answer.text, str)
        published = await _recv_until(sub, lambda m, _: m["type"] == "answer", 10)
        assert published[-1]["question"] == "What is on screen?" and published[-1]["media_time"] == 8.0

        # another process asks over REQ/REP (the `omnisift ask` client)
        code = ("import json, sys; from pipeline.serve.zmq_api import request; "
                "print(json.dumps(request(sys.argv[1], {'question': 'Any sound?', 'stream': 'clip'}, timeout=60)))")
        out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code, p.endpoints["rep"]],
                                      capture_output=True, text=True, timeout=90)
        assert out.returncode == 0, out.stderr[-2000:]
        reply = json.loads(out.stdout.strip().splitlines()[-1])
        assert reply["ok"] and reply["answer"]["stream"] == "clip" and reply["answer"]["media_time"] == 8.0
        assert "lag" in reply["answer"]
        sub.close()
        actors = [p.encoder, p.model]
    for actor in actors:  # closed means gone: the actors do not answer any more
        await assert_actor_ends(actor, 30)


async def test_chunks_sent_while_the_model_restarts_are_retried_and_every_chunk_adds_up(local_ray, tiny_model_path,
                                                                                         tmp_path):
    # a finite live feed at 4x real time (a chunk every 0.5 s) into a model that takes >= 1.5 s per chunk
    # and no standing questions: the appender is never idle, so the model always has an append in flight
    clip = write_clip(tmp_path / "lossy.mp4", seconds=24.0, fps=4)
    source = {"type": "file", "path": str(clip), "realtime": True, "speed": 4.0}
    cfg = pipeline_config(tiny_model_path, [], model={"min_append_seconds": 1.5},
                          backpressure={"max_in_flight": 1, "queue_size": 1, "drop_policy": "drop_oldest"})
    async with OmniStream.from_config(cfg) as p:
        sub = await _sub(p.endpoints["pub"])
        await p.add_stream("lossy", source)
        async with contextlib.aclosing(p.stats("lossy")) as stats:
            await next_matching(stats, lambda s: True, 60)
        await asyncio.sleep(0.3)  # the next append (1.5 s) began as the first one returned
        ray.kill(p.model, no_restart=False)
        msgs = await _recv_until(sub, lambda m, _: m["type"] == "stream" and m["state"] == "ended", 120)
        sub.close()

        records = [m for m in msgs if m["type"] == "stats"]
        snap = p.snapshot()["streams"]["lossy"]
        source_counts = snap["source"]  # the source actor's own counters, taken as it was closed at the end
        appended = len({m["index"] for m in records})
        assert p.restarts["model"] == 1 and records[1]["model_pid"] != records[0]["model_pid"]
        assert appended == len(records) == snap["chunks"]
        # While the model restarts (seconds: it loads the model again) the chunk waits and is sent again;
        # the live source keeps only its newest chunk meanwhile and drops the rest.
        assert snap["dropped"] == source_counts["chunks_dropped"] >= 1
        # The append running when the model died fails with "may or may not have run" (ActorUnavailableError)
        # and is sent again to the restarted actor; its context is new, so the chunk cannot be in it twice.
        # Measured: 0 lost, the chunk after the first one is in the new context. (A Ray that reported that
        # call as ActorDiedError would not fail the stream: the chunk is sent once more, see `_deliver`.)
        # At most 1 allows for a restart slower than `restart_wait`.
        assert snap["lost"] <= 1, snap
        assert records[1]["index"] == records[0]["index"] + 1 or snap["lost"] == 1, [m["index"] for m in records]
        # Counted on three sides (the source actor, the published records, the driver's losses). While the
        # stream runs chunks are in flight (produced >= appended + dropped + lost); once it has ended nothing
        # is, so the identity is exact.
        assert source_counts["queue_depth"] == 0
        assert source_counts["chunks_delivered"] == appended + snap["lost"], (source_counts, snap)
        assert source_counts["chunks_emitted"] == appended + snap["dropped"] + snap["lost"], (source_counts, snap)
        assert [m["lost"] for m in records] == sorted(m["lost"] for m in records)
        assert records[-1]["lost"] <= snap["lost"]

        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(p.endpoints["metrics"], timeout=10).read().decode())
        lost = re.search(r'omnisift_chunks_lost_total\{stream="lossy"\} (\S+)', text)
        assert lost and float(lost.group(1)) == snap["lost"]


async def test_watch_yields_probabilities_with_media_time_and_lag(live):
    events = []
    async with contextlib.aclosing(live.watch("Is someone there?", stream="cam", every=2.0, threshold=0.0)) as w:
        async for ev in w:
            events.append(ev)
            if len(events) == 2:
                break
    assert all(isinstance(e, WatchEvent) and e.question == "Is someone there?" for e in events)
    assert all(0.0 <= e.p_yes <= 1.0 and e.alert and e.lag >= 0 for e in events)  # threshold 0: every one alerts
    assert events[1].media_time >= events[0].media_time + 2.0
    assert not any(w.spec.question == "Is someone there?" for w in live._watches.values())  # unregistered


async def test_stats_ask_and_metrics_while_live(live):
    s = await next_matching(live.stats("cam"), lambda s: True, 30)
    assert isinstance(s, ChunkStats) and s.stream == "cam" and s.cache_tokens > 0
    assert s.audio_after <= s.audio_before and s.lag >= 0
    answer = await live.ask("What colour is on the screen?", timeout=60)  # one stream: no name needed
    assert answer.stream == "cam" and answer.media_time is not None and answer.lag >= 0
    text = await asyncio.to_thread(
        lambda: urllib.request.urlopen(live.endpoints["metrics"], timeout=10).read().decode())
    for name in ("omnisift_stage_seconds_bucket", "omnisift_lag_seconds", "omnisift_tokens_total",
                 "omnisift_chunks_dropped_total", "omnisift_reconnects_total", "omnisift_kv_cache_tokens"):
        assert name in text, name
    assert 'stage="encode"' in text and 'modality="audio"' in text and 'stage="answer"' in text


async def test_second_stream_added_paused_resumed_and_removed_while_running(live):
    await live.add_stream("cam2", synthetic(width=128, height=96))
    both = set()
    async for s in live.stats():
        both.add(s.stream)
        if both == {"cam", "cam2"}:
            break
    a, b = await asyncio.gather(live.ask("x?", "cam"), live.ask("y?", "cam2"))
    assert (a.stream, b.stream) == ("cam", "cam2")

    await live.pause_stream("cam2")
    assert live.snapshot()["streams"]["cam2"]["state"] == "paused"
    # the running stream is the clock: after two of its chunks what cam2 had in flight has landed; over the
    # next three chunk periods a paused cam2 gains nothing (one that never paused gains about three)
    await _chunks_of(live, "cam", 2)
    paused_at = live.snapshot()["streams"]["cam2"]["chunks"]
    await _chunks_of(live, "cam", 3)
    assert live.snapshot()["streams"]["cam2"]["chunks"] == paused_at
    await live.resume_stream("cam2")
    await next_matching(live.stats("cam2"), lambda s: True, 30)

    source = live.streams["cam2"].source
    await live.remove_stream("cam2")
    assert "cam2" not in live.snapshot()["streams"]
    with pytest.raises(StreamNotFound, match="cam2"):
        await live.ask("x?", "cam2")
    await assert_actor_ends(source, 30)
    await next_matching(live.stats("cam"), lambda s: True, 30)  # the other stream goes on


@pytest.mark.parametrize("actor", ["model", "encoder", "source"])
async def test_killed_actor_restarts_and_the_stream_resumes(live, actor):
    last = await next_matching(live.stats("cam"), lambda s: True, 30)
    handle = live.streams["cam"].source if actor == "source" else getattr(live, actor)
    restarts = live.restarts[actor]
    ray.kill(handle, no_restart=False)
    pid_field = {"model": "model_pid", "encoder": "encoder_pid"}.get(actor)

    def restarted(s: ChunkStats) -> bool:
        if pid_field is not None:
            return getattr(s, pid_field) != getattr(last, pid_field)
        return live.restarts["source"] > restarts

    after = await next_matching(live.stats("cam"), restarted, 90)
    assert live.restarts[actor] == restarts + 1
    if actor == "model":
        assert after.chunks_in_context <= 2  # the context restarted; the stream did not stop
    answer = await live.ask("Still there?", "cam", timeout=60)
    assert answer.stream == "cam" and live.snapshot()["streams"]["cam"]["state"] == "running"


async def test_bad_requests_give_clear_errors(live, tmp_path):
    with pytest.raises(StreamNotFound, match="no stream 'nope'.*cam"):
        await live.ask("x?", "nope")
    with pytest.raises(ValueError, match="non-empty"):
        await live.ask("  ", "cam")
    with pytest.raises(ValueError, match="max_new_tokens"):
        await live.ask("x?", "cam", max_new_tokens=0)
    with pytest.raises(ValueError, match="already runs"):
        await live.add_stream("cam", synthetic())
    with pytest.raises(SourceError, match="missing.mp4"):
        await live.add_stream("ghost", {"type": "file", "path": str(tmp_path / "missing.mp4")})
    assert "ghost" not in live.streams

    sock = zmq.asyncio.Context.instance().socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(live.endpoints["rep"])
    try:
        for raw, words in [(b"not json", "not JSON"), (b"[1]", "JSON object"), (b"{}", "'question'"),
                           (b'{"question": "x?", "stream": "nope"}', "no stream 'nope'"),
                           (b'{"question": "x?", "bogus": 1}', "unknown request field 'bogus'")]:
            await sock.send(raw)
            assert await sock.poll(30000)
            reply = json.loads(await sock.recv())
            assert reply["ok"] is False and words in reply["error"], (raw, reply)
        await sock.send(b'{"command": "streams"}')
        assert await sock.poll(30000)
        assert json.loads(await sock.recv()) == {"ok": True, "streams": {"cam": "running"}}
    finally:
        sock.close()


async def test_cancelled_and_timed_out_questions_leave_the_stream_working(live):
    before = await live.model.scheduler_stats.remote()
    task = asyncio.create_task(live.ask("What now?", "cam", max_new_tokens=4096))
    # cancel once the model is generating the answer (a decode forward beyond those before it)
    await until_async(lambda: _stats(live), lambda s: s["decode_forwards"] > before["decode_forwards"], 60)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    after = await until_async(lambda: _stats(live), lambda s: s["cancelled"] > before["cancelled"], 60)
    assert after["cancelled"] == before["cancelled"] + 1  # the cancel reached the model: it stopped there
    assert after["tokens"] - before["tokens"] < 4096
    with pytest.raises(TimeoutError):
        await live.ask("What now?", "cam", max_new_tokens=64, timeout=1e-6)
    answer = await live.ask("And now?", "cam", timeout=60)
    assert answer.stream == "cam"


async def test_chunks_pass_through_the_object_store_without_piling_up(live):
    """The driver hands chunk refs from the source to the encoder and lets go of them: the number of
    object references this process holds does not grow as chunks keep flowing."""
    core = ray._private.worker.global_worker.core_worker
    stats = live.stats("cam")
    await next_matching(stats, lambda s: True, 60)
    before = len(core.get_all_reference_counts())
    seen = 0
    async for _ in stats:
        seen += 1
        if seen == 6:
            break
    after = len(core.get_all_reference_counts())
    assert after <= before + 4, (before, after)  # in flight only: max_in_flight chunks, not every chunk


async def _chunks_of(live, stream: str, n: int) -> None:
    """Return once `stream` has put `n` more chunks in its context (bounded)."""
    async def count() -> None:
        seen = 0
        async with contextlib.aclosing(live.stats(stream)) as stats:
            async for _ in stats:
                seen += 1
                if seen == n:
                    return

    await asyncio.wait_for(count(), 30 * n)


async def _stats(live) -> dict:
    return await live.model.scheduler_stats.remote()


async def until_async(get, pred, timeout: float):
    """The first value of `await get()` that `pred` accepts, polled to a deadline."""
    end = time.monotonic() + timeout
    while True:
        value = await get()
        if pred(value):
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {timeout:g}s: {value}")
        await asyncio.sleep(0.05)
