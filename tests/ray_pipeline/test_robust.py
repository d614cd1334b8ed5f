"""A running pipeline (tiny model on local Ray) against a hostile client and producer: a slow question does
not hold up other requests, questions are bounded on every path, and each poison message of issue 17 sent
to the REP socket or to a ZeroMQ source is refused by name while every stream keeps running and valid media
after the poison is chunked."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import pytest_asyncio
import zmq

from pipeline.ray import OmniStream
from pipeline.serve.zmq_api import request
from streams.zmq_source import send_audio, send_video
from tests.ray_pipeline.conftest import free_port, next_matching, pipeline_config, raw_request, synthetic, until

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(300)]

MAX_QUESTION_TOKENS = 16  # so the character bound is 8 x 16 = 128
T0 = 1000.0  # the producer's clock


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(local_ray, tiny_model_path):
    port = free_port()
    cfg = pipeline_config(
        tiny_model_path,
        [{"name": "cam", "source": synthetic()},
         {"name": "push", "source": {"type": "zmq", "endpoint": f"tcp://127.0.0.1:{port}", "queue_size": 64}}],
        model={"max_question_tokens": MAX_QUESTION_TOKENS})
    async with OmniStream.from_config(cfg) as stream:
        await next_matching(stream.stats("cam"), lambda s: True, 90)
        stream.push_endpoint = f"tcp://127.0.0.1:{port}"
        yield stream


def _rep(live) -> str:
    return live.endpoints["rep"]


async def test_a_slow_question_does_not_hold_up_a_streams_request(live):
    slow = asyncio.create_task(asyncio.to_thread(
        request, _rep(live), {"question": "Describe it.", "stream": "cam", "max_new_tokens": 128, "timeout": 240},
        250))
    await until(lambda: live.snapshot()["requests"]["in_progress"] == 1)
    reply = await asyncio.to_thread(request, _rep(live), {"command": "streams"}, 20)
    assert reply == {"ok": True, "streams": {"cam": "running", "push": "running"}}
    assert not slow.done()  # answered while the question is still generating
    assert (await asyncio.wait_for(slow, 250))["ok"] is True


@pytest.mark.parametrize(("question", "says"), [
    ("x" * 5000, "question of 5000 characters is too long: at most 128 (16 tokens"),
    (" ".join(["red"] * 60), "question of "),  # 179 characters: refused on characters too
    (" ".join(["red"] * 40), "question of "),  # 119 characters but more than 16 tokens
])
async def test_a_long_question_is_refused_in_one_line_on_every_path(live, question, says):
    tokens_message = "tokens is too long: at most 16 (model.max_question_tokens"
    expected = says if len(question) > 128 else tokens_message
    with pytest.raises(ValueError, match="too long") as info:
        await live.ask(question, "cam", timeout=60)
    assert expected in str(info.value) and "\n" not in str(info.value)
    reply = await asyncio.to_thread(request, _rep(live), {"question": question, "stream": "cam", "timeout": 60}, 70)
    assert reply["ok"] is False and expected in reply["error"]
    async with httpx.AsyncClient(base_url=live.endpoints["http"], timeout=60) as client:
        r = await client.post("/api/streams/cam/ask", json={"question": question, "timeout": 60})
    assert r.status_code in (400, 422) and "\n" not in r.json()["error"]
    assert live.snapshot()["streams"]["cam"]["state"] == "running"


# the REP poisons of the issue: (parts, refusal reason)
REP_POISONS = [
    ([b'{"command":"streams"}', b"x"], "parts"),
    ([b'{"question": "q", "timeout": ' + b"9" * 400 + b"}"], "huge_number"),
    ([b"[" * 60_000], "too_deep"),
    ([b'{"question": "q", "timeout": NaN}'], "non_finite"),
    ([b'{"question": "q", "timeout": Infinity}'], "non_finite"),
    ([b'{"question": "q", "timeout": 1e300}'], "bad_value"),
    ([b'{"question": "q", "timeout": -1e308}'], "bad_value"),
    ([b'{"question": "q", "stream": []}'], "bad_type"),
    ([b'{"question": "q", "max_new_tokens": true}'], "bad_type"),
]

FRAME = np.full((48, 80, 3), 128, np.uint8)


def _video_header(t) -> bytes:
    return json.dumps({"v": 1, "kind": "video", "t": t, "width": 80, "height": 48, "format": "rgb24"}).encode()


# the ZeroMQ source poisons of the issue, first one first: (parts, refusal reason)
SOURCE_POISONS = [
    ([_video_header(1e300), FRAME.tobytes()], "bad_time"),
    ([_video_header(10**399), FRAME.tobytes()], "huge_number"),
    ([b"[" * 100_000, FRAME.tobytes()], "header_size"),
    ([_video_header(0).replace(b'"t": 0', b'"t": NaN'), FRAME.tobytes()], "nonfinite"),
    ([_video_header(0).replace(b'"t": 0', b'"t": Infinity'), FRAME.tobytes()], "nonfinite"),
    ([_video_header(-1e308), FRAME.tobytes()], "bad_time"),
]


def _send_clip(push: zmq.Socket, seconds: float) -> None:
    """`seconds` of 10 fps frames and 100 ms blocks of a 16 kHz tone, on the producer's clock from T0."""
    for i in range(int(seconds * 10)):
        t = T0 + i / 10
        send_video(push, t, FRAME)
        send_audio(push, t, (0.3 * np.sin(2 * np.pi * 440 * np.arange(1600) / 16000)).astype(np.float32))


async def test_every_poison_is_refused_by_name_and_every_stream_keeps_running(live):
    before = dict(live.snapshot()["requests"]["refused"])
    for parts, _ in REP_POISONS:
        reply = await asyncio.to_thread(raw_request, _rep(live), parts)
        assert reply["ok"] is False and "\n" not in reply["error"] and "Traceback" not in reply["error"]
    refused = live.snapshot()["requests"]["refused"]
    for reason in {r for _, r in REP_POISONS}:
        assert refused.get(reason, 0) - before.get(reason, 0) == sum(r == reason for _, r in REP_POISONS)

    push = zmq.Context.instance().socket(zmq.PUSH)
    push.setsockopt(zmq.LINGER, 1000)
    push.connect(live.push_endpoint)
    try:
        for parts, _ in SOURCE_POISONS:
            push.send_multipart(parts)
        await asyncio.to_thread(_send_clip, push, 7.0)
        first = await next_matching(live.stats("push"), lambda s: True, 90)
    finally:
        push.close()
    assert (first.index, first.media_time, first.duration) == (0, 0.0, 2.0)
    assert (first.video_before, first.audio_before) != (0, 0)
    snap = live.snapshot()
    assert {n: s["state"] for n, s in snap["streams"].items()} == {"cam": "running", "push": "running"}
    counted = snap["streams"]["push"]["refused"]
    for reason in {r for _, r in SOURCE_POISONS}:
        assert counted.get(reason) == sum(r == reason for _, r in SOURCE_POISONS), counted
    reply = await asyncio.to_thread(request, _rep(live), {"question": "What is on screen?", "stream": "push"}, 120)
    assert reply["ok"] is True
