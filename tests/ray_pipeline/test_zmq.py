"""The ZeroMQ front end without Ray: REQ/REP and PUB framing, bad requests, and CURVE."""

from __future__ import annotations

import asyncio
import json

import pytest
import zmq
import zmq.asyncio

from pipeline.config import CurveConfig
from pipeline.serve.zmq_api import ZmqFrontend, request, write_certificates
from tests.ray_pipeline.conftest import raw_request, until

pytestmark = pytest.mark.timeout(60)


async def _echo(raw: bytes) -> dict:
    req = json.loads(raw)
    if req.get("question") == "boom":
        raise ValueError("bad\nthing")
    return {"ok": True, "answer": {"text": req["question"].upper()}}


class _Gate:
    """A handler whose question "slow" waits until `release` is set; the order replies were made in."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.answered: list[str] = []

    async def __call__(self, raw: bytes) -> dict:
        question = json.loads(raw)["question"]
        if question == "slow":
            await self.release.wait()
        self.answered.append(question)
        return {"ok": True, "answer": {"text": question}}


async def test_rep_answers_other_processes_and_bad_requests_get_one_line():
    front = ZmqFrontend(None, "tcp://127.0.0.1:*", _echo)
    front.start()
    try:
        ep = front.endpoints["rep"]
        reply = await asyncio.to_thread(request, ep, {"question": "hi"}, 10)
        assert reply == {"ok": True, "answer": {"text": "HI"}}
        reply = await asyncio.to_thread(request, ep, {"question": "boom"}, 10)
        assert reply == {"ok": False, "error": "bad thing"}
    finally:
        await front.aclose()


async def test_pub_sends_topic_and_json():
    front = ZmqFrontend("tcp://127.0.0.1:*", None, _echo)
    sub = zmq.asyncio.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"alert")
    sub.connect(front.endpoints["pub"])
    try:
        for _ in range(100):  # ZeroMQ's slow joiner: publish until the subscription has reached the publisher
            front.publish({"type": "stats", "stream": "a"})
            front.publish({"type": "alert", "stream": "a", "p_yes": 0.9})
            if await sub.poll(50):
                break
        topic, body = await sub.recv_multipart()
        assert topic == b"alert" and json.loads(body) == {"type": "alert", "stream": "a", "p_yes": 0.9}
    finally:
        sub.close(0)
        await front.aclose()


async def test_curve_lets_in_known_clients_only(tmp_path):
    _, server_secret = write_certificates(tmp_path / "server", "server")
    _, client_secret = write_certificates(tmp_path / "clients", "client")
    _, stranger_secret = write_certificates(tmp_path / "strangers", "stranger")
    curve = CurveConfig(server_secret_file=str(server_secret), clients_dir=str(tmp_path / "clients"))
    front = ZmqFrontend(None, "tcp://127.0.0.1:*", _echo, curve)
    front.start()
    try:
        ep, server_public = front.endpoints["rep"], str(tmp_path / "server" / "server.key")
        reply = await asyncio.to_thread(request, ep, {"question": "hi"}, 10, server_public_file=server_public,
                                        client_secret_file=str(client_secret))
        assert reply["ok"]
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(request, ep, {"question": "hi"}, 1.5, server_public_file=server_public,
                                    client_secret_file=str(stranger_secret))
        with pytest.raises(TimeoutError):  # plain text to a CURVE server: never answered
            await asyncio.to_thread(request, ep, {"question": "hi"}, 1.5)
    finally:
        await front.aclose()


async def test_a_two_part_request_gets_one_line_and_the_socket_still_answers():
    front = ZmqFrontend(None, "tcp://127.0.0.1:*", _echo)
    front.start()
    try:
        ep = front.endpoints["rep"]
        reply = await asyncio.to_thread(raw_request, ep, [b'{"command":"streams"}', b"x"])
        assert reply == {"ok": False, "error": "a request is one message part, got 2"}
        reply = await asyncio.to_thread(request, ep, {"question": "hi"}, 10)
        assert reply == {"ok": True, "answer": {"text": "HI"}}
        assert front.stats() == {"served": 1, "refused": {"parts": 1}, "in_progress": 0}
    finally:
        await front.aclose()


async def test_a_slow_request_does_not_hold_up_a_later_one():
    gate = _Gate()
    front = ZmqFrontend(None, "tcp://127.0.0.1:*", gate)
    front.start()
    try:
        ep = front.endpoints["rep"]
        slow = asyncio.create_task(asyncio.to_thread(request, ep, {"question": "slow"}, 20))
        await until(lambda: front.stats()["in_progress"] == 1)
        fast = await asyncio.to_thread(request, ep, {"question": "fast"}, 10)
        assert fast["answer"]["text"] == "fast" and not slow.done()
        gate.release.set()
        assert (await slow)["answer"]["text"] == "slow"
        assert gate.answered == ["fast", "slow"]
    finally:
        gate.release.set()
        await front.aclose()


async def test_requests_beyond_the_bound_are_refused_as_busy():
    gate = _Gate()
    front = ZmqFrontend(None, "tcp://127.0.0.1:*", gate, max_concurrent=2)
    front.start()
    try:
        ep = front.endpoints["rep"]
        slow = [asyncio.create_task(asyncio.to_thread(request, ep, {"question": "slow"}, 20)) for _ in range(2)]
        await until(lambda: front.stats()["in_progress"] == 2)
        reply = await asyncio.to_thread(request, ep, {"question": "fast"}, 10)
        assert reply["ok"] is False and reply["error"].startswith("busy: 2 requests are being answered")
        gate.release.set()
        assert [(await t)["ok"] for t in slow] == [True, True]
        assert front.stats()["refused"] == {"busy": 1}
    finally:
        gate.release.set()
        await front.aclose()


async def test_a_client_that_left_before_its_reply_does_not_stop_the_loop():
    gate = _Gate()
    front = ZmqFrontend(None, "tcp://127.0.0.1:*", gate)
    front.start()
    try:
        ep = front.endpoints["rep"]
        with pytest.raises(TimeoutError):
            await asyncio.to_thread(request, ep, {"question": "slow"}, 0.5)  # closes its socket on timeout
        gate.release.set()
        await until(lambda: front.stats()["in_progress"] == 0)
        reply = await asyncio.to_thread(request, ep, {"question": "after"}, 10)
        assert reply["answer"]["text"] == "after" and gate.answered == ["slow", "after"]
    finally:
        gate.release.set()
        await front.aclose()
