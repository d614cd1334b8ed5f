"""A hostile client of the HTTP API of a running pipeline (tiny model on local Ray, loopback, a bearer token):
every probe that once wrote files, ran programs, replaced a file with a socket, sent a secret or reached
another host is refused with one line, and each test checks on the host that nothing happened: the target
file is not there or unchanged, the program's marker was not written, a loopback listener standing in for an
outside host saw no connection. The limits refuse with their numbers. The operator's policy allows every
source type, each with its narrowest rule, so what refuses is the rule, not the type."""

from __future__ import annotations

import asyncio
import errno
import os
import socket
import stat
import threading
import time

import httpx
import pytest
import pytest_asyncio

from pipeline.ray import OmniStream
from tests.ray_pipeline.conftest import next_matching, pipeline_config, synthetic

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.slow, pytest.mark.timeout(180)]

TOKEN = "sec-token-5b21"
MAX_STREAMS = 3
OPEN_TIMEOUT = 15.0


class Listener:
    """A TCP listener on loopback standing in for a host outside: it records every connection's first bytes."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1.0)
                try:
                    self.got.append(conn.recv(4096))
                except OSError:
                    self.got.append(b"")

    def close(self) -> None:
        self._stop.set()
        self.thread.join(5)
        self.sock.close()


@pytest.fixture(scope="module")
def outside():
    listener = Listener()
    yield listener
    listener.close()


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    return tmp_path_factory.mktemp("allowed-media")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def live(local_ray, tiny_model_path, tmp_path_factory, media):
    data = tmp_path_factory.mktemp("operator")
    saved = os.environ.get("OMNISIFT_HTTP_TOKEN")
    os.environ["OMNISIFT_HTTP_TOKEN"] = TOKEN
    cfg = pipeline_config(
        tiny_model_path, [{"name": "cam", "source": synthetic()}],
        history={"path": str(data / "history.sqlite3")},
        runtime_sources={"types": ["file", "rtsp", "webcam", "microphone", "synthetic", "zmq", "combined"],
                         "file": {"folders": [str(media)]}, "rtsp": {"hosts": ["10.255.0.0/24"]},
                         "webcam": {"devices": ["/dev/video0"]}, "microphone": {"devices": ["default"]}},
        limits={"max_streams": MAX_STREAMS, "max_watches": 3, "max_watches_per_stream": 2, "min_watch_every": 2.0,
                "source_open_timeout": OPEN_TIMEOUT})
    try:
        async with OmniStream.from_config(cfg) as stream:
            await next_matching(stream.stats("cam"), lambda s: True, 90)
            yield stream
    finally:
        os.environ.pop("OMNISIFT_HTTP_TOKEN", None) if saved is None else os.environ.update(OMNISIFT_HTTP_TOKEN=saved)


@pytest_asyncio.fixture(loop_scope="module")
async def client(live):
    async with httpx.AsyncClient(base_url=live.endpoints["http"], timeout=60,
                                 headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        yield c


async def add(client, name: str, source: dict, **headers) -> httpx.Response:
    return await client.post("/api/streams", json={"name": name, "source": source}, headers=headers)


def one_line(r: httpx.Response, status: int, *words: str) -> str:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert "\n" not in error and all(w in error for w in words), error
    return error


# ---- sources that reached into the host -----------------------------------------------------------------

async def test_a_filter_graph_that_writes_a_file_is_refused_and_writes_nothing(live, client, tmp_path):
    target = tmp_path / "owned.sh"
    graph = f"testsrc=size=64x48,metadata=mode=print:file={target}"
    one_line(await add(client, "w1", {"type": "webcam", "input_format": "lavfi", "device": graph}), 403,
             "field 'input_format'")
    one_line(await add(client, "w2", {"type": "microphone", "backend": "lavfi",
                                      "device": f"sine,ametadata=mode=print:file={target}"}), 403, "field 'backend'")
    assert not target.exists()
    assert {"w1", "w2"}.isdisjoint(live.snapshot()["streams"])


async def test_a_program_named_by_the_client_is_refused_and_never_runs(client, tmp_path):
    marker = tmp_path / "ran"
    program = tmp_path / "fake-ffmpeg"
    program.write_text(f"#!/bin/sh\ntouch {marker}\n")
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    for kind in ("webcam", "microphone"):
        source = {"type": kind, "device": "/dev/video0" if kind == "webcam" else "default", "ffmpeg": str(program)}
        one_line(await add(client, f"p-{kind}", source), 403, "field 'ffmpeg' is never taken")
    assert not marker.exists()


async def test_an_ipc_endpoint_on_an_existing_file_is_refused_and_the_file_is_unchanged(client, tmp_path):
    victim = tmp_path / "notes.txt"
    victim.write_text("keep me")
    one_line(await add(client, "z1", {"type": "zmq", "endpoint": f"ipc://{victim}"}), 403, "must be tcp://")
    assert stat.S_ISREG(victim.stat().st_mode) and victim.read_text() == "keep me"


async def test_no_secret_of_the_server_goes_to_a_host_of_the_clients_choice(client, outside):
    url = f"rtsp://127.0.0.1:{outside.port}/x"
    one_line(await add(client, "r1", {"type": "rtsp", "url": url, "username_env": "OMNISIFT_HTTP_TOKEN",
                                      "password_env": "OMNISIFT_HTTP_TOKEN"}), 403, "field 'username_env'")
    one_line(await add(client, "r2", {"type": "rtsp", "url": url}), 403, "host '127.0.0.1'")
    one_line(await add(client, "r3", {"type": "rtsp", "url": "rtsp://10.255.0.9/x", "credentials": "ops"}), 403,
             "not a credential set")
    one_line(await add(client, "h1", {"type": "webcam", "input_format": "mpegts",
                                      "device": f"http://127.0.0.1:{outside.port}/"}), 403, "field 'input_format'")
    for endpoint, extra, words in [(f"tcp://127.0.0.1:{outside.port}", {"bind": False}, "field 'bind' is false"),
                                   ("tcp://0.0.0.0:0", {"allow_remote": True}, "field 'allow_remote'"),
                                   ("tcp://0.0.0.0:5999", {}, "host '0.0.0.0'")]:
        one_line(await add(client, "z2", {"type": "zmq", "endpoint": endpoint, **extra}), 403, words)
    assert outside.got == []


async def test_a_fifo_is_refused_at_once_and_one_the_operator_adds_times_out_and_is_cleaned_up(live, client, media):
    fifo = media / "pipe.mp4"
    os.mkfifo(fifo)
    started = time.monotonic()
    one_line(await add(client, "f1", {"type": "file", "path": str(fifo)}), 403, "not a regular file")
    assert time.monotonic() - started < OPEN_TIMEOUT / 2
    # the operator's own add (any source) of the same FIFO blocks in open(): refused after the timeout
    with pytest.raises(Exception, match="did not open within 15s") as e:
        await live.add_stream("f2", {"type": "file", "path": str(fifo)})
    assert "\n" not in str(e.value) and "f2" not in live.snapshot()["streams"]

    def reader_gone() -> bool:  # a non-blocking writer opens a FIFO only while a reader has it open
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as err:
            return err.errno == errno.ENXIO
        return False

    for _ in range(200):  # the source actor is ended: its process, the FIFO's reader, goes (bounded wait)
        if reader_gone():
            break
        await asyncio.sleep(0.1)
    assert reader_gone()


# ---- the HTTP surface ------------------------------------------------------------------------------------

async def test_a_host_name_the_server_does_not_answer_to_is_refused(client):
    one_line(await client.get("/api/streams", headers={"Host": "rebind.evil.example"}), 403,
             "Host header 'rebind.evil.example'")
    assert (await client.get("/api/streams", headers={"Host": "localhost:1"})).status_code == 200


async def test_a_cross_site_post_is_refused_and_nothing_is_added(live, client):
    r = await add(client, "xs", synthetic(), Origin="https://evil.example")
    one_line(r, 403, "Origin 'https://evil.example' may not change")
    assert "xs" not in live.snapshot()["streams"]
    own = live.endpoints["http"].rstrip("/")
    r = await client.post("/api/watches", json={"question": "Is it red?", "stream": "cam", "every": 4.0},
                          headers={"Origin": own})
    assert r.status_code == 201
    assert (await client.delete(f"/api/watches/{r.json()['id']}")).status_code == 204


@pytest.mark.parametrize("name", [".", "..", ".hidden", "a/b", "x" * 65])
async def test_a_stream_name_outside_the_one_rule_is_refused(client, name):
    one_line(await add(client, name, synthetic()), 422, "field 'name'")


async def test_adds_of_one_name_at_once_give_one_201_and_the_rest_409(live, client):
    replies = await asyncio.gather(*(add(client, "twin", synthetic(duration=30.0)) for _ in range(5)))
    codes = sorted(r.status_code for r in replies)
    assert codes == [201, 409, 409, 409, 409], [r.text for r in replies]
    assert all("twin" in r.json()["error"] for r in replies if r.status_code == 409)
    assert (await client.delete("/api/streams/twin")).status_code == 204


async def test_a_history_id_past_the_integer_range_is_422(client):
    one_line(await client.get("/api/events", params={"before_id": "99999999999999999999"}), 422, "before_id")


async def test_a_removed_streams_metric_series_leave_metrics(live, client):
    assert (await add(client, "gone", synthetic(duration=30.0))).status_code == 201
    await next_matching(live.stats("gone"), lambda s: True, 60)
    assert 'stream="gone"' in live.metrics.text()
    assert (await client.delete("/api/streams/gone")).status_code == 204
    assert 'stream="gone"' not in live.metrics.text() and 'stream="cam"' in live.metrics.text()


# ---- limits ----------------------------------------------------------------------------------------------

async def test_streams_past_the_limit_are_refused_with_the_numbers(live, client):
    names = [f"extra{i}" for i in range(MAX_STREAMS - len(live.streams))]
    for name in names:
        assert (await add(client, name, synthetic(duration=30.0))).status_code == 201
    try:
        error = one_line(await add(client, "one-too-many", synthetic()), 403,
                         f"{MAX_STREAMS} streams run, limits.max_streams is {MAX_STREAMS}", "MiB of KV cache")
        assert "context tokens" in error
    finally:
        for name in names:
            await client.delete(f"/api/streams/{name}")


async def test_watches_past_the_limits_are_refused_with_the_numbers(client):
    one_line(await client.post("/api/watches", json={"question": "Red?", "stream": "cam", "every": 0}), 422,
             "limits.min_watch_every")
    ids = []
    try:
        for _ in range(2):
            r = await client.post("/api/watches", json={"question": "Red?", "stream": "cam", "every": 2.0})
            assert r.status_code == 201
            ids.append(r.json()["id"])
        one_line(await client.post("/api/watches", json={"question": "Red?", "stream": "cam", "every": 2.0}), 403,
                 "2 standing questions on stream 'cam', limits.max_watches_per_stream is 2")
        r = await client.post("/api/watches", json={"question": "Red?", "every": 2.0})
        assert r.status_code == 201
        ids.append(r.json()["id"])
        one_line(await client.post("/api/watches", json={"question": "Blue?", "every": 2.0}), 403,
                 "3 standing questions were added, limits.max_watches is 3")
    finally:
        for wid in ids:
            await client.delete(f"/api/watches/{wid}")


async def test_the_pipeline_goes_on_after_every_probe(live):
    before = live.snapshot()["streams"]["cam"]["chunks"]
    await next_matching(live.stats("cam"), lambda s: True, 30)
    assert live.snapshot()["streams"]["cam"]["state"] == "running"
    assert live.snapshot()["streams"]["cam"]["chunks"] > before
