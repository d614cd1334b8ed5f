"""Server-sent events: the framing, and the live event feed of a running pipeline.

    event: <type>\\ndata: <one line of JSON>\\n\\n        (a comment line `: keepalive` every 15 s of silence)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from pipeline.serve.http.errors import json_dumps
from pipeline.serve.requests import PipelineAPI
from streams.errors import one_line

HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies and browsers from closing
MEDIA_TYPE = "text/event-stream"

log = logging.getLogger(__name__)


def frame(event: str | None, data: object) -> bytes:
    """One event; `event` None for data-only events (the OpenAI stream)."""
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else json_dumps(data)
    return f"{head}data: {body}\n\n".encode()


async def live(api: PipelineAPI, keep: Callable[[dict], bool], *, max_pending: int = 256,
               keepalive: float = KEEPALIVE) -> AsyncIterator[bytes]:
    """The pipeline's events as they happen (those `keep` passes), as SSE; ends when the pipeline closes.
    A client that falls `max_pending` events behind loses the oldest (the pipeline never waits for it).
    If reading the pipeline's events fails, the feed's last event is `error` (one line) and the log says
    why; the client then knows to reconnect rather than wait."""
    queue: asyncio.Queue = asyncio.Queue(max_pending)

    def put(item: dict | None) -> None:
        if queue.full():
            queue.get_nowait()  # the oldest goes: a slow client never holds the pipeline
        queue.put_nowait(item)

    async def pump() -> None:
        try:
            async for message in api.events(max_pending=max_pending):
                put(message.to_json())
        except Exception as e:
            log.exception("live event feed failed")
            put({"type": "error", "error": one_line(e)})
        finally:
            put(None)

    task = asyncio.create_task(pump(), name="sse-pump")
    try:
        yield b": connected\n\n"
        while True:
            try:
                data = await asyncio.wait_for(queue.get(), keepalive)
            except TimeoutError:
                yield b": keepalive\n\n"
                continue
            if data is None:
                return
            if data["type"] == "error" or keep(data):
                yield frame(data["type"], data)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
