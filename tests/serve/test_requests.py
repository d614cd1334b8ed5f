"""The REP request parser (`pipeline.serve.requests.parse_request`): every poison the issue found is a
named refusal in one line, and no input at all makes it raise anything but BadRequest (hypothesis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.serve.requests import (
    DEFAULT_TIMEOUT,
    BadRequest,
    CommandRequest,
    QuestionRequest,
    parse_request,
)


def _refusal(raw: bytes) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_request(raw)
    err = info.value
    assert "\n" not in str(err) and len(str(err)) < 200
    return err


def test_a_question_with_every_field():
    raw = b'{"question": "what?", "stream": "door", "max_new_tokens": 8, "timeout": 2.5}'
    assert parse_request(raw) == QuestionRequest("what?", "door", 8, 2.5)


def test_a_question_alone_takes_the_defaults():
    assert parse_request(b'{"question": "what?"}') == QuestionRequest("what?", None, None, DEFAULT_TIMEOUT)


def test_commands():
    assert parse_request(b'{"command": "streams"}') == CommandRequest("streams")
    assert parse_request(b'{"command": "stats"}') == CommandRequest("stats")


@pytest.mark.parametrize(("raw", "reason", "message"), [
    (b'{"question": "q", "stream": []}', "bad_type",
     "field 'stream' must be a stream name (a string) or null, got a list"),
    (b'{"question": "q", "max_new_tokens": true}', "bad_type",
     "field 'max_new_tokens' must be an integer in [1, 4096], got a boolean"),
    (b'{"question": "q", "max_new_tokens": 1.5}', "bad_type",
     "field 'max_new_tokens' must be an integer in [1, 4096], got a number"),
    (b'{"question": "q", "max_new_tokens": -3}', "bad_value", "field 'max_new_tokens' must be in [1, 4096], got -3"),
    (b'{"question": "q", "timeout": NaN}', "non_finite", "request holds NaN, which is not a number"),
    (b'{"question": "q", "timeout": -Infinity}', "non_finite", "request holds -Infinity, which is not a number"),
    (b'{"question": "q", "timeout": 1e300}', "bad_value", "field 'timeout' must be in (0, 600] seconds, got 1e+300"),
    (b'{"question": "q", "timeout": 1e999}', "non_finite",
     "request holds the number 1e999, which does not fit a float"),
    (b'{"question": "q", "timeout": -1e308}', "bad_value", "field 'timeout' must be in (0, 600] seconds, got -1e+308"),
    (b'{"question": "q", "timeout": ' + b"9" * 400 + b"}", "huge_number", "request holds an integer of 400 digits"),
    (b'{"question": "q", "timeout": ' + b"9" * 5000 + b"}", "huge_number", "request holds an integer of 5000 digits"),
    (b"[" * 100_000, "too_deep", "request is nested too deeply"),
    (b'{"question": "q", "colour": "red"}', "unknown_field", "unknown request field 'colour'"),
    (b'{"question": "q", "stream": ".."}', "bad_value",
     "field 'stream' must be 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'"),
    (b'{"question": "q", "stream": "a/b"}', "bad_value",
     "field 'stream' must be 1 to 64 letters, digits, '_', '-' or '.', not starting with '.'"),
    (b'{"stream": "door"}', "missing_field", "request needs a 'question' (or 'command': 'streams' | 'stats')"),
    (b'{"question": ""}', "bad_value", "field 'question' is empty"),
    (b'{"question": 7}', "bad_type", "field 'question' must be a string, got an integer"),
    (b'{"command": "shutdown"}', "unknown_command", "unknown command 'shutdown'; known: streams, stats"),
    (b'{"command": ["streams"]}', "unknown_command", "unknown command a list; known: streams, stats"),
    (b'{"command": "streams", "x": 1}', "unknown_field", "unknown field 'x' in a command request"),
    (b"[1, 2]", "not_object", "request must be a JSON object, got a list"),
    (b"\xff\xfe", "not_json", "request is not UTF-8 text"),
    (b"{", "not_json", "request is not JSON: Expecting property name enclosed in double quotes at character 1"),
])
def test_poison_is_a_named_one_line_refusal(raw, reason, message):
    err = _refusal(raw)
    assert (err.reason, str(err)) == (reason, message)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
FIELDS = st.sampled_from(["question", "stream", "max_new_tokens", "timeout", "command", "extra"])


@given(st.dictionaries(FIELDS, JSON_VALUES, max_size=5))
def test_any_object_parses_or_is_refused(request):
    raw = json.dumps(request).encode()  # NaN and Infinity included: json.dumps writes them
    try:
        parsed = parse_request(raw)
    except BadRequest as e:
        assert e.reason and "\n" not in str(e)
        return
    if isinstance(parsed, QuestionRequest):  # what parses is what a question may be
        assert request["question"] == parsed.question and parsed.question.strip()
        assert 0 < parsed.timeout <= 600 and set(request) <= {"question", "stream", "max_new_tokens", "timeout"}
        assert parsed.max_new_tokens is None or (type(parsed.max_new_tokens) is int
                                                 and 1 <= parsed.max_new_tokens <= 4096)
        assert parsed.stream is None or type(parsed.stream) is str
    else:
        assert request == {"command": parsed.command}


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_are_refused(raw):
    try:
        parse_request(raw)
    except BadRequest as e:
        assert e.reason and "\n" not in str(e)


@given(st.integers(min_value=1, max_value=50_000), st.sampled_from([b"[", b'{"a":']))
def test_any_nesting_parses_or_is_refused(depth, opener):
    with pytest.raises(BadRequest):
        parse_request(opener * depth)
