"""Requests from the ZeroMQ REP socket, answered by a running pipeline (formats: `pipeline.serve.zmq_api`).

`parse_request` is total: whatever bytes arrive, it returns a `QuestionRequest` or `CommandRequest`, or
raises `BadRequest` whose `reason` names the kind of refusal (counted by the socket) and whose message is
one line without Python internals: not JSON, non-finite or huge numbers, nesting too deep, not an object,
unknown or missing fields, wrong types (`max_new_tokens: true`, `stream: []`), out-of-range values.
A request the pipeline then refuses raises ValueError (or the pipeline's StreamNotFound, a ValueError);
the socket turns either into `{"ok": false, "error": "one line"}`. The pipeline is whatever has the
methods of `PipelineAPI` (`pipeline.ray.OmniStream` in practice), so this layer needs neither Ray nor
the model.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from pipeline.messages import DEFAULT_TIMEOUT, MAX_NEW_TOKENS_LIMIT, MAX_TIMEOUT, STREAM_NAME, Answer, Message


class NotFound(ValueError):
    """A request named a stream, standing question or file the pipeline does not have (HTTP 404)."""


class Conflict(ValueError):
    """A request asked for something the pipeline's state does not allow now (HTTP 409)."""


class Forbidden(ValueError):
    """A request asked for more than the operator's limits allow (HTTP 403), naming the limit and the numbers."""


class OutOfRange(ValueError):
    """A number outside what the operator's limits allow (HTTP 422, like any out-of-range field)."""


class TooManyRequests(ValueError):
    """A client asked more often than the operator's limits allow (HTTP 429); `retry_after` in seconds."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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

    async def add_client_stream(self, name: str, source: Any, *, paused: bool = False) -> None:
        """Add a stream a client asked for: its source under the operator's `runtime_sources` policy
        (`streams.policy.SourceRefused` otherwise) and within `limits` (Forbidden otherwise)."""
        ...

    async def pause_stream(self, name: str) -> None: ...

    async def resume_stream(self, name: str) -> None: ...

    async def remove_stream(self, name: str) -> None: ...

    def add_watch(self, question: str, stream: str | None = None, *, every: float = 2.0,
                  threshold: float = 0.5) -> int:
        """A client's standing question, within `limits` (Forbidden, or ValueError for `every`)."""
        ...

    def remove_watch(self, watch_id: int) -> None: ...

    def watches(self) -> list[dict]: ...

    async def frame_jpeg(self, stream: str) -> tuple[int, bytes]:
        """(chunk index, JPEG) of the stream's newest chunk in the context, kept patches drawn over it."""
        ...

    def events(self, *, max_pending: int = 256) -> AsyncIterator[Message]: ...

QUESTION_FIELDS = frozenset({"question", "stream", "max_new_tokens", "timeout"})
COMMANDS = ("streams", "stats")
MAX_STREAM_NAME = 64  # characters


