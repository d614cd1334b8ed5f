"""A running source: producer -> Chunker -> bounded queue -> consumer, as an explicit state machine.

States and allowed transitions:

    CREATED -> OPENING -> RUNNING -> ENDED (finite stream done)
                 |          |  ^
                 |          v  |
                 |      RECONNECTING (live source lost; backoff with jitter, then a new producer)
                 v          |
               FAILED <-----+        and any state -> CLOSING -> CLOSED (close())

A *producer factory* (`Callable[[], Producer]`) opens the media each time it is called (first start and
every reconnect); the producer is an iterable of `streams.events` with `has_video`, `has_audio`, `origin`
attributes and a `close()` that asks its loop to stop. Tests pass fakes (blocking, failing, finite).

Backpressure: the chunk queue holds `queue_size` chunks. Policy `drop_oldest` (live sources) discards the
oldest queued chunk when full and counts it; `block` (files read as fast as possible) makes the source wait.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from .chunk import AVChunk
from .chunker import Chunker
from .config import Backoff
from .errors import SourceError, StreamError
from .events import Discontinuity, Event

log = logging.getLogger(__name__)


class State(StrEnum):
    CREATED = "created"
    OPENING = "opening"
    RUNNING = "running"
    RECONNECTING = "reconnecting"
    ENDED = "ended"
    FAILED = "failed"
    CLOSING = "closing"
    CLOSED = "closed"


TRANSITIONS: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.OPENING, State.CLOSING}),
    State.OPENING: frozenset({State.RUNNING, State.FAILED, State.CLOSING}),
    State.RUNNING: frozenset({State.RECONNECTING, State.ENDED, State.FAILED, State.CLOSING}),
    State.RECONNECTING: frozenset({State.RUNNING, State.FAILED, State.CLOSING}),
    State.ENDED: frozenset({State.CLOSING}),
    State.FAILED: frozenset({State.CLOSING}),
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}

# States the reader thread moves to on its own; once closing has begun they are ignored.
_READER_STATES = frozenset({State.RUNNING, State.RECONNECTING, State.ENDED, State.FAILED})


class Producer(Protocol):
    has_video: bool
    has_audio: bool
    origin: float | None

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


ProducerFactory = Callable[[], Producer]


@dataclass(frozen=True)
class SourceStats:
    """A source's counters. The zmq_* ones are zero for other sources; `streams.zmq_source` defines them."""

    state: str
    chunks_emitted: int  # chunks the Chunker produced
    chunks_delivered: int  # chunks the consumer took
    chunks_dropped: int  # chunks discarded by drop_oldest because the consumer was behind
    malformed_messages: int  # zmq: every refused message (the sum of `refused`)
    oversized_messages: int  # zmq: refused["oversized"]
    out_of_order_messages: int  # zmq: refused["out_of_order"]
    decode_errors: int  # undecodable packets skipped
    reconnects: int
    lag_seconds: float  # wall age of the last delivered chunk's newest data when the consumer took it
    queue_depth: int
    refused: dict[str, int] = field(default_factory=dict)  # zmq: refused messages by reason, every reason listed
    clock_resyncs: int = 0  # zmq: a kind's clock moved to a confirmed run of messages (restart or jump)
    peer_disconnects: int = 0  # zmq: producer connections closed (libzmq closes one on a part over the limit)
    timestamp_glitches: int = 0  # Chunker: single mis-stamped samples absorbed (ChunkerStats.glitches)
    bad_timestamps: int = 0  # Chunker: events refused for a non-finite or huge timestamp (ChunkerStats.bad_times)


@dataclass(frozen=True)
class StepResult:
    """What one `Source.step()` did."""

    events: int = 0
    chunks: int = 0
    done: bool = False


class ChunkQueue:
    """Bounded chunk queue with a named drop policy; end/error markers bypass the bound."""

    def __init__(self, maxsize: int, policy: str) -> None:
        if policy not in ("drop_oldest", "block"):
            raise ValueError(f"unknown drop policy {policy!r}")
        self.maxsize, self.policy = maxsize, policy
        self._items: deque = deque()
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, chunk: AVChunk, stop: threading.Event) -> None:
        with self._cond:
            if self.policy == "block":
                while self._chunks() >= self.maxsize and not stop.is_set():
                    self._cond.wait(0.1)
            elif self._chunks() >= self.maxsize:
                for i, item in enumerate(self._items):
                    if isinstance(item, AVChunk):
                        del self._items[i]
                        self.dropped += 1
                        break
            self._items.append(chunk)
            self._cond.notify_all()

    def put_marker(self, marker: object) -> None:
        with self._cond:
            self._items.append(marker)
            self._cond.notify_all()

    def get(self, timeout: float | None) -> object:
        with self._cond:
            if not self._cond.wait_for(lambda: bool(self._items), timeout):
                raise TimeoutError
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def _chunks(self) -> int:
        return sum(isinstance(i, AVChunk) for i in self._items)

    def __len__(self) -> int:
        with self._cond:
            return self._chunks()


