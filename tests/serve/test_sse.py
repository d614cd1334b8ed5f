"""The live event feed (`pipeline.serve.http.sse.live`) over a fake pipeline whose event stream fails: the
client gets the events before the failure, then one `error` event naming it, then the end; the log has
the failure once."""

from __future__ import annotations

import json

from pipeline.serve.http import sse


class Event:
    def __init__(self, data: dict) -> None:
        self.data = data

    def to_json(self) -> dict:
        return self.data


class FailingPipeline:
    async def events(self, *, max_pending: int = 256):
        yield Event({"type": "answer", "stream": "cam", "text": "red"})
        raise RuntimeError("the event hub broke\nbadly")


async def test_a_failing_event_source_ends_the_feed_with_an_error_event_and_a_log_line(caplog):
    frames = [f async for f in sse.live(FailingPipeline(), keep=lambda d: d.get("stream") == "elsewhere")]
    assert frames[0] == b": connected\n\n"
    events = [f.decode() for f in frames[1:]]
    assert len(events) == 1  # the answer is not kept by the filter; the error always is
    head, data = events[0].strip().split("\n")
    assert head == "event: error" and json.loads(data.removeprefix("data: ")) == {
        "type": "error", "error": "the event hub broke badly"}
    failures = [r for r in caplog.records if r.name == "pipeline.serve.http.sse" and r.levelname == "ERROR"]
    assert len(failures) == 1 and "live event feed failed" in failures[0].getMessage()


async def test_kept_events_come_before_the_error(caplog):
    frames = [f.decode() async for f in sse.live(FailingPipeline(), keep=lambda d: True)]
    assert [f.split("\n")[0] for f in frames[1:]] == ["event: answer", "event: error"]