class BadRequest(ValueError):
    """A request refused before it reaches the pipeline; `reason` names the kind (a counter's label)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CommandRequest:
    command: str  # one of COMMANDS


@dataclass(frozen=True)
class QuestionRequest:
    question: str
    stream: str | None = None
    max_new_tokens: int | None = None  # None: the config's
    timeout: float = DEFAULT_TIMEOUT


def _refuse_constant(name: str) -> float:
    raise BadRequest("non_finite", f"request holds {name}, which is not a number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadRequest("non_finite", f"request holds the number {text[:20]}, which does not fit a float")
    return value


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > 20:
        raise BadRequest("huge_number", f"request holds an integer of {len(text)} digits")
    return int(text)


def decode_json(raw: bytes) -> Any:
    """JSON from bytes, refusing NaN/Infinity, floats past the double range, integers over 20 digits and
    nesting too deep for the parser, as BadRequest (never OverflowError, ValueError or RecursionError)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest("not_json", "request is not UTF-8 text") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float,
                          parse_int=_bounded_int)
    except json.JSONDecodeError as e:
        raise BadRequest("not_json", f"request is not JSON: {e.msg} at character {e.pos}") from None
    except RecursionError:
        raise BadRequest("too_deep", "request is nested too deeply") from None


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _field(request: dict, name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = request[name]
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        raise BadRequest("bad_type", f"field {name!r} must be {what}, got {_type_name(value)}")
    return value


def parse_request(raw: bytes) -> QuestionRequest | CommandRequest:
    """The request in one REP message, checked whole (see the module docstring); BadRequest otherwise."""
    request = decode_json(raw)
    if not isinstance(request, dict):
        raise BadRequest("not_object", f"request must be a JSON object, got {_type_name(request)}")
    if "command" in request:
        return _command(request)
    if "question" not in request:
        raise BadRequest("missing_field", "request needs a 'question' (or 'command': 'streams' | 'stats')")
    unknown = set(request) - QUESTION_FIELDS
    if unknown:
        raise BadRequest("unknown_field", f"unknown request field {_shown(min(unknown))}")
    return QuestionRequest(_question(request), _stream(request), _max_new_tokens(request), _timeout(request))


def _shown(name: str) -> str:
    return repr(name[:40] + ("..." if len(name) > 40 else ""))


def _command(request: dict) -> CommandRequest:
    command = request["command"]
    if command not in COMMANDS or not isinstance(command, str):
        shown = _shown(command) if isinstance(command, str) else _type_name(command)
        raise BadRequest("unknown_command", f"unknown command {shown}; known: {', '.join(COMMANDS)}")
    if len(request) > 1:
        extra = min(k for k in request if k != "command")
        raise BadRequest("unknown_field", f"unknown field {_shown(extra)} in a command request")
    return CommandRequest(command)


def _question(request: dict) -> str:
    question = _field(request, "question", (str,), "a string")
    if not question.strip():
        raise BadRequest("bad_value", "field 'question' is empty")
    return question  # its length is the pipeline's to bound (`OmniStream.ask`, `check_question`)


def _stream(request: dict) -> str | None:
    if request.get("stream") is None:
        return None
    name = _field(request, "stream", (str,), "a stream name (a string) or null")
    if not re.fullmatch(STREAM_NAME, name):
        raise BadRequest("bad_value", f"field 'stream' must be 1 to {MAX_STREAM_NAME} letters, digits, '_', '-' "
                                      "or '.', not starting with '.'")
    return name


def _max_new_tokens(request: dict) -> int | None:
    if request.get("max_new_tokens") is None:
        return None
    value = _field(request, "max_new_tokens", (int,), f"an integer in [1, {MAX_NEW_TOKENS_LIMIT}]")
    if not 1 <= value <= MAX_NEW_TOKENS_LIMIT:
        raise BadRequest("bad_value", f"field 'max_new_tokens' must be in [1, {MAX_NEW_TOKENS_LIMIT}], got {value}")
    return value


def _timeout(request: dict) -> float:
    if request.get("timeout") is None:
        return DEFAULT_TIMEOUT
    value = _field(request, "timeout", (int, float), f"seconds in (0, {MAX_TIMEOUT:g}]")
    if not 0 < value <= MAX_TIMEOUT:
        raise BadRequest("bad_value", f"field 'timeout' must be in (0, {MAX_TIMEOUT:g}] seconds, got {value:g}")
    return float(value)


async def handle_request(stream: PipelineAPI, raw: bytes) -> dict:
    """The reply to one request's bytes: a command (`streams`, `stats`) or a question about a stream.
    Raises BadRequest for a request that does not parse, ValueError for one the pipeline refuses."""
    request = parse_request(raw)
    if isinstance(request, CommandRequest):
        if request.command == "streams":
            return {"ok": True, "streams": {n: s["state"] for n, s in stream.snapshot()["streams"].items()}}
        return {"ok": True, **stream.snapshot()}
    answer = await stream.ask(request.question, request.stream, max_new_tokens=request.max_new_tokens,
                              timeout=request.timeout)
    return {"ok": True, "answer": answer.to_json()}
