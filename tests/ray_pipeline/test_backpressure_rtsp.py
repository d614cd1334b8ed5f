"""A model slower than real time drops the oldest chunks and says so; an RTSP camera end to end."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import urllib.request

import pytest

from pipeline.ray import OmniStream
from tests.pipeline.media import write_clip
from tests.ray_pipeline.conftest import next_matching, pipeline_config

pytestmark = [pytest.mark.slow, pytest.mark.timeout(150)]


async def test_a_model_slower_than_real_time_drops_oldest_and_reports(local_ray, tiny_model_path, tmp_path):
    # a live feed at 4x real time (a chunk every 0.5 s) into a model that takes >= 1.5 s per chunk;
    # the source keeps 1 chunk and drops the oldest
    clip = write_clip(tmp_path / "long.mp4", seconds=40.0, fps=4)
    source = {"type": "file", "path": str(clip), "realtime": True, "speed": 4.0}
    cfg = pipeline_config(tiny_model_path, [{"name": "slow", "source": source}],
                          model={"min_append_seconds": 1.5},
                          backpressure={"max_in_flight": 1, "queue_size": 1, "drop_policy": "drop_oldest"})
    async with OmniStream.from_config(cfg) as p:
        seen = []
        async with contextlib.aclosing(p.stats("slow")) as stats:
            await next_matching(stats, lambda s: seen.append(s) or s.dropped >= 1, 90)
        assert seen[-1].lag > 1.0  # the chunk waited: behind real time
        # the context skips what was dropped (it stays current rather than falling further behind)
        assert seen[-1].index - seen[-2].index >= 2, [s.index for s in seen]
        assert p.snapshot()["streams"]["slow"]["dropped"] >= 1
        text = await asyncio.to_thread(
            lambda: urllib.request.urlopen(p.endpoints["metrics"], timeout=10).read().decode())
        dropped = re.search(r'omnisift_chunks_dropped_total\{stream="slow"\} (\S+)', text)
        assert dropped and float(dropped.group(1)) >= 1
        answer = await p.ask("Still current?", "slow", timeout=60)
        assert answer.lag >= 0 and answer.media_time is not None


@pytest.mark.rtsp
async def test_rtsp_camera_answers_through_the_api_and_zeromq(local_ray, tiny_model_path, rtsp_url):
    source = {"type": "rtsp", "url": rtsp_url, "transport": "tcp", "connect_timeout": 5.0, "read_timeout": 3.0,
              "reconnect": {"initial_delay": 0.3, "max_delay": 2.0}}
    cfg = pipeline_config(tiny_model_path, [{"name": "door", "source": source}],
                          watch=[{"question": "Is someone shouting?", "stream": "door", "every": 2.0}])
    async with OmniStream.from_config(cfg) as p:
        first = await next_matching(p.stats("door"), lambda s: True, 60)
        assert first.video_before > 0 and first.audio_before == 50
        event = await next_matching(p.watch("Is someone at the door?", stream="door", every=0), lambda e: True, 60)
        assert 0.0 <= event.p_yes <= 1.0 and event.lag >= 0
        answer = await p.ask("What is on screen?", "door", timeout=60)
        assert answer.stream == "door" and answer.media_time >= 2.0 and answer.lag >= 0
        args = [sys.executable, "-m", "pipeline.cli", "ask", "What do you hear?", "--stream", "door",
                "--endpoint", p.endpoints["rep"], "--timeout", "60", "--json"]
        out = await asyncio.to_thread(subprocess.run, args, capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        reply = json.loads(out.stdout.strip().splitlines()[-1])
        assert reply["stream"] == "door" and reply["media_time"] >= 2.0 and "lag" in reply
