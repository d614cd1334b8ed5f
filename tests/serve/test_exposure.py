"""Exposure of the HTTP server: beyond loopback only with a bearer token (refused before anything starts),
webhook secrets required when named, a port in use refused in one line, the token never in the logs."""

from __future__ import annotations

import asyncio
import logging
import socket

import httpx
import pytest

from pipeline.config import HttpConfig, load_pipeline_config
from pipeline.ray.events import EventHub
from pipeline.ray.frontends import Frontends
from pipeline.serve.http import HttpServer, check_exposure, create_app

pytestmark = pytest.mark.timeout(60)


def config(**sections):
    base = {"zmq": {"pub": None, "rep": None}, "metrics": {"port": None}, "history": {"path": None},
            "clips": {"dir": None}}
    return load_pipeline_config({**base, **sections})


def test_a_server_beyond_loopback_without_a_token_is_refused_before_ray_starts():
    import ray

    from pipeline.ray import OmniStream

    stream = OmniStream(config(http={"host": "0.0.0.0", "port": 0, "token_env": "NO_SUCH_TOKEN_VAR"}))
    with pytest.raises(ValueError, match=r"^http.host 0.0.0.0 is not loopback: set a bearer token in the "
                                         r"environment variable NO_SUCH_TOKEN_VAR"):
        asyncio.run(stream.start())
    assert not ray.is_initialized()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_token(host):
    check_exposure(HttpConfig(host=host), None)


def test_a_webhook_secret_named_but_not_set_is_refused_in_one_line():
    cfg = config(webhooks={"targets": [{"name": "ops", "url": "http://127.0.0.1:9/x", "secret_env": "NO_SUCH_SECRET"}]})
    with pytest.raises(ValueError, match=r"^webhooks target 'ops': the environment variable NO_SUCH_SECRET \(its "
                                         r"HMAC secret\) is not set$"):
        Frontends(cfg, env={}).check()


def test_a_port_in_use_is_refused_in_one_line():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"^http: cannot bind 127.0.0.1:{port}: Address already in use$"):
            HttpServer(create_app(None), "127.0.0.1", port)


class _Ready:
    def ready(self) -> bool:
        return True


async def test_a_token_from_the_environment_guards_the_api_and_never_reaches_the_logs(caplog):
    caplog.set_level(logging.DEBUG)
    cfg = config(http={"port": 0})
    fronts = Frontends(cfg, env={"OMNISIFT_HTTP_TOKEN": "tok-5e1f-secret"})
    await fronts.start(_Ready(), EventHub())
    try:
        async with httpx.AsyncClient(base_url=fronts.endpoints["http"]) as c:
            refused = await c.get("/api/watches")
            ready = await c.get("/readyz")
    finally:
        await fronts.aclose(EventHub())
    assert refused.status_code == 401 and ready.status_code == 200
    assert "tok-5e1f-secret" not in caplog.text and "tok-5e1f-secret" not in refused.text


def test_metrics_beyond_loopback_need_an_explicit_setting():
    from streams.errors import ConfigError

    with pytest.raises(ConfigError, match=r"metrics.host 0.0.0.0 is not loopback and /metrics has no "
                                         r"authentication: set metrics.allow_remote: true"):
        config(metrics={"host": "0.0.0.0", "port": 0})
    assert config(metrics={"host": "0.0.0.0", "port": 0, "allow_remote": True}).metrics.allow_remote
    assert config(metrics={"host": "localhost", "port": 0}).metrics.host == "localhost"


def test_a_metrics_port_in_use_is_named_in_one_line():
    from pipeline.serve.metrics import PipelineMetrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        metrics = PipelineMetrics()
        with pytest.raises(OSError, match=rf"^metrics: cannot bind 127.0.0.1:{port}: Address already in use$"):
            metrics.serve("127.0.0.1", port)


def test_a_zmq_port_in_use_is_named_in_one_line():
    from pipeline.serve.zmq_api import ZmqFrontend

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=rf"^zmq: cannot bind tcp://127.0.0.1:{port}: Address already in use$"):
            ZmqFrontend(None, f"tcp://127.0.0.1:{port}", None)
