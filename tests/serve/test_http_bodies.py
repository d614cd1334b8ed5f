"""The HTTP request bodies, fuzzed (hypothesis) through the real FastAPI app over a fake pipeline (the
bodies are checked before the pipeline is reached): every body is answered 2xx or a one-line 4xx, never
a 500, and the issue's poison values are refused by name."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from pipeline.messages import Answer
from pipeline.serve.http import create_app


class FakePipeline:
    """What the routes under test call; the answer echoes the question."""

    def snapshot(self) -> dict:
        return {"streams": {}, "restarts": {}, "model_is_tiny": True}

    def ready(self) -> bool:
        return True

    async def ask(self, question, stream=None, **settings) -> Answer:
        return Answer(stream, question, "yes", 1.0, 0.0, 0.0, 1)

    def add_watch(self, question, stream=None, *, every=2.0, threshold=0.5) -> int:
        return 1


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(FakePipeline()), raise_server_exceptions=False) as c:
        yield c


def _post(client, path: str, body: bytes):
    return client.post(path, content=body, headers={"content-type": "application/json"})


def _one_line_error(response) -> str:
    error = response.json()["error"]
    error = error["message"] if isinstance(error, dict) else error
    assert isinstance(error, str) and "\n" not in error and "Traceback" not in error
    return error


@pytest.mark.parametrize(("body", "status", "names"), [
    (b'{"question": "q", "max_new_tokens": true}', 422, "max_new_tokens"),
    (b'{"question": "q", "timeout": NaN}', 422, "timeout"),
    (b'{"question": "q", "timeout": -Infinity}', 422, "timeout"),
    (b'{"question": "q", "timeout": ' + b"9" * 400 + b"}", 422, "timeout"),
    (b'{"question": "q", "timeout": -1e308}', 422, "timeout"),
    (b'{"question": "q", "stream": []}', 422, "stream"),
    (b'{"question": "q", "colour": 1}', 422, "colour"),
    (b'{"question": "' + b"x" * 5000 + b'"}', 422, "question"),
    (b"[" * 60_000, 400, "body"),
])
def test_poison_bodies_are_one_line_4xx(client, body, status, names):
    r = _post(client, "/api/streams/cam/ask", body)
    assert r.status_code == status and names in _one_line_error(r)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=20,
)
ASK_FIELDS = st.sampled_from(["question", "timeout", "stream", "max_new_tokens", "temperature", "top_p", "top_k",
                              "seed", "do_sample", "extra"])
ROUTES = st.sampled_from(["/api/streams/cam/ask", "/api/watches", "/v1/chat/completions"])


@given(ROUTES, st.dictionaries(ASK_FIELDS | st.sampled_from(["model", "messages", "every", "threshold"]),
                               JSON_VALUES, max_size=5))
def test_any_body_is_answered_or_refused_in_one_line(client, path, body):
    r = _post(client, path, json.dumps(body).encode())
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        _one_line_error(r)


@given(st.binary(max_size=300))
def test_any_bytes_are_answered_or_refused_in_one_line(client, body):
    r = _post(client, "/api/streams/cam/ask", body)
    assert 400 <= r.status_code < 500
    _one_line_error(r)
