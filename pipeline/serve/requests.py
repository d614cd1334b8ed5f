"""Requests from the ZeroMQ REP socket, answered by a running pipeline (formats: `pipeline.serve.zmq_api`).

A bad request raises ValueError (or the pipeline's StreamNotFound, a ValueError); the REP socket turns
that into `{"ok": false, "error": "one line"}`. The pipeline is whatever has the methods of
`PipelineAPI` (`pipeline.ray.OmniStream` in practice), so this layer needs neither Ray nor the model.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Protocol

from pipeline.messages import Answer, Message


class NotFound(ValueError):
    """A request named a stream, standing question or file the pipeline does not have (HTTP 404)."""


class Conflict(ValueError):
    """A request asked for something the pipeline's state does not allow now (HTTP 409)."""


class PipelineAPI(Protocol):
    """What the network faces (ZeroMQ REP, HTTP) ask of a running pipeline (`pipeline.ray.OmniStream`).
    Bad arguments raise ValueError (NotFound, Conflict) or `streams.errors.StreamError` in one line."""

    def snapshot(self) -> dict: ...

    def ready(self) -> bool: ...

    async def ask(self, question: str, stream: str | None = None, *, max_new_tokens: int | None = None,
                  timeout: float | None = None, **generation: Any) -> Answer: ...  # noqa: ASYNC109 - a deadline

    def ask_stream(self, question: str, stream: str | None = None, *, max_new_tokens: int | None = None,
                   timeout: float | None = None, **generation: Any) -> AsyncIterator[str | Answer]:
        """The answer's text pieces as they are generated, then the whole `Answer`."""
        ...

    async def add_stream(self, name: str, source: Any, *, paused: bool = False) -> None: ...

    async def pause_stream(self, name: str) -> None: ...

    async def resume_stream(self, name: str) -> None: ...

    async def remove_stream(self, name: str) -> None: ...

    def add_watch(self, question: str, stream: str | None = None, *, every: float = 2.0,
                  threshold: float = 0.5) -> int: ...

    def remove_watch(self, watch_id: int) -> None: ...

    def watches(self) -> list[dict]: ...

    async def frame_jpeg(self, stream: str) -> tuple[int, bytes]:
        """(chunk index, JPEG) of the stream's newest chunk in the context, kept patches drawn over it."""
        ...

    def events(self, *, max_pending: int = 256) -> AsyncIterator[Message]: ...

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
