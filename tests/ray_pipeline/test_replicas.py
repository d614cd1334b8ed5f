"""Model and encoder replicas on local Ray with the tiny model: streams shared out by load, each stream's chunks
only on its replica, and a replica killed for good handing its streams to the other (fresh context, counted,
nothing lost) while the other replica's streams go on untouched."""

from __future__ import annotations

import asyncio
import contextlib
import re
import urllib.request

import pytest
import ray

from pipeline.ray import OmniStream
from tests.ray_pipeline.conftest import pipeline_config, synthetic

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NAMES = ("a", "b", "c", "d")


async def _collect(p: OmniStream, out: list, until=lambda records: False) -> None:
    """Append every stats record to `out` until `until(out)` holds (or the task is cancelled)."""
    async with contextlib.aclosing(p.stats(max_pending=10_000)) as stats:
        async for s in stats:
            out.append(s)
            if until(out):
                return


async def _until(pred, timeout: float, step: float = 0.1) -> None:
    """Poll `pred` every `step` seconds; fail after `timeout` seconds."""
    for _ in range(int(timeout / step)):
        if pred():
            return
        await asyncio.sleep(step)
    raise AssertionError(f"not reached within {timeout:g} s")


async def test_four_streams_on_two_replicas_split_two_and_two_and_stay_on_their_replica(local_ray, tiny_model_path,
                                                                                         av_file):
    streams = [{"name": n, "source": {"type": "file", "path": str(av_file)}} for n in NAMES]
    cfg = pipeline_config(tiny_model_path, [], model={"replicas": 2}, zmq={"pub": None, "rep": None})
    async with OmniStream.from_config(cfg) as p:
        assert len(p.replicas.handles["model"]) == 2 and len(p.replicas.handles["encoder"]) == 2
        records: list = []
        collector = asyncio.create_task(_collect(p, records, lambda r: len(r) == 16))
        await asyncio.sleep(0)
        for s in streams:
            await p.add_stream(s["name"], s["source"])
        await asyncio.wait_for(collector, 180)
        await _until(lambda: not p._running(), 60)
        snap = p.snapshot()
        model_pids = [(await m.where.remote())["pid"] for m in p.replicas.handles["model"]]
        encoder_pids = [(await e.where.remote())["pid"] for e in p.replicas.handles["encoder"]]
        metrics = await asyncio.to_thread(
            lambda: urllib.request.urlopen(p.endpoints["metrics"], timeout=10).read().decode())

    placed = {n: snap["streams"][n]["replica"] for n in NAMES}
    on = {r: sorted(n for n in NAMES if placed[n]["model"] == r) for r in (0, 1)}
    assert sorted(len(v) for v in on.values()) == [2, 2], placed
    assert [v["streams"] for v in snap["replicas"]["model"]] == [on[0], on[1]]
    for n in NAMES:
        mine = [s for s in records if s.stream == n]
        assert [s.index for s in mine] == [0, 1, 2, 3] and snap["streams"][n]["state"] == "ended"
        # every chunk of the stream went to its own model replica and its own encoder replica, no other
        assert {s.model_pid for s in mine} == {model_pids[placed[n]["model"]]}
        assert {s.replica for s in mine} == {placed[n]["model"]}
        assert {s.encoder_pid for s in mine} == {encoder_pids[placed[n]["encoder"]]}
        assert [s.chunks_in_context for s in mine] == [1, 2, 3, 4] and not any(s.fresh_context for s in mine)
        assert snap["streams"][n]["moves"] == {"encoder": 0, "model": 0} and snap["streams"][n]["lost"] == 0
    assert snap["restarts"] == {"source": 0, "encoder": 0, "model": 0}  # two replicas' pids are not restarts
    for r in (0, 1):
        streams_gauge = re.search(rf'omnisift_replica_streams\{{kind="model",node="[^"]*",replica="{r}"\}} (\S+)',
                                  metrics)
        assert streams_gauge and float(streams_gauge.group(1)) == 2.0
        tokens = re.search(rf'omnisift_replica_context_tokens\{{replica="{r}"\}} (\S+)', metrics)
        assert tokens and float(tokens.group(1)) == sum(
            [s for s in records if s.stream == n][-1].cache_tokens for n in on[r])
    for n in NAMES:
        assert re.search(rf'omnisift_stream_replica\{{kind="model",stream="{n}"\}} {placed[n]["model"]}\.0', metrics)


