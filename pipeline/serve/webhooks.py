"""Webhooks: alerts (and, if a target asks, answers) POSTed as JSON to configured URLs.

Each target has a bounded queue and one delivery task of its own, so a dead or slow receiver holds back
only its own queue: `submit` never waits, and an event that finds the queue full is dropped and counted.
A delivery is tried up to `max_attempts` times, waiting `backoff`, 2x, 4x ... (at most `backoff_max`)
seconds between tries, each try bounded by `timeout`; network errors, 408, 429 and 5xx are tried again,
any other status is final. The outcome of every delivery is reported through `on_result` (the pipeline
counts it in Prometheus and writes failures to the history).

The body is one JSON object: the event's fields (`type`, `stream`, ...) plus `delivery` (an id that stays
the same across tries, for de-duplication) and `sent_at`. Headers:

    Content-Type: application/json
    X-OmniSIFT-Delivery: <delivery id>
    X-OmniSIFT-Attempt: <1, 2, ...>
    X-OmniSIFT-Signature: sha256=<hex HMAC-SHA256 of the exact body bytes with the target's secret>

A receiver checks the signature with `hmac.compare_digest(expected, header)` over the raw body.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import httpx

from pipeline.config import WebhooksConfig, WebhookTarget
from streams.config import Backoff

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-OmniSIFT-Signature"
RETRY_STATUS = frozenset({408, 429})


def sign(secret: bytes, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class DeliveryResult:
    """How one event's delivery to one target ended: `delivered`, `failed` (tries used up or a final
    status) or `dropped` (the target's queue was full); `retried` is reported after each try that failed
    while tries remain."""

    target: str
    result: str
    attempts: int
    event: dict
    error: str = ""


class WebhookSender:
    """One delivery task per target. `start()` in the running loop, `submit(event)`, `await aclose()`."""

    def __init__(self, spec: WebhooksConfig, secrets: dict[str, bytes | None], *,
                 on_result: Callable[[DeliveryResult], None] | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self.spec = spec
        self.secrets = secrets
        self.on_result = on_result or (lambda r: None)
        self.sleep = sleep
        # the waits between tries: backoff, 2x, 4x ... at most backoff_max (no jitter: one sender per target)
        self._backoff = Backoff(initial_delay=spec.backoff, max_delay=spec.backoff_max, factor=2.0, jitter=0.0)
        self.queues: dict[str, asyncio.Queue] = {}
        self.counts: dict[tuple[str, str], int] = {}
        self._tasks: list[asyncio.Task] = []
        self._client: httpx.AsyncClient | None = None

    def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.spec.timeout, follow_redirects=False, trust_env=False)
        for t in self.spec.targets:
            self.queues[t.name] = asyncio.Queue(self.spec.queue_size)
            self._tasks.append(asyncio.create_task(self._deliver_all(t), name=f"webhook-{t.name}"))

    def submit(self, event: dict) -> None:
        """Queue `event` for every target that wants its type; never waits."""
        for t in self.spec.targets:
            if event.get("type") not in t.events or t.name not in self.queues:
                continue
            try:
                self.queues[t.name].put_nowait(event)
            except asyncio.QueueFull:
                self._report(DeliveryResult(t.name, "dropped", 0, event, "queue full"))

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _deliver_all(self, target: WebhookTarget) -> None:
        q = self.queues[target.name]
        while True:
            event = await q.get()
            self._report(await self.deliver(target, event))

    async def deliver(self, target: WebhookTarget, event: dict) -> DeliveryResult:
        """Try one event until it is delivered, a final status comes back, or the tries run out."""
        body = json.dumps({**event, "delivery": uuid.uuid4().hex, "sent_at": time.time()},
                          allow_nan=False, default=str).encode()
        delivery = json.loads(body)["delivery"]
        secret = self.secrets.get(target.name)
        headers = {"Content-Type": "application/json", "X-OmniSIFT-Delivery": delivery}
        if secret:
            headers[SIGNATURE_HEADER] = sign(secret, body)
        error = ""
        for attempt in range(1, self.spec.max_attempts + 1):
            try:
                response = await self._client.post(target.url, content=body,
                                                    headers={**headers, "X-OmniSIFT-Attempt": str(attempt)})
                if 200 <= response.status_code < 300:
                    return DeliveryResult(target.name, "delivered", attempt, event)
                error = f"HTTP {response.status_code}"
                if response.status_code < 500 and response.status_code not in RETRY_STATUS:
                    return DeliveryResult(target.name, "failed", attempt, event, error)
            except httpx.HTTPError as e:
                error = f"{type(e).__name__}: {e}".strip().rstrip(":")
            if attempt < self.spec.max_attempts:
                self._report(DeliveryResult(target.name, "retried", attempt, event, error))
                await self.sleep(self._backoff.delay(attempt - 1))
        return DeliveryResult(target.name, "failed", self.spec.max_attempts, event, error)

    def _report(self, result: DeliveryResult) -> None:
        self._count(result.target, result.result)
        if result.result != "delivered":
            log.warning("webhook %s: %s %s after %d attempt(s): %s", result.target, result.event.get("type"),
                        result.result, result.attempts, result.error)
        self.on_result(result)

    def _count(self, target: str, result: str) -> None:
        self.counts[(target, result)] = self.counts.get((target, result), 0) + 1
