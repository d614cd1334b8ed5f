"""OpenAI-compatible chat completions: `model` names a live stream, so any OpenAI client can ask a camera.

    POST /v1/chat/completions  {"model": "door", "messages": [{"role": "user", "content": "Is the door open?"}],
                                "max_tokens": 32, "stream": false}
    GET  /v1/models            the live streams, as models

The question is the text of the last `user` message (string content, or its `text` parts joined); it is
answered from the stream's live context as it is now, without prefilling anything again, exactly as
`OmniStream.ask`. Earlier turns and system messages are not used: the live context has its own system
prompt. `temperature` 0 or unset decodes greedily (the pipeline's default), above 0 samples. With
`stream: true` the answer comes as `chat.completion.chunk` events (`data: {...}`) and ends with
`data: [DONE]`. Extra response field `omnisift`: media_time, lag, latency, chunks_in_context.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import Field

import pipeline.serve.http.sse as sse
from pipeline.messages import DEFAULT_TIMEOUT, MAX_NEW_TOKENS_LIMIT, MAX_TIMEOUT, STREAM_NAME, Answer
from pipeline.serve.http.models import MAX_QUESTION, Request
from pipeline.serve.requests import PipelineAPI
from streams.errors import one_line

log = logging.getLogger(__name__)


class TextPart(Request):
    type: Literal["text"]
    text: str = Field(max_length=MAX_QUESTION)


class ChatMessage(Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = Field(None, max_length=MAX_QUESTION)
    name: str | None = Field(None, max_length=64)

    def text(self) -> str:
        if isinstance(self.content, list):
            return "\n".join(p.text for p in self.content)
        return self.content or ""


class StreamOptions(Request):
    include_usage: bool = False


class ChatRequest(Request):
    model: str = Field(min_length=1, max_length=64, pattern=STREAM_NAME)  # a stream's name
    messages: list[ChatMessage] = Field(min_length=1, max_length=64)
    max_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    n: Literal[1] = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, max_length=256)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0.0, le=MAX_TIMEOUT)  # not OpenAI's: seconds the answer may take

    def question(self) -> str:
        users = [m for m in self.messages if m.role == "user" and m.text().strip()]
        if not users:
            raise ValueError("messages needs a user message with text")
        return users[-1].text()

    def settings(self) -> dict[str, Any]:
        out: dict[str, Any] = {"max_new_tokens": self.max_completion_tokens or self.max_tokens}
        if self.temperature:
            out.update(do_sample=True, temperature=self.temperature)
        if self.top_p is not None:
            out["top_p"] = self.top_p
        if self.seed is not None:
            out["seed"] = self.seed
        return out


def router(api: PipelineAPI) -> APIRouter:
    r = APIRouter(prefix="/v1")

    @r.get("/models", summary="The live streams, as OpenAI models")
    async def models() -> dict:
        now = int(time.time())
        return {"object": "list", "data": [{"id": name, "object": "model", "created": now, "owned_by": "omnisift"}
                                           for name in api.snapshot()["streams"]]}

    @r.post("/chat/completions", summary="Ask a live stream, in OpenAI's chat completion format",
            responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}})
    async def chat(body: ChatRequest) -> Any:
        question = body.question()
        cid, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if body.stream:
            pieces = api.ask_stream(question, body.model, timeout=body.timeout, **body.settings())
            first = await anext(pieces)  # an unknown stream fails here with its status
            return StreamingResponse(_chunks(cid, created, body.model, first, pieces), media_type=sse.MEDIA_TYPE,
                                     headers=sse.HEADERS)
        answer = await api.ask(question, body.model, timeout=body.timeout, **body.settings())
        return {"id": cid, "object": "chat.completion", "created": created, "model": body.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                             "finish_reason": _finish_reason(answer), "logprobs": None}],
                "usage": None, "omnisift": _extra(answer)}

    return r


def _finish_reason(answer: Answer) -> str:
    """OpenAI's meaning: "length" when max_tokens cut the answer, "stop" when the model ended it."""
    return "length" if answer.end == "length" else "stop"


def _extra(answer: Answer) -> dict:
    return {"media_time": answer.media_time, "lag": answer.lag, "latency": answer.latency,
            "chunks_in_context": answer.chunks_in_context}


async def _chunks(cid: str, created: int, model: str, first: str | Answer,
                  rest: AsyncIterator[str | Answer]) -> AsyncIterator[bytes]:
    head = {"id": cid, "object": "chat.completion.chunk", "created": created, "model": model}

    def chunk(delta: dict, finish: str | None = None, **extra: Any) -> bytes:
        return sse.frame(None, {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                      "logprobs": None}], **extra})

    yield chunk({"role": "assistant", "content": ""})
    item = first
    try:
        while not isinstance(item, Answer):
            yield chunk({"content": item})
            item = await anext(rest)
        yield chunk({}, _finish_reason(item), omnisift=_extra(item))
    except StopAsyncIteration:
        yield chunk({}, "stop")
    except Exception as e:  # noqa: BLE001 - already 200: the failure is the last event
        log.warning("streamed completion failed: %s", one_line(e))
        yield sse.frame(None, {"error": {"message": one_line(e)}})
    finally:
        await rest.aclose()
    yield sse.frame(None, "[DONE]")
