"""Request and response bodies of the HTTP API, as pydantic models.

Every request model refuses unknown fields, takes no string for a number or a number for a boolean
(strict), refuses NaN and infinities, and bounds every size; a failure is one line, status 422
(`pipeline.serve.http.errors`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.messages import (
    DEFAULT_TIMEOUT,
    MAX_NEW_TOKENS_LIMIT,
    MAX_QUESTION_CHARS,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_TIMEOUT,
    MAX_TOP_K,
    StreamSnapshot,
)

MAX_QUESTION = MAX_QUESTION_CHARS  # characters of one question in a body (the OpenAI route's too)
MAX_ID = 2**63 - 1  # ids (history records, standing questions) are SQLite integers


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


class Generation(Request):
    """Decoding settings of one question (`pipeline.messages.GenerationSettings`); unset: the config's."""

    max_new_tokens: int | None = Field(None, ge=1, le=MAX_NEW_TOKENS_LIMIT)
    do_sample: bool | None = None
    temperature: float | None = Field(None, ge=0.0, le=MAX_TEMPERATURE)
    top_p: float | None = Field(None, ge=0.0, le=1.0)
    top_k: int | None = Field(None, ge=0, le=MAX_TOP_K)
    seed: int | None = Field(None, ge=0, le=MAX_SEED)

    def settings(self) -> dict[str, Any]:
        """The settings given, as keyword arguments of `OmniStream.ask` (`max_new_tokens` always)."""
        given = self.model_dump(include=set(Generation.model_fields), exclude_none=True)
        return given | {"max_new_tokens": self.max_new_tokens}


class AskRequest(Generation):
    question: str = Field(min_length=1, max_length=MAX_QUESTION)
    timeout: float = Field(DEFAULT_TIMEOUT, gt=0.0, le=MAX_TIMEOUT)
    sse: bool = False  # true: server-sent events (`piece` ... then `answer`)

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data: Any) -> Any:
        if isinstance(data, dict) and "stream" in data:
            raise ValueError("field 'stream' is now 'sse' (true: the answer as server-sent events)")
        return data


EventKind = Literal["answer", "alert", "stream", "source", "clip", "webhook", "stats"]


class Watch(BaseModel):
    id: int
    question: str
    stream: str | None
    every: float
    threshold: float
    origin: str  # config | api | subscriber (a Python `watch()` iterator)


StreamInfo = StreamSnapshot  # what the API returns of a stream is the pipeline's own snapshot


class StreamList(BaseModel):
    streams: list[StreamInfo]
    model_is_tiny: bool
    restarts: dict[str, int]
