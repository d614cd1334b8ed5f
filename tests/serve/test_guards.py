"""The HTTP API's checks before any route (`pipeline.serve.http.guards`): the Host a request names (DNS
rebinding), the Origin of a state-changing request (cross-site posts), and adds per client per minute;
through the real FastAPI app over a fake pipeline, and the rate window on a controlled clock."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from pipeline.config import HttpConfig
from pipeline.serve.http import create_app
from pipeline.serve.http.guards import RateLimit, allowed_hosts
from pipeline.serve.requests import TooManyRequests

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})


class FakePipeline:
    def __init__(self) -> None:
        self.added: list[str] = []

    def snapshot(self) -> dict:
        return {"streams": {n: _info() for n in self.added}, "restarts": {}, "model_is_tiny": True}

    def ready(self) -> bool:
        return True

    async def add_client_stream(self, name, source, *, paused=False) -> None:
        self.added.append(name)


def _info() -> dict:
    return {"state": "running", "detail": "", "chunks": 0, "dropped": 0, "lost": 0, "reconnects": 0, "lag": None,
            "media_time": None, "cache_tokens": None, "kept": None}


@pytest.mark.parametrize(("host", "extra", "expected"), [
    ("127.0.0.1", [], LOOPBACK),
    ("::1", ["omnisift.lan"], LOOPBACK | {"omnisift.lan"}),
    ("0.0.0.0", [], None),  # a wildcard bind needs the token; any Host
    ("0.0.0.0", ["Cams.LAN"], LOOPBACK | {"cams.lan"}),
    ("10.0.0.7", [], frozenset({"10.0.0.7"})),
])
def test_the_names_a_server_answers_to(host, extra, expected):
    assert allowed_hosts(HttpConfig(host=host, allowed_hosts=extra)) == expected


def test_adds_are_bounded_per_client_in_any_sixty_seconds():
    now = [1000.0]
    rate = RateLimit(3, "adds", clock=lambda: now[0])
    for t in (0.0, 10.0, 20.0):
        now[0] = 1000.0 + t
        rate.take("10.0.0.1")
    now[0] = 1030.0
    with pytest.raises(TooManyRequests, match="more than 3 adds a minute from 10.0.0.1") as e:
        rate.take("10.0.0.1")
    assert e.value.retry_after == pytest.approx(30.0)  # the first of the three leaves the window at 1060
    rate.take("10.0.0.2")  # another client has its own window
    now[0] = 1060.0
    rate.take("10.0.0.1")  # the add at 1000 has left the window
    now[0] = 2000.0
    rate.take("10.0.0.3")
    assert set(rate._times) == {"10.0.0.3"}  # clients whose window emptied are forgotten


@pytest.fixture
def served():
    api = FakePipeline()
    app = create_app(api, hosts=LOOPBACK, origins=["https://ops.example"], adds_per_minute=2)
    with TestClient(app, base_url="http://127.0.0.1:8321", raise_server_exceptions=False) as c:
        yield c, api


def _error(r) -> str:
    error = r.json()["error"]
    assert "\n" not in error
    return error


def test_a_request_naming_another_host_is_refused_before_any_route(served):
    client, _ = served
    assert client.get("/api/streams").status_code == 200
    assert client.get("/api/streams", headers={"Host": "localhost:8321"}).status_code == 200
    assert client.get("/api/streams", headers={"Host": "[::1]:8321"}).status_code == 200
    for host in ("evil.example", "evil.example:8321", "127.0.0.1.nip.io", ""):
        r = client.get("/api/streams", headers={"Host": host})
        assert r.status_code == 403 and "is not a name this server answers to" in _error(r)
    assert client.get("/healthz", headers={"Host": "evil.example"}).status_code == 403


@pytest.mark.parametrize(("origin", "status"), [
    (None, 201), ("http://127.0.0.1:8321", 201), ("http://localhost:9999", 201), ("https://ops.example", 201),
    ("https://evil.example", 403), ("null", 403), ("http://127.0.0.1.evil.example", 403),
])
def test_a_state_changing_request_from_another_origin_is_refused(served, origin, status):
    client, api = served
    headers = {} if origin is None else {"Origin": origin}
    r = client.post("/api/streams", json={"name": "door", "source": {"type": "synthetic"}}, headers=headers)
    assert r.status_code == status, r.text
    assert api.added == (["door"] if status == 201 else [])
    if status == 403:
        assert "may not change this server's state" in _error(r)
    assert client.get("/api/streams", headers=headers).status_code == 200  # reading is not changing


def test_the_third_add_in_a_minute_is_429_with_retry_after(served):
    client, api = served
    for name in ("a", "b"):
        assert client.post("/api/streams", json={"name": name, "source": {"type": "synthetic"}}).status_code == 201
    r = client.post("/api/streams", json={"name": "c", "source": {"type": "synthetic"}})
    assert r.status_code == 429 and "limits.adds_per_minute" in _error(r)
    assert 1 <= int(r.headers["Retry-After"]) <= 60 and api.added == ["a", "b"]
