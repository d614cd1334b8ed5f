"""Errors of the HTTP API as one-line JSON (`{"error": "..."}`) with the right status, and the request
body limit.

    422  a body or parameter that does not validate (the first problem, naming the field), or a number
         outside the operator's limits (`limits.min_watch_every`)
    400  a body that is not JSON, or a value the pipeline refuses (ValueError, a bad source config)
    401  a missing or wrong bearer token          404  no such stream, watch or clip
    403  a source the operator's `runtime_sources` policy does not allow, more than `limits` allow, a Host
         or Origin the server does not answer to (`pipeline.serve.http.guards`)
    409  not possible in the stream's state now    413  a body over `http.max_body_bytes`
    429  more adds from one client than `limits.adds_per_minute` (with Retry-After)
    504  the answer took longer than the request's timeout
Nothing of a failed request reaches the pipeline's state: it is validated first.
"""

from __future__ import annotations

import json
import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pipeline.serve.requests import Conflict, Forbidden, NotFound, OutOfRange, TooManyRequests
from streams.errors import SourceRefused, StreamError, one_line

log = logging.getLogger(__name__)


OPENAI_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
                404: "not_found_error", 429: "rate_limit_error",
                409: "invalid_request_error", 413: "invalid_request_error", 422: "invalid_request_error",
                504: "timeout", 500: "server_error"}


def error(status: int, message: object, headers: dict | None = None, request: Request | None = None) -> JSONResponse:
    """`{"error": "one line"}`; under /v1 OpenAI's shape, `{"error": {"message", "type", "code"}}`, which
    OpenAI clients read their exception's message from."""
    line = one_line(message, 500) or "error"
    body: dict = {"error": line}
    if request is not None and request.url.path.startswith("/v1/"):
        body = {"error": {"message": line, "type": OPENAI_TYPES.get(status, "error"), "code": status}}
    return JSONResponse(body, status_code=status, headers=headers)


def describe(err: dict) -> str:
    """One line for a pydantic / FastAPI validation error."""
    loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
    where = ".".join(loc)
    if err.get("type") == "json_invalid":
        return f"body is not valid JSON: {err.get('ctx', {}).get('error', 'parse error')}"
    if err.get("type") == "missing":
        return f"field '{where}' is required"
    if err.get("type") == "extra_forbidden":
        return f"unknown field '{where}'"
    value = err.get("input")
    shown = "{...}" if isinstance(value, dict) else "[...]" if isinstance(value, list) else repr(value)[:80]
    return f"field '{where}' has bad value {shown}: {err.get('msg', 'invalid')}" if where else err.get("msg", "invalid")


# the pipeline's refusals and their statuses; a subclass finds its own entry before its base's (Starlette
# looks exceptions up along their class hierarchy)
STATUS_OF: dict[type[Exception], int] = {NotFound: 404, Conflict: 409, Forbidden: 403, SourceRefused: 403,
                                         OutOfRange: 422, ValueError: 400, StreamError: 400}


def _answer_with(status: int):
    async def handler(request: Request, exc: Exception) -> JSONResponse:
        return error(status, exc, request=request)

    return handler


def install_handlers(app: FastAPI) -> None:
    """The exception handlers that turn every failure into one line of JSON."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        return error(400 if first.get("type") == "json_invalid" else 422, describe(first), request=request)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        return error(exc.status_code, exc.detail, getattr(exc, "headers", None), request)

    for kind, status in STATUS_OF.items():
        app.add_exception_handler(kind, _answer_with(status))

    @app.exception_handler(TooManyRequests)
    async def _too_many(request: Request, exc: TooManyRequests) -> JSONResponse:
        return error(429, exc, {"Retry-After": str(max(1, round(exc.retry_after)))}, request)

    @app.exception_handler(TimeoutError)
    async def _timeout(request: Request, exc: TimeoutError) -> JSONResponse:
        return error(504, str(exc) or "the answer took longer than the request's timeout", request=request)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("HTTP %s %s failed", request.method, request.url.path)
        return error(500, f"{type(exc).__name__}: {exc}", request=request)


class BodyLimit:
    """ASGI middleware: a request body over `limit` bytes (declared or sent) gets 413 before any route
    sees it; the body read here is handed on whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._reject(scope, receive, send)
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.limit:
                return await self._reject(scope, receive, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = error(413, f"request body larger than {self.limit} bytes")
        await response(scope, receive, send)


def json_dumps(value: object) -> str:
    return json.dumps(value, allow_nan=False, default=str)