@pytest.mark.timeout(480)
async def test_a_replica_killed_for_good_hands_its_streams_to_the_other_and_nothing_is_lost(local_ray,
                                                                                          tiny_model_path):
    cfg = pipeline_config(tiny_model_path, [], model={"replicas": 2}, zmq={"pub": None, "rep": None},
                          metrics={"port": None}, backpressure={"restart_wait": 20})
    async with OmniStream.from_config(cfg) as p:
        records: list = []
        collector = asyncio.create_task(_collect(p, records))
        await asyncio.sleep(0)
        for n in NAMES:
            await p.add_stream(n, synthetic(duration=40.0))  # 20 chunks each, in real time: still running
            # when the last one added has 2 chunks, even when adding the four takes a loaded machine long
        before = {n: p.snapshot()["streams"][n]["replica"]["model"] for n in NAMES}
        victims = sorted(n for n in NAMES if before[n] == 0)
        survivors = sorted(n for n in NAMES if before[n] == 1)
        assert len(victims) == len(survivors) == 2, before
        await _until(lambda: min(p.streams[n].chunks for n in NAMES) >= 2, 120)
        ray.kill(p.replicas.handles["model"][0], no_restart=True)
        await _until(lambda: not p._running(), 180)
        snap = p.snapshot()
        answer = await p.ask("What is on screen?", victims[0], timeout=60)
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await collector

    assert [r["alive"] for r in snap["replicas"]["model"]] == [False, True]
    assert snap["replicas"]["model"][1]["streams"] == sorted(NAMES)
    for n in NAMES:
        s = snap["streams"][n]
        # every chunk the source produced is in a context or was dropped by the live source's policy: none lost
        assert s["state"] == "ended" and s["lost"] == 0, s
        assert s["source"]["chunks_emitted"] == s["chunks"] + s["dropped"], s
        assert s["replica"]["model"] == 1
        assert s["moves"] == {"encoder": 0, "model": 1 if n in victims else 0}
        mine = [r for r in records if r.stream == n]
        assert len(mine) == s["chunks"]
        if n in survivors:  # untouched: one context on one process throughout
            assert not any(r.fresh_context for r in mine) and {r.replica for r in mine} == {1}
            assert [r.chunks_in_context for r in mine] == list(range(1, len(mine) + 1))
            assert len({r.model_pid for r in mine}) == 1
        else:  # on replica 0, then one chunk flagged as the start of a fresh context on replica 1
            fresh = [i for i, r in enumerate(mine) if r.fresh_context]
            assert len(fresh) == 1 and fresh[0] >= 2, [(r.index, r.replica, r.fresh_context) for r in mine]
            k = fresh[0]
            assert [r.replica for r in mine] == [0] * k + [1] * (len(mine) - k)
            assert [r.chunks_in_context for r in mine] == list(range(1, k + 1)) + list(range(1, len(mine) - k + 1))
            assert mine[k].index == mine[k - 1].index + 1 or s["dropped"] > 0  # the chunk that found it dead too
            assert mine[k].model_pid == mine[-1].model_pid != mine[0].model_pid
    assert answer.stream == victims[0] and answer.chunks_in_context >= 1  # its new context answers


async def test_with_no_replica_left_the_stream_fails_with_the_reason_and_new_streams_are_refused(local_ray,
                                                                                                 tiny_model_path):
    from pipeline.serve.requests import Conflict

    cfg = pipeline_config(tiny_model_path, [], zmq={"pub": None, "rep": None}, metrics={"port": None})
    async with OmniStream.from_config(cfg) as p:
        await p.add_stream("only", synthetic(duration=30.0))
        await _until(lambda: p.streams["only"].chunks >= 1, 120)
        ray.kill(p.model, no_restart=True)
        await _until(lambda: p.streams["only"].state == "failed", 60)
        snap = p.snapshot()["streams"]["only"]
        assert not p.ready()  # the HTTP /readyz says so too
        with pytest.raises(Conflict, match=r"^cannot add stream 'late': no model replica left \(1 started, all "
                                           r"dead for good\)$"):
            await p.add_stream("late", synthetic(duration=4.0))
        assert "late" not in p.streams
    assert snap["detail"] == ("the model actor is dead for good (ActorDiedError); no model replica left "
                              "(1 started, all dead for good)")
    assert snap["lost"] >= 1 and snap["moves"] == {"encoder": 0, "model": 0}
    assert p.snapshot()["streams"] == {}
