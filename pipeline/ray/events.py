"""Where a running pipeline's events (`pipeline.messages`) go: ZeroMQ PUB and the in-process subscribers behind
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

from pipeline.messages import Message, StreamChange
from pipeline.ray.state import Status, StreamState


@dataclass(frozen=True, eq=False)
class _Subscriber:
    queue: asyncio.Queue
    kinds: frozenset[str] | None  # message types wanted; None: all
    watch_id: int | None  # only this watch's evaluations (other types pass)


class EventHub:
    """Fans every event out to ZeroMQ as JSON (`publish`, set while the PUB socket runs) and, as the
    typed message itself, to the subscribers whose filter it passes."""

    def __init__(self) -> None:
        self.publish: Callable[[dict], None] | None = None
        self.sinks: list[Callable[[dict], None]] = []  # history and webhooks (pipeline.ray.frontends); never wait
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

    def emit(self, message: Message) -> None:
        """Publish `message` as JSON and hand it to every subscriber whose filter it passes."""
        data = message.to_json()
        if self.publish is not None:
            self.publish(data)
        for sink in self.sinks:
            sink(data)
        kind = data["type"]
        for sub in list(self._subscribers):
            if sub.kinds is not None and kind not in sub.kinds:
                continue
            if sub.watch_id is not None and kind in ("watch", "alert") and message.watch_id != sub.watch_id:
                continue
            put_newest(sub.queue, message)

    def set_state(self, st: StreamState, state: Status | str, detail: str = "") -> None:
        """Put a stream in a new state and tell everyone; "failed" is final (a chunk still in flight
        that ends or errors afterwards does not hide why the stream stopped)."""
        if st.to(state, detail):
            self.emit(StreamChange(st.spec.name, str(st.state), detail, time.time()))

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
