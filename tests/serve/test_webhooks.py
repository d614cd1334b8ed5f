"""Webhook delivery without Ray, against real receivers on loopback: retries with backoff until the
receiver answers, the HMAC signature checked independently, final statuses, a dead receiver that never
holds the caller, and a full queue."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import inspect
import json
import socket
import time

import pytest

from pipeline.config import WebhooksConfig
from pipeline.serve.webhooks import WebhookSender
from tests.serve.receiver import Receiver

pytestmark = [pytest.mark.asyncio, pytest.mark.timeout(60)]

ALERT = {"type": "alert", "stream": "door", "question": "Open?", "p_yes": 0.93, "media_time": 12.0, "index": 5}


def spec(url: str, **kw) -> WebhooksConfig:
    return WebhooksConfig.model_validate({"targets": [{"name": "ops", "url": url}], "backoff": 0.05, **kw})


async def deliver(sender: WebhookSender, results: list, n: int, timeout: float = 20.0) -> None:
    """Wait (at most `timeout` s) until `n` deliveries have ended, polling what the sender reported."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if len([r for r in results if r.result != "retried"]) >= n:
            return
        await asyncio.sleep(0.05)


async def test_a_receiver_that_fails_twice_gets_the_same_signed_body_three_times():
    receiver = Receiver(statuses=[503, 500])
    results = []
    sender = WebhookSender(spec(receiver.url), {"ops": b"s3cret"}, on_result=results.append)
    sender.start()
    sender.submit(ALERT)
    await deliver(sender, results, 1)
    await sender.aclose()
    receiver.close()
    assert [g.status for g in receiver.got] == [503, 500, 200]
    assert [g.headers["X-OmniSIFT-Attempt"] for g in receiver.got] == ["1", "2", "3"]
    assert len({g.body for g in receiver.got}) == 1
    body = receiver.got[-1].body
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert all(hmac.compare_digest(g.headers["X-OmniSIFT-Signature"], expected) for g in receiver.got)
    sent = json.loads(body)
    assert {k: sent[k] for k in ALERT} == ALERT and sent["delivery"] == receiver.got[0].headers["X-OmniSIFT-Delivery"]
    assert [(r.result, r.attempts) for r in results] == [("retried", 1), ("retried", 2), ("delivered", 3)]


async def test_the_waits_between_tries_double_up_to_backoff_max():
    receiver = Receiver(statuses=[500] * 5)
    waits = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    sender = WebhookSender(spec(receiver.url, max_attempts=6, backoff=0.5, backoff_max=3.0), {}, sleep=sleep)
    sender.start()
    result = await sender.deliver(sender.spec.targets[0], ALERT)
    await sender.aclose()
    receiver.close()
    assert waits == [0.5, 1.0, 2.0, 3.0, 3.0] and result.result == "delivered" and result.attempts == 6


async def test_a_4xx_answer_is_final_and_not_tried_again():
    receiver = Receiver(statuses=[404])
    sender = WebhookSender(spec(receiver.url), {})
    sender.start()
    result = await sender.deliver(sender.spec.targets[0], ALERT)
    await sender.aclose()
    receiver.close()
    assert (result.result, result.attempts, result.error) == ("failed", 1, "HTTP 404") and len(receiver.got) == 1


async def test_a_dead_receiver_fails_after_max_attempts_and_submit_never_waits():
    with socket.socket() as s:  # a loopback port with nothing listening
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/hook"
    results = []
    sender = WebhookSender(spec(dead, max_attempts=3, queue_size=2), {}, on_result=results.append)
    sender.start()
    assert not inspect.iscoroutinefunction(sender.submit)  # a plain call: it cannot wait on the event loop
    for _ in range(10):
        sender.submit(ALERT)
    dropped_at_once = [r.result for r in results]
    await deliver(sender, results, 10)
    await sender.aclose()
    final = [r for r in results if r.result != "retried"]
    # submit does not yield: two fit the queue, the other eight are dropped before anything is sent
    assert dropped_at_once == ["dropped"] * 8
    assert sorted(r.result for r in final) == ["dropped"] * 8 + ["failed"] * 2
    assert all("ConnectError" in r.error for r in final if r.result == "failed")


async def test_answers_go_only_to_targets_that_ask_for_them():
    receiver = Receiver()
    targets = [{"name": "alerts", "url": receiver.url},
               {"name": "all", "url": receiver.url, "events": ["alert", "answer"]}]
    cfg = WebhooksConfig.model_validate({"targets": targets})
    results = []
    sender = WebhookSender(cfg, {}, on_result=results.append)
    sender.start()
    sender.submit({"type": "answer", "stream": "door", "text": "yes"})
    await deliver(sender, results, 1)
    await sender.aclose()
    receiver.close()
    assert [(r.target, r.result) for r in results] == [("all", "delivered")]
