"""The event history survives a restart of the pipeline: what one run saw and raised is read through the
HTTP API of the next run, which goes on appending to it."""

from __future__ import annotations

import asyncio
import contextlib

import httpx
import pytest

from pipeline.ray import OmniStream
from tests.ray_pipeline.conftest import next_matching, pipeline_config

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(240)]


async def test_the_history_of_one_run_is_served_by_the_next(local_ray, tiny_model_path, av_file, tmp_path):
    history = {"path": str(tmp_path / "history.sqlite3")}
    watch = [{"question": "Is it loud?", "every": 2.0, "threshold": 0.0}]
    first = pipeline_config(tiny_model_path, [], history=history, watch=watch)
    async with OmniStream.from_config(first) as p:
        async with contextlib.aclosing(p.events()) as events:
            await p.add_stream("clip", {"type": "file", "path": str(av_file)})
            await next_matching(events, lambda e: getattr(e, "state", None) == "ended", 90)
        answer = await p.ask("What happened?", "clip")

    second = pipeline_config(tiny_model_path, [], history=history)
    async with OmniStream.from_config(second) as p:
        async with httpx.AsyncClient(base_url=p.endpoints["http"]) as c:
            rows = (await c.get("/api/events", params={"stream": "clip", "limit": 1000})).json()["events"]
            await p.add_stream("again", {"type": "file", "path": str(av_file)})
            newer = []
            for _ in range(300):  # until the writer thread has committed the new stream's first record
                newer = (await c.get("/api/events", params={"stream": "again"})).json()["events"]
                if newer:
                    break
                await asyncio.sleep(0.05)
    kinds = [r["type"] for r in rows]
    answers = [r for r in rows if r["type"] == "answer"]
    assert [(a["question"], a["text"], a["media_time"]) for a in answers] == [
        ("What happened?", answer.text, answer.media_time)]
    assert kinds.count("alert") == 4  # threshold 0, every 2 s of media: one per chunk of the 8 s file
    states = [r["state"] for r in reversed(rows) if r["type"] == "stream"]
    assert states == ["running", "ended", "closed"]  # oldest first: as the first run saw them
    assert newer[-1]["state"] == "running"  # the second run's own stream, appended after the first run's
    assert min(r["id"] for r in newer) > max(r["id"] for r in rows)
