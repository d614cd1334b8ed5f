"""The faces and records of a running pipeline, started from its config by `OmniStream`: Prometheus
metrics, ZeroMQ PUB/REP, the event history (SQLite), alert clips, webhooks and the HTTP API + dashboard.

Every event the pipeline emits reaches `record` (an `EventHub` sink): the history keeps answers,
alerts, state changes, reconnects and gaps (and per-chunk stats if `history.stats`), the webhooks get
alerts and, for targets that ask, answers. None of them waits: each has a bounded queue of its own.
Secrets (the HTTP bearer token, webhook HMAC secrets) are read here from the environment variables the
config names, when the pipeline starts, and are never logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from collections.abc import Mapping
from typing import Any

from pipeline.config import PipelineConfig
from pipeline.serve.requests import PipelineAPI, handle_request

log = logging.getLogger(__name__)

HISTORY_KINDS = frozenset({"answer", "alert", "stream", "source"})


class Frontends:
    """Owns the network faces and records; `await start(api, hub)`, then `record(event_json)`, `await aclose()`."""

    def __init__(self, config: PipelineConfig, env: Mapping[str, str] | None = None) -> None:
        self.config = config
        self.env = os.environ if env is None else env
        self.endpoints: dict[str, str] = {}
        self.metrics = self.zmq = self.http = self.history = self.clips = self.webhooks = None

    def check(self) -> None:
        """What can be checked before anything starts: a server beyond loopback has its token, every webhook
        target its secret (one-line ValueError naming the variable)."""
        from pipeline.serve.http.server import check_exposure

        if self.config.http.port is not None:
            check_exposure(self.config.http, self.env.get(self.config.http.token_env) or None)
        for t in self.config.webhooks.targets:
            if t.secret_env:
                self._secret(t.secret_env, f"webhooks target {t.name!r}")

    async def start(self, api: PipelineAPI, hub: Any) -> None:
        """Metrics, ZeroMQ, history, clips, webhooks, then HTTP (which serves them all). Raises a one-line
        OSError or ValueError for a port in use, a bad path, a missing secret or token."""
        from pipeline.serve.metrics import PipelineMetrics

        cfg = self.config
        self.metrics = PipelineMetrics()
        if cfg.metrics.port is not None:
            port = self.metrics.serve(cfg.metrics.host, cfg.metrics.port)
            self.endpoints["metrics"] = f"http://{cfg.metrics.host}:{port}/metrics"
        if cfg.zmq.pub or cfg.zmq.rep:
            from pipeline.serve.zmq_api import ZmqFrontend

            self.zmq = ZmqFrontend(cfg.zmq.pub, cfg.zmq.rep, functools.partial(handle_request, api), cfg.zmq.curve)
            self.zmq.start()
            hub.publish = self.zmq.publish
            self.endpoints.update(self.zmq.endpoints)
        self._start_records()
        hub.sinks.append(self.record)
        if cfg.http.port is not None:
            await self._start_http(api)

    def _start_records(self) -> None:
        cfg = self.config
        if cfg.history.path is not None:
            from pipeline.serve.history import History

            self.history = History(cfg.history, on_drop=self.metrics.history_dropped.inc,
                                   on_fail=self.metrics.history_failed.inc)
            self.history.start()
        if cfg.clips.dir is not None:
            from pipeline.serve.clips import ClipWriter

            self.clips = ClipWriter(cfg.clips, on_result=self._clip_done)
            self.clips.start()
        if cfg.webhooks.targets:
            from pipeline.serve.webhooks import WebhookSender

            secrets = {t.name: self._secret(t.secret_env, f"webhooks target {t.name!r}") if t.secret_env else None
                       for t in cfg.webhooks.targets}
            self.webhooks = WebhookSender(cfg.webhooks, secrets, on_result=self._delivered)
            self.webhooks.start()

    async def _start_http(self, api: PipelineAPI) -> None:
        from pipeline.serve.http import HttpServer, check_exposure, create_app
        from pipeline.serve.http.guards import allowed_hosts

        spec = self.config.http
        token = self.env.get(spec.token_env) or None
        check_exposure(spec, token)
        app = create_app(api, token=token, max_body_bytes=spec.max_body_bytes, history=self.history,
                         clips=self.clips, status=self.status, hosts=allowed_hosts(spec),
                         origins=spec.allowed_origins, adds_per_minute=self.config.limits.adds_per_minute)
        self.http = HttpServer(app, spec.host, spec.port)
        await self.http.start()
        self.endpoints["http"] = self.http.url

    def _secret(self, var: str, what: str) -> bytes:
        value = self.env.get(var)
        if not value:
            raise ValueError(f"{what}: the environment variable {var} (its HMAC secret) is not set")
        return value.encode()

    # ---- events in ---------------------------------------------------------------------------------

    def record(self, event: dict) -> None:
        """An event of the pipeline (its JSON): into the history and to the webhooks; never waits."""
        kind = event["type"]
        if self.history is not None and (kind in HISTORY_KINDS or kind == "stats" and self.config.history.stats):
            self.history.submit(event)
        if self.webhooks is not None and kind in ("alert", "answer"):
            self.webhooks.submit(event)

    def _delivered(self, result: Any) -> None:
        self.metrics.webhooks.labels(result.target, result.result).inc()
        if result.result in ("failed", "dropped") and self.history is not None:
            ev = result.event
            self.history.submit({"type": "webhook", "stream": ev.get("stream"), "media_time": ev.get("media_time"),
                                 "question": ev.get("question"), "state": result.result, "target": result.target,
                                 "attempts": result.attempts, "error": result.error, "event": ev.get("type"),
                                 "time": time.time()})

    def _clip_done(self, result: Any) -> None:
        """From the clip writer's thread: counted, and written to the history."""
        self.metrics.clips.labels("written" if result.ok else "failed").inc()
        if self.history is not None:
            side = result.sidecar
            self.history.submit({"type": "clip", "stream": side.get("stream"), "media_time": side.get("media_time"),
                                 "question": side.get("question"), "clip": result.name,
                                 "state": "written" if result.ok else "failed", "bytes": result.bytes,
                                 "seconds": result.seconds, "error": result.error, "time": time.time()})

    def status(self) -> dict:
        """Counters of the history, clips and webhooks (the HTTP /api/status)."""
        out: dict[str, Any] = {}
        if self.history is not None:
            out["history"] = self.history.stats()
        if self.clips is not None:
            out["clips"] = self.clips.stats()
        if self.webhooks is not None:
            out["webhooks"] = {f"{t}:{r}": n for (t, r), n in self.webhooks.counts.items()}
        return out

    async def aclose(self, hub: Any) -> None:
        """HTTP first (no new requests), then ZeroMQ and metrics; the history and clips write what they hold."""
        if self.http is not None:
            await self.http.aclose()
            self.http = None
        if self.zmq is not None:
            hub.publish = None
            await self.zmq.aclose()
            self.zmq = None
        if self.webhooks is not None:
            await self.webhooks.aclose()
            self.webhooks = None
        if self.clips is not None:
            await asyncio.to_thread(self.clips.close)
            self.clips = None
        if self.history is not None:
            await asyncio.to_thread(self.history.close)
            self.history = None
        if self.metrics is not None:
            self.metrics.close()
