"""The HTTP API of a running pipeline (tiny model on local Ray, a synthetic live stream), through real
HTTP clients: httpx, the `openai` client, raw SSE. The server binds loopback with a bearer token; alerts
fire on every evaluation (threshold 0), so they reach a real webhook receiver on loopback (which fails
first) and leave clips that PyAV decodes back."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import json
import math
import os
import time

import av
import httpx
import numpy as np
import openai
import pytest
import pytest_asyncio
from PIL import Image

from pipeline.ray import OmniStream
from tests.pipeline.media import write_clip
from tests.ray_pipeline.conftest import next_matching, pipeline_config, synthetic
from tests.serve.receiver import Receiver

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(180)]

TOKEN = "test-token-7f3a"  # what the module's server requires
SECRET = b"hook-secret-91c2"
RHO_VIDEO, RHO_AUDIO = 0.7, 0.3


@pytest.fixture(scope="module")
def receiver():
    r = Receiver(statuses=[500])  # the first delivery fails once, then the receiver answers
    yield r
    r.close()


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(local_ray, tiny_model_path, tmp_path_factory, receiver):
    data = tmp_path_factory.mktemp("operator")
    saved = {k: os.environ.get(k) for k in ("OMNISIFT_HTTP_TOKEN", "OMNISIFT_HOOK_SECRET")}
    os.environ.update(OMNISIFT_HTTP_TOKEN=TOKEN, OMNISIFT_HOOK_SECRET=SECRET.decode())
    cfg = pipeline_config(
        tiny_model_path, [{"name": "cam", "source": synthetic()}],
        model={"rho_video": RHO_VIDEO, "rho_audio": RHO_AUDIO},
        watch=[{"question": "Is the screen red?", "stream": "cam", "every": 4.0, "threshold": 0.0}],
        history={"path": str(data / "history.sqlite3")}, clips={"dir": str(data / "clips"), "chunks_before": 1},
        webhooks={"targets": [{"name": "ops", "url": receiver.url, "secret_env": "OMNISIFT_HOOK_SECRET"}],
                  "backoff": 0.2},
        runtime_sources={"types": ["file", "synthetic"], "file": {"folders": [str(tmp_path_factory.getbasetemp())]}})
    try:
        async with OmniStream.from_config(cfg) as stream:
            await next_matching(stream.stats("cam"), lambda s: True, 90)
            yield stream
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest_asyncio.fixture(loop_scope="module")
async def client(live):
    async with httpx.AsyncClient(base_url=live.endpoints["http"], timeout=120,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


async def wait_for(pred, timeout: float, step: float = 0.3):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = await pred()
        if value:
            return value
        await asyncio.sleep(step)
    raise AssertionError(f"not within {timeout}s")


# ---- exposure ------------------------------------------------------------------------------------------

async def test_health_and_readiness_answer_without_the_token(live):
    async with httpx.AsyncClient(base_url=live.endpoints["http"]) as c:
        assert (await c.get("/healthz")).json() == {"ok": True}
        assert (await c.get("/readyz")).json() == {"ready": True}


async def test_an_api_request_without_the_bearer_token_is_refused_with_401(live):
    async with httpx.AsyncClient(base_url=live.endpoints["http"]) as c:
        r = await c.get("/api/streams")
        wrong = await c.get("/api/streams", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.json() == {"error": "missing or wrong bearer token"}
    assert wrong.status_code == 401 and TOKEN not in wrong.text


async def test_the_openapi_schema_lists_the_routes(live):
    async with httpx.AsyncClient(base_url=live.endpoints["http"]) as c:
        schema = (await c.get("/openapi.json")).json()
    assert {"/api/streams", "/api/streams/{name}/ask", "/api/watches", "/api/events", "/api/events/live",
            "/v1/chat/completions", "/api/streams/{name}/frame.jpg"} <= set(schema["paths"])


# ---- streams -------------------------------------------------------------------------------------------

async def test_streams_lists_the_live_stream_with_its_state_and_figures(live, client):
    body = (await client.get("/api/streams")).json()
    cam = next(s for s in body["streams"] if s["name"] == "cam")
    snap = live.snapshot()["streams"]["cam"]
    assert cam["state"] == "running" and cam["chunks"] >= 1 and body["model_is_tiny"] is False
    assert cam["chunks"] <= snap["chunks"] and cam["lag"] >= 0
    # one replica of each kind: the stream runs on replica 0 of both, on the node the model actor is on
    assert cam["replica"] == {"model": 0, "encoder": 0, "node": snap["replica"]["node"]} and snap["replica"]["node"]
    assert cam["moves"] == {"encoder": 0, "model": 0}
    kept = cam["kept"]
    # release ratios: each frame keeps n_p - floor(0.7 n_p) tokens, the chunk's audio 50 - floor(0.3 * 50)
    n_p = kept["video_before"] // 2
    assert kept["video_after"] == 2 * (n_p - math.floor(n_p * RHO_VIDEO))
    assert kept["audio_before"] == 50 and kept["audio_after"] == 50 - math.floor(50 * RHO_AUDIO)


async def test_a_stream_added_paused_resumed_and_removed_through_the_api(live, client, tmp_path):
    clip = write_clip(tmp_path / "door.mp4", seconds=30.0)
    r = await client.post("/api/streams", json={"name": "door", "source": {"type": "file", "path": str(clip),
                                                                            "realtime": True}})
    assert r.status_code == 201 and r.json()["state"] == "running"
    assert (await client.post("/api/streams/door/pause")).json()["state"] == "paused"
    assert live.snapshot()["streams"]["door"]["state"] == "paused"
    assert (await client.post("/api/streams/door/resume")).json()["state"] == "running"
    assert (await client.delete("/api/streams/door")).status_code == 204
    assert "door" not in live.snapshot()["streams"]
    assert (await client.get("/api/streams/door")).status_code == 404


async def test_the_frame_shows_the_kept_patches_and_audio_tokens_of_the_newest_chunk(live, client):
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    r = await client.get("/api/streams/cam/frame.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    image = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB")).astype(int)
    # the tiny model's processor (56*56 .. 112*112 pixels, 28-pixel merged cells) on a 160x120 frame
    h, w = smart_resize(120, 160, factor=28, min_pixels=56 * 56, max_pixels=112 * 112)
    rows, cols = h // 28, w // 28
    cell = image.shape[1] // cols
    kept = 0
    for r_ in range(rows):
        for c in range(cols):
            border = image[r_ * cell, c * cell + 2:(c + 1) * cell - 2]  # the cell's top row
            kept += bool(border[:, 1].mean() > 180 and border[:, 0].mean() < 110 and border[:, 2].mean() < 110)
    n_p = rows * cols
    assert kept == n_p - math.floor(n_p * RHO_VIDEO)  # STVP's count for one frame
    bar = image[rows * cell + 4 + 8]  # the middle of the kept-audio strip under the frame
    centres = [(2 * k + 1) * image.shape[1] // 100 for k in range(50)]
    green = sum(bar[x, 1] > 180 and bar[x, 0] < 110 for x in centres)
    assert green == 50 - math.floor(50 * RHO_AUDIO)


# ---- questions -----------------------------------------------------------------------------------------

async def test_ask_answers_from_the_live_context(live, client):
    t0 = time.time()
    r = await client.post("/api/streams/cam/ask", json={"question": "What is on screen?", "max_new_tokens": 3})
    answer = r.json()
    assert r.status_code == 200 and answer["type"] == "answer" and answer["stream"] == "cam"
    assert answer["question"] == "What is on screen?" and isinstance(answer["text"], str)
    assert answer["media_time"] > 0 and 0 <= answer["lag"] < time.time() - t0 + 60


async def test_ask_streamed_as_sse_sends_pieces_whose_join_is_the_answer(live, client):
    events = []
    async with client.stream("POST", "/api/streams/cam/ask",
                             json={"question": "Any sound?", "max_new_tokens": 4, "sse": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        kind = None
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                kind = line[7:]
            elif line.startswith("data: "):
                events.append((kind, json.loads(line[6:])))
    assert events[-1][0] == "answer" and all(k == "piece" for k, _ in events[:-1])
    assert "".join(d["text"] for _, d in events[:-1]) == events[-1][1]["text"]


async def test_the_openai_client_asks_a_stream_by_name(live):
    client = openai.AsyncOpenAI(base_url=live.endpoints["http"] + "v1", api_key=TOKEN, max_retries=0)
    reply = await client.chat.completions.create(
        model="cam", messages=[{"role": "user", "content": "Describe the picture."}], max_tokens=3)
    await client.close()
    assert reply.object == "chat.completion" and reply.model == "cam"
    assert reply.choices[0].message.role == "assistant" and isinstance(reply.choices[0].message.content, str)
    assert reply.choices[0].finish_reason == "stop"
    recorded = await _history(live, kind="answer", question="Describe the picture.")
    assert recorded["text"] == reply.choices[0].message.content  # the answer the pipeline emitted


async def test_the_openai_client_streams_chunks_that_join_to_the_answer(live):
    client = openai.AsyncOpenAI(base_url=live.endpoints["http"] + "v1", api_key=TOKEN, max_retries=0)
    stream = await client.chat.completions.create(
        model="cam", messages=[{"role": "user", "content": [{"type": "text", "text": "Colours?"}]}],
        max_tokens=4, stream=True)
    parts, finish = [], None
    async for chunk in stream:
        parts.append(chunk.choices[0].delta.content or "")
        finish = chunk.choices[0].finish_reason or finish
    await client.close()
    assert finish == "stop"
    recorded = await _history(live, kind="answer", question="Colours?")
    assert "".join(parts) == recorded["text"]


async def test_the_openai_client_gets_404_for_a_stream_that_does_not_run(live):
    client = openai.AsyncOpenAI(base_url=live.endpoints["http"] + "v1", api_key=TOKEN, max_retries=0)
    with pytest.raises(openai.NotFoundError, match="no stream 'attic'"):
        await client.chat.completions.create(model="attic", messages=[{"role": "user", "content": "hi"}])
    models = await client.models.list()
    await client.close()
    assert [m.id for m in models.data] == ["cam"]


async def test_a_watch_is_added_listed_and_removed(live, client):
    r = await client.post("/api/watches", json={"question": "Is it dark?", "stream": "cam", "every": 10,
                                                "threshold": 0.9})
    assert r.status_code == 201
    watch = r.json()
    assert watch["origin"] == "api" and watch["threshold"] == 0.9 and watch["stream"] == "cam"
    listed = (await client.get("/api/watches")).json()
    assert [w["question"] for w in listed] == ["Is the screen red?", "Is it dark?"]
    assert listed[0]["origin"] == "config"
    assert (await client.delete(f"/api/watches/{watch['id']}")).status_code == 204
    assert (await client.delete(f"/api/watches/{watch['id']}")).status_code == 404
    assert watch["id"] not in [w["id"] for w in live.watches()]


# ---- history, alerts, clips, webhooks ------------------------------------------------------------------

async def _history(live, **filters) -> dict:
    """The newest history record matching `filters` (waits for the writer thread)."""
    question = filters.pop("question", None)

    async def find():
        rows = await asyncio.to_thread(live.frontends.history.query, kinds=[filters["kind"]], limit=200)
        return next((r for r in rows if question is None or r.get("question") == question), None)

    return await wait_for(find, 20)


async def test_the_history_is_filtered_by_stream_kind_and_time(live, client):
    t0 = time.time()
    await client.post("/api/streams/cam/ask", json={"question": "Filtered?", "max_new_tokens": 2})
    await _history(live, kind="answer", question="Filtered?")
    r = await client.get("/api/events", params={"stream": "cam", "kind": "answer", "since": t0})
    rows = r.json()["events"]
    assert [row["question"] for row in rows] == ["Filtered?"]
    assert all(row["type"] == "answer" and row["stream"] == "cam" for row in rows)
    before = (await client.get("/api/events", params={"kind": "answer", "until": t0})).json()["events"]
    assert "Filtered?" not in [row["question"] for row in before]
    states = (await client.get("/api/events", params={"kind": "stream", "stream": "cam"})).json()["events"]
    assert states[-1]["state"] == "running"  # the oldest: the stream started
    other = (await client.get("/api/events", params={"stream": "nobody"})).json()["events"]
    assert other == []


async def test_the_live_feed_sends_only_the_kinds_and_stream_asked_for_as_they_happen(live, client):
    got = []

    async def read():
        async with client.stream("GET", "/api/events/live", params={"stream": "cam", "kind": "alert"}) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            async for line in r.aiter_lines():
                if line.startswith("event: "):
                    kind = line[7:]
                elif line.startswith("data: "):
                    got.append((kind, json.loads(line[6:])))
                    if len(got) == 2:
                        return

    await asyncio.wait_for(read(), 30)  # alerts come every 4 s of media (threshold 0)
    assert [k for k, _ in got] == ["alert", "alert"]
    assert all(d["type"] == "alert" and d["stream"] == "cam" and d["clip"] for _, d in got)
    assert got[1][1]["index"] > got[0][1]["index"]


async def test_an_alert_leaves_a_clip_that_decodes_with_video_and_audio(live, client):
    alert = await _history(live, kind="alert")
    assert alert["clip"] and alert["p_yes"] >= 0.0

    async def written():
        r = await client.get(f"/api/clips/{alert['clip']}")
        return r if r.status_code == 200 else None

    r = await wait_for(written, 30)
    assert r.headers["content-type"] == "video/mp4"
    with av.open(io.BytesIO(r.content)) as container:
        video = container.streams.video[0]
        assert len(container.streams.audio) == 1
        frames = sum(1 for _ in container.decode(video))
        assert (video.width, video.height) == (160, 120)
        seconds = float(container.duration / av.time_base)
    with av.open(io.BytesIO(r.content)) as container:
        samples = sum(f.samples for f in container.decode(audio=0))
    side = (await client.get(f"/api/clips/{alert['clip'][:-4]}.json")).json()
    chunks = len(side["chunks"])  # the alert's chunk and up to chunks_before (1) before it
    assert side["index"] == alert["index"] and side["chunks"][-1] == alert["index"] and chunks in (1, 2)
    assert frames == 4 * chunks and abs(seconds - 2.0 * chunks) < 0.25
    assert abs(samples - 32000 * chunks) <= 2048  # AAC frames of 1024 samples
    assert side["question"] == "Is the screen red?" and side["kept"]["video_after"] > 0


async def test_an_alert_reaches_the_webhook_signed_after_a_failed_try(live, receiver):
    await wait_for(lambda: _async(len([g for g in receiver.got if g.status == 200]) >= 1), 40)
    first, second = receiver.got[0], receiver.got[1]
    assert first.status == 500 and second.status == 200
    assert first.headers["X-OmniSIFT-Attempt"] == "1" and second.headers["X-OmniSIFT-Attempt"] == "2"
    assert first.body == second.body  # the same delivery, tried again
    expected = "sha256=" + hmac.new(SECRET, second.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(second.headers["X-OmniSIFT-Signature"], expected)
    event = json.loads(second.body)
    assert event["type"] == "alert" and event["stream"] == "cam" and event["delivery"]


async def test_webhook_tries_are_counted_in_the_metrics(live, receiver):
    await wait_for(lambda: _async(len(receiver.got) >= 2), 40)
    async with httpx.AsyncClient() as c:
        text = (await c.get(live.endpoints["metrics"])).text
    assert 'omnisift_webhook_deliveries_total{result="retried",target="ops"} 1.0' in text
    assert 'omnisift_webhook_deliveries_total{result="delivered",target="ops"}' in text


async def _async(value):
    return value


# ---- bad requests --------------------------------------------------------------------------------------

BAD = [
    ("post", "/api/streams/cam/ask", b"{not json", 400, "body is not valid JSON"),
    ("post", "/api/streams/cam/ask", b'{"question": "x", "temperature": NaN}', 422, "temperature"),
    ("post", "/api/streams/cam/ask", b'{"question": "x", "max_new_tokens": "5"}', 422, "max_new_tokens"),
    ("post", "/api/streams/cam/ask", b'{"question": "x", "colour": 1}', 422, "unknown field 'colour'"),
    ("post", "/api/streams/cam/ask", json.dumps({"question": "x" * 5000}).encode(), 422, "question"),
    ("post", "/api/streams/cam/ask", json.dumps({"question": "x" * 70000}).encode(), 413, "larger than 65536"),
    ("post", "/api/streams/attic/ask", b'{"question": "x"}', 404, "no stream 'attic'"),
    ("post", "/api/streams", b'{"name": "cam", "source": {"type": "synthetic"}}', 409, "already runs"),
    ("post", "/api/streams", b'{"name": "vhs", "source": {"type": "vhs"}}', 400, "'vhs'"),
    ("post", "/api/watches", b'{"question": "x", "threshold": -1}', 422, "threshold"),
    ("post", "/v1/chat/completions", b'{"model": "cam", "messages": []}', 422, "messages"),
    ("get", "/api/events?since=inf", None, 422, "since"),
    ("get", "/api/clips/..%2Fhistory.sqlite3", None, 404, "Not Found"),  # no route: the clip name has no "/"
    ("get", "/api/clips/..history.mp4", None, 404, "no clip"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), BAD,
                         ids=[f"{b[3]}-{i}" for i, b in enumerate(BAD)])
async def test_a_bad_request_gets_one_line_and_its_status_and_the_stream_goes_on(live, client, method, path, body,
                                                                                 status, words):
    before = live.snapshot()["streams"]["cam"]["chunks"]
    kwargs = {} if body is None else {"content": body, "headers": {"Content-Type": "application/json"}}
    r = await getattr(client, method)(path, **kwargs) if method == "get" else await client.post(path, **kwargs)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    error = error["message"] if path.startswith("/v1/") else error  # OpenAI's error shape there
    assert words in error and "\n" not in error
    await next_matching(live.stats("cam"), lambda s: s.index >= 0, 30)
    assert live.snapshot()["streams"]["cam"]["state"] == "running"
    assert live.snapshot()["streams"]["cam"]["chunks"] > before
