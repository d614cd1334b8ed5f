"""A question's rules are one set, whatever front end it comes through: each limit is accepted at its
value and refused just past it by the Python API's `GenerationSettings`, the HTTP body models, the OpenAI
route's model and the ZeroMQ parser alike; a stream name is one rule, the dashboard's form included."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from pipeline.messages import (
    MAX_NEW_TOKENS_LIMIT,
    MAX_QUESTION_CHARS,
    MAX_SEED,
    MAX_TEMPERATURE,
    MAX_TIMEOUT,
    MAX_TOP_K,
    STREAM_NAME,
    GenerationSettings,
)
from pipeline.serve.http.models import AskRequest
from pipeline.serve.http.openai import ChatRequest
from pipeline.serve.requests import BadRequest, parse_request

PAST = {"temperature": MAX_TEMPERATURE + 1e-9, "top_k": MAX_TOP_K + 1, "seed": MAX_SEED + 1,
        "timeout": MAX_TIMEOUT + 1e-9, "max_new_tokens": MAX_NEW_TOKENS_LIMIT + 1}
AT = {"temperature": MAX_TEMPERATURE, "top_k": MAX_TOP_K, "seed": MAX_SEED, "timeout": MAX_TIMEOUT,
      "max_new_tokens": MAX_NEW_TOKENS_LIMIT}
OPENAI_NAMES = {"temperature": "temperature", "seed": "seed", "timeout": "timeout", "max_new_tokens": "max_tokens"}
ZMQ_FIELDS = ("timeout", "max_new_tokens")


def python_api(field, value) -> bool:
    try:
        GenerationSettings.of(**{field: value})
    except ValueError:
        return False
    return True


def http(field, value) -> bool:
    try:
        AskRequest.model_validate({"question": "q", field: value})
    except ValidationError:
        return False
    return True


def openai(field, value) -> bool:
    try:
        ChatRequest.model_validate({"model": "cam", "messages": [{"role": "user", "content": "q"}],
                                    OPENAI_NAMES[field]: value})
    except ValidationError:
        return False
    return True


def zmq(field, value) -> bool:
    try:
        parse_request(json.dumps({"question": "q", field: value}).encode())
    except BadRequest:
        return False
    return True


@pytest.mark.parametrize("field", sorted(AT))
def test_each_limit_is_the_same_on_every_front_end(field):
    fronts = [python_api, http] + ([openai] if field in OPENAI_NAMES else []) + ([zmq] if field in ZMQ_FIELDS else [])
    assert [front(field, AT[field]) for front in fronts] == [True] * len(fronts)
    assert [front(field, PAST[field]) for front in fronts] == [False] * len(fronts)


def test_a_question_over_the_body_bound_is_refused_on_http_and_the_openai_route():
    AskRequest.model_validate({"question": "x" * MAX_QUESTION_CHARS})
    with pytest.raises(ValidationError):
        AskRequest.model_validate({"question": "x" * (MAX_QUESTION_CHARS + 1)})
    with pytest.raises(ValidationError):
        ChatRequest.model_validate({"model": "cam", "messages": [{"role": "user",
                                                                   "content": "x" * (MAX_QUESTION_CHARS + 1)}]})


def test_the_old_name_of_the_sse_switch_is_refused_naming_the_new_one():
    with pytest.raises(ValidationError, match="field 'stream' is now 'sse'"):
        AskRequest.model_validate({"question": "q", "stream": True})
    assert AskRequest.model_validate({"question": "q", "sse": True}).sse is True


NAMES = ["door", "cam-1", "a.b", "_x", "-y", "x" * 64, ".", "..", ".hidden", "a/b", "x" * 65, "", "ü", "a b"]


def test_the_dashboards_name_pattern_is_the_one_rule():
    html = (Path(__file__).parents[2] / "pipeline" / "serve" / "static" / "index.html").read_text()
    pattern = re.search(r'<input name="name"[^>]*pattern="([^"]+)"', html).group(1)
    # a form's pattern must match the whole value
    assert [bool(re.fullmatch(pattern, n)) for n in NAMES] == [bool(re.fullmatch(STREAM_NAME, n)) for n in NAMES]
    assert [bool(re.fullmatch(STREAM_NAME, n)) for n in NAMES] == [True] * 6 + [False] * 8