_END = object()


class Source:
    """A source of `AVChunk`s running in its own thread. Use `open_source(config)` to build one from a config."""

    def __init__(
        self,
        name: str,
        factory: ProducerFactory,
        *,
        live: bool,
        queue_size: int = 8,
        drop_policy: str | None = None,
        reconnect: Backoff | None = None,
        loop: bool = False,
        chunker_options: dict | None = None,
        seed: int | None = None,
        describe: str | None = None,
    ) -> None:
        self.name = name
        self.live = live
        self.describe = describe or name
        self._factory = factory
        self._policy = drop_policy or ("drop_oldest" if live else "block")
        self._queue = ChunkQueue(queue_size, self._policy)
        self._reconnect = reconnect
        self._loop = loop
        self._chunker_options = chunker_options or {}
        self._rng = random.Random(seed)
        self._state = State.CREATED
        self._state_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._producer: Producer | None = None
        self._events: Iterator[Event] | None = None
        self.chunker: Chunker | None = None
        self._emitted = self._delivered = self._reconnects = 0
        self._lag = 0.0
        self._last_data_wall = 0.0
        self._error: BaseException | None = None
        self._decode_errors_closed = 0

    def __repr__(self) -> str:
        return f"Source({self.describe}, state={self._state.value})"

    # -- state --------------------------------------------------------------------------------------------

    @property
    def state(self) -> State:
        return self._state

    def _to(self, new: State) -> None:
        with self._state_lock:
            if self._state in (State.CLOSING, State.CLOSED) and new in _READER_STATES:
                return  # the reader thread finished while close() runs: closing wins
            if new not in TRANSITIONS[self._state]:
                raise StreamError(f"{self.describe}: illegal transition {self._state.value} -> {new.value}")
            log.debug("%s: %s -> %s", self.describe, self._state.value, new.value)
            self._state = new

    # -- lifecycle ----------------------------------------------------------------------------------------

    def open(self) -> None:
        """Open the producer synchronously (so a missing file or device raises here) without starting a thread."""
        self._to(State.OPENING)
        try:
            self._attach(self._factory())
        except BaseException:
            self._to(State.FAILED)
            raise
        opts = dict(self._chunker_options)
        opts.setdefault("origin", self._producer.origin)
        self.chunker = Chunker(self.name, video=self._producer.has_video, audio=self._producer.has_audio, **opts)
        self._to(State.RUNNING)

    def start(self) -> Source:
        """Open, then run the read loop in a daemon thread."""
        self.open()
        self._thread = threading.Thread(target=self.run, name=f"source-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _attach(self, producer: Producer) -> None:
        self._producer = producer
        self._events = iter(producer)

    def run(self) -> None:
        """Loop `step()` until the stream ends, fails or is closed."""
        try:
            while not self._stop.is_set():
                if self.step().done:
                    break
        except Exception as e:  # a bug here must not leave the consumer waiting on a dead thread
            log.error("%s: read loop failed", self.describe, exc_info=True)
            self._fail_now(SourceError(f"{self.describe}: read loop failed: {type(e).__name__}: {e}"))
        finally:
            if self._producer is not None and self._stop.is_set():
                self._producer.close()

    def step(self) -> StepResult:
        """Pull one event from the producer and feed it to the Chunker; handles end, loop and reconnect."""
        if self._state is not State.RUNNING:
            return StepResult(done=True)
        try:
            event = next(self._events)
        except StopIteration:
            return self._producer_ended(None)
        except Exception as e:  # noqa: BLE001 - any producer failure is a lost source
            return self._producer_ended(e)
        if not isinstance(event, Discontinuity):
            self._last_data_wall = time.time()
        chunks = self.chunker.push(event)
        self._enqueue(chunks)
        return StepResult(events=1, chunks=len(chunks))

    def _enqueue(self, chunks: Iterable[AVChunk]) -> None:
        for c in chunks:
            self._emitted += 1
            self._queue.put(c, self._stop)

    def _producer_ended(self, error: BaseException | None) -> StepResult:
        self._count_decode_errors()
        if self._stop.is_set():
            return StepResult(done=True)
        if error is None and self._loop:
            self._attach_new(Discontinuity(gap=False, reason="loop"))
            return StepResult()
        if error is None and not self.live:
            self._finish(None)
            return StepResult(done=True)
        if self._reconnect is None:
            self._finish(error or SourceError(f"{self.describe}: stream ended"), ended=error is None)
            return StepResult(done=True)
        lost_at = self._last_data_wall or time.time()
        log.warning("%s: lost (%s); reconnecting", self.describe, error or "end of stream")
        self._to(State.RECONNECTING)
        attempt = 0
        while not self._stop.is_set():
            if self._reconnect.max_attempts is not None and attempt >= self._reconnect.max_attempts:
                self._finish(SourceError(f"{self.describe}: gave up after {attempt} reconnect attempts"))
                return StepResult(done=True)
            if self._stop.wait(self._reconnect.delay(attempt, self._rng)):
                break
            attempt += 1
            try:
                producer = self._factory()
            except Exception as e:  # noqa: BLE001
                log.info("%s: reconnect attempt %d failed: %s", self.describe, attempt, e)
                continue
            self._attach(producer)
            self._reconnects += 1
            gap = Discontinuity(gap=True, wall_gap=time.time() - lost_at, reason="reconnect")
            self._enqueue(self.chunker.push(gap))
            self._to(State.RUNNING)
            return StepResult()
        return StepResult(done=True)

    def _attach_new(self, d: Discontinuity) -> None:
        try:
            self._attach(self._factory())
        except Exception as e:  # noqa: BLE001
            self._finish(e)
            return
        self._enqueue(self.chunker.push(d))

    def _finish(self, error: BaseException | None, *, ended: bool = False) -> None:
        if error is None or ended:
            self._enqueue(self.chunker.flush())
            self._to(State.ENDED)
            self._queue.put_marker(_END)
        else:
            self._error = error
            self._enqueue(self.chunker.flush())  # what was decoded before the failure is still delivered
            self._to(State.FAILED)
            self._queue.put_marker(error)

    def _fail_now(self, error: SourceError) -> None:
        """FAILED without flushing the Chunker (it may be what failed); the consumer gets `error`."""
        if self._state in (State.RUNNING, State.RECONNECTING):
            self._error = error
            self._to(State.FAILED)
            self._queue.put_marker(error)

    def _count_decode_errors(self) -> None:
        self._decode_errors_closed += getattr(self._producer, "decode_errors", 0)

    def close(self, timeout: float = 3.0) -> None:
        """Stop the producer and the thread; returns within about `timeout` seconds even if the producer hangs."""
        if self._state in (State.CLOSING, State.CLOSED):
            return
        self._stop.set()
        self._to(State.CLOSING)
        if self._producer is not None:
            try:
                self._producer.close()
            except Exception:  # closing is best effort
                log.debug("%s: producer close failed", self.describe, exc_info=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("%s: reader thread still busy after %.1fs; abandoned (daemon)", self.describe, timeout)
        self._queue.put_marker(_END)
        self._to(State.CLOSED)

    # -- consuming ----------------------------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> AVChunk | None:
        """Next chunk; None at end of stream. Raises the source's error if it failed, TimeoutError on timeout."""
        item = self._queue.get(timeout)
        if item is _END:
            self._queue.put_marker(_END)  # stay ended for later calls
            return None
        if isinstance(item, BaseException):
            self._queue.put_marker(item)
            raise item
        self._delivered += 1
        self._lag = max(0.0, time.time() - item.capture_time)
        return item

    def __iter__(self) -> Iterator[AVChunk]:
        while (chunk := self.get()) is not None:
            yield chunk

    def stats(self) -> SourceStats:
        p = self._producer
        refused = dict(getattr(p, "refused", {}))
        chunker = self.chunker.stats if self.chunker is not None else None
        return SourceStats(
            state=self._state.value,
            chunks_emitted=self._emitted,
            chunks_delivered=self._delivered,
            chunks_dropped=self._queue.dropped,
            malformed_messages=sum(refused.values()),
            oversized_messages=refused.get("oversized", 0),
            out_of_order_messages=refused.get("out_of_order", 0),
            decode_errors=self._decode_errors_closed
            + (getattr(p, "decode_errors", 0) if self._state in (State.RUNNING, State.RECONNECTING) else 0),
            reconnects=self._reconnects,
            lag_seconds=self._lag,
            queue_depth=len(self._queue),
            refused=refused,
            clock_resyncs=getattr(p, "clock_resyncs", 0),
            peer_disconnects=getattr(p, "peer_disconnects", 0),
            timestamp_glitches=chunker.glitches if chunker else 0,
            bad_timestamps=chunker.bad_times if chunker else 0,
        )

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
