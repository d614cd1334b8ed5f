"""Requests from the ZeroMQ REP socket, answered by a running `OmniStream` (formats: `pipeline.zmq_api`).

A bad request raises ValueError (or StreamNotFound); the REP socket turns that into `{"ok": false,
"error": "one line"}`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.stream import OmniStream

QUESTION_FIELDS = frozenset({"question", "stream", "max_new_tokens", "timeout"})
DEFAULT_TIMEOUT = 120.0  # seconds a remote question may take unless it says otherwise


async def handle_request(stream: OmniStream, request: dict) -> dict:
    """The reply to one request: a command (`streams`, `stats`) or a question about a stream."""
    if request.get("command") == "streams":
        return {"ok": True, "streams": {n: s.state for n, s in stream.streams.items()}}
    if request.get("command") == "stats":
        return {"ok": True, **stream.snapshot()}
    if "question" not in request:
        raise ValueError("request needs a 'question' (or 'command': 'streams' | 'stats')")
    unknown = set(request) - QUESTION_FIELDS
    if unknown:
        raise ValueError(f"unknown request field {min(unknown)!r}")
    answer = await stream.ask(request["question"], request.get("stream"),
                              max_new_tokens=request.get("max_new_tokens"),
                              timeout=request.get("timeout", DEFAULT_TIMEOUT))
    return {"ok": True, "answer": answer.to_json()}
