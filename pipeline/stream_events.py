"""Where a running pipeline's events go: ZeroMQ PUB and the in-process subscribers behind
`OmniStream.watch`, `stats` and `events`.

Every subscriber is a bounded queue that loses its oldest item when full, so a slow consumer never
stalls the pipeline. `None` in a queue means the pipeline closed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from pipeline.stream_state import StreamState
from pipeline.workers import ChunkStats


@dataclass(frozen=True, eq=False)
class _Subscriber:
    queue: asyncio.Queue
    kinds: frozenset[str] | None  # message types wanted; None: all
    watch_id: int | None  # only this watch's evaluations (other types pass)


class EventHub:
    """Fans every event (a JSON-ready dict, and optionally the object it came from) out to ZeroMQ
    (`publish`, set while the PUB socket runs) and to the subscribers whose filter it passes."""

    def __init__(self) -> None:
        self.publish: Callable[[dict], None] | None = None
        self._subscribers: list[_Subscriber] = []

    @contextmanager
    def subscribe(self, kinds: set[str] | None = None, *, watch_id: int | None = None,
                  max_pending: int = 256) -> Iterator[asyncio.Queue]:
        """A queue that receives the events of the given types while the `with` block runs."""
        sub = _Subscriber(asyncio.Queue(max_pending), None if kinds is None else frozenset(kinds), watch_id)
        self._subscribers.append(sub)
        try:
            yield sub.queue
        finally:
            self._subscribers.remove(sub)

    def emit(self, message: dict, obj: Any = None) -> None:
        """Publish `message` and hand subscribers `obj` (stats records are rebuilt from the message,
        stream state changes are the message itself)."""
        if self.publish is not None:
            self.publish(message)
        kind = message["type"]
        item = obj if obj is not None else (message if kind == "stream" else None)
        if kind == "stats":
            item = ChunkStats(**{k: v for k, v in message.items() if k != "type"})
        for sub in list(self._subscribers):
            if sub.kinds is not None and kind not in sub.kinds:
                continue
            if sub.watch_id is not None and kind in ("watch", "alert") and message.get("watch_id") != sub.watch_id:
                continue
            put_newest(sub.queue, item)

    def set_state(self, st: StreamState, state: str, detail: str = "") -> None:
        """Put a stream in a new state and tell everyone; "failed" is final (a chunk still in flight
        that ends or errors afterwards does not hide why the stream stopped)."""
        if st.state == "failed" and state != "failed":
            return
        st.state, st.detail = state, detail
        self.emit({"type": "stream", "stream": st.spec.name, "state": state, "detail": detail, "time": time.time()})

    def close(self) -> None:
        """Tell every subscriber the pipeline closed."""
        for sub in list(self._subscribers):
            put_newest(sub.queue, None)


def put_newest(queue: asyncio.Queue, item: Any) -> None:
    """Put without waiting; a full queue loses its oldest item (slow consumers never stall the pipeline)."""
    if queue.full():
        try:
            queue.get_nowait()
        except asyncio.QueueEmpty:
            pass
    queue.put_nowait(item)
