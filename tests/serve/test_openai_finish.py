"""`finish_reason` of the OpenAI route as OpenAI means it: "length" when `max_tokens` cut the answer, "stop"
when the model ended it; streamed and not, over a fake pipeline whose model always says five tokens."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from pipeline.messages import Answer
from pipeline.serve.http import create_app

WORDS = ["a ", "red ", "cup ", "on ", "the table"]  # the whole answer: five tokens, then the model stops


class FivePipeline:
    def snapshot(self) -> dict:
        return {"streams": {"cam": {}}, "restarts": {}, "model_is_tiny": True}

    def ready(self) -> bool:
        return True

    def _answer(self, question: str, stream: str, max_new_tokens: int | None) -> tuple[list[str], Answer]:
        n = len(WORDS) if max_new_tokens is None else min(max_new_tokens, len(WORDS))
        end = "length" if n < len(WORDS) else "stop"
        return WORDS[:n], Answer(stream, question, "".join(WORDS[:n]), 2.0, 0.1, 0.2, 1, end)

    async def ask(self, question, stream=None, *, timeout=None, max_new_tokens=None, **settings) -> Answer:
        return self._answer(question, stream, max_new_tokens)[1]

    async def ask_stream(self, question, stream=None, *, timeout=None, max_new_tokens=None, **settings):
        pieces, answer = self._answer(question, stream, max_new_tokens)
        for piece in pieces:
            yield piece
        yield answer


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(FivePipeline()), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("max_tokens", [1, 4, 5, 32])
@pytest.mark.parametrize("stream", [False, True])
def test_finish_reason_is_length_exactly_when_max_tokens_cut_the_answer(client, max_tokens, stream):
    expected = "length" if max_tokens < len(WORDS) else "stop"
    r = client.post("/v1/chat/completions", json={"model": "cam", "messages": [{"role": "user", "content": "What?"}],
                                                  "max_tokens": max_tokens, "stream": stream})
    assert r.status_code == 200, r.text
    if not stream:
        choice = r.json()["choices"][0]
        assert choice["message"]["content"] == "".join(WORDS[:max_tokens])
        assert choice["finish_reason"] == expected
        return
    events = [json.loads(line[6:]) for line in r.text.splitlines() if line.startswith("data: {")]
    finishes = [e["choices"][0]["finish_reason"] for e in events]
    assert finishes[-1] == expected and set(finishes[:-1]) == {None}
    assert "".join(e["choices"][0]["delta"].get("content", "") for e in events) == "".join(WORDS[:max_tokens])
