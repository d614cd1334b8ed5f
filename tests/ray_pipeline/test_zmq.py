"""The ZeroMQ front end without Ray: REQ/REP and PUB framing, bad requests, and CURVE."""

from __future__ import annotations

import asyncio
import json

import pytest
import zmq
import zmq.asyncio

from pipeline.config import CurveSpec
from pipeline.serve.zmq_api import ZmqFrontend, request, write_certificates

pytestmark = pytest.mark.timeout(60)


async def _echo(req: dict) -> dict:
    if req.get("question") == "boom":
        raise ValueError("bad\nthing")
    return {"ok": True, "answer": {"text": req["question"].upper()}}


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
        await asyncio.sleep(0.3)
        front.publish({"type": "stats", "stream": "a"})
        front.publish({"type": "alert", "stream": "a", "p_yes": 0.9})
        assert await sub.poll(5000)
        topic, body = await sub.recv_multipart()
        assert topic == b"alert" and json.loads(body) == {"type": "alert", "stream": "a", "p_yes": 0.9}
    finally:
        sub.close(0)
        await front.aclose()


async def test_curve_lets_in_known_clients_only(tmp_path):
    _, server_secret = write_certificates(tmp_path / "server", "server")
    _, client_secret = write_certificates(tmp_path / "clients", "client")
    _, stranger_secret = write_certificates(tmp_path / "strangers", "stranger")
    curve = CurveSpec(server_secret_file=str(server_secret), clients_dir=str(tmp_path / "clients"))
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
