"""Requests from the ZeroMQ REP socket, answered by a running pipeline (formats: `pipeline.serve.zmq_api`).

A bad request raises ValueError (or the pipeline's StreamNotFound, a ValueError); the REP socket turns
that into `{"ok": false, "error": "one line"}`. The pipeline is whatever has the methods of
`PipelineAPI` (`pipeline.ray.OmniStream` in practice), so this layer needs neither Ray nor the model.
"""

from __future__ import annotations

from typing import Protocol

from pipeline.messages import Answer


class PipelineAPI(Protocol):
    """What the network faces ask of a running pipeline."""

    def snapshot(self) -> dict: ...

    async def ask(self, question: str, stream: str | None = None, *, max_new_tokens: int | None = None,
                  timeout: float | None = None) -> Answer: ...  # noqa: ASYNC109 - OmniStream.ask's deadline

QUESTION_FIELDS = frozenset({"question", "stream", "max_new_tokens", "timeout"})
DEFAULT_TIMEOUT = 120.0  # seconds a remote question may take unless it says otherwise


async def handle_request(stream: PipelineAPI, request: dict) -> dict:
    """The reply to one request: a command (`streams`, `stats`) or a question about a stream."""
    if request.get("command") == "streams":
        return {"ok": True, "streams": {n: s["state"] for n, s in stream.snapshot()["streams"].items()}}
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
