"""`MicroBatcher`: concurrent calls gathered into batches, for an actor that serves many streams.

A threaded actor (`max_concurrency` > 1) runs each call on a thread of its own; each thread `submit`s its
item and blocks until the item's result is back. The first waiting thread leads: it waits until the
batch is full or `max_wait` has passed since the oldest waiting item came, runs the batch (one call of
`run`), hands every item its result and lets the next leader go. While a batch runs, the items coming in
wait for the next one, so a busy actor batches without waiting and a lone stream waits at most
`max_wait` (not at all once it is the only key the batcher has seen: nothing else could join it).

Items carry a key (the stream): a batch holds at most one item per key, so each stream's items run one
batch after the other, the earliest first (by `order`, e.g. capture time: a threaded actor's calls may
start in any order). Pure Python threading, no Ray, so it is tested directly.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Slot:
    item: Any
    key: Hashable
    order: Any
    came: float
    done: bool = False
    result: Any = None
    error: BaseException | None = None


@dataclass
class BatchStats:
    """What the batcher has run: batches, items, the largest batch, and the batches of more than one."""

    batches: int = 0
    items: int = 0
    largest: int = 0
    multi: int = 0  # batches of two or more items
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches had it


class MicroBatcher(Generic[T, R]):
    """Gathers concurrent `submit(item, key)` calls into batches of at most `max_batch` items, one per
    key, waiting at most `max_wait` seconds for a batch to fill.

    `run(items)` returns one result per item, in order: a value, or an exception that is raised in that
    item's caller only. An exception raised by `run` itself reaches every caller of the batch."""

    def __init__(self, run: Callable[[list[T]], Sequence[R | BaseException]], *, max_batch: int,
                 max_wait: float, order: Callable[[T], Any] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, got {max_batch}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be at least 0 seconds, got {max_wait}")
        self.run, self.max_batch, self.max_wait = run, max_batch, max_wait
        self.order = order or (lambda item: 0)
        self.clock = clock
        self._cond = threading.Condition()
        self._pending: list[_Slot] = []  # in the order they came
        self._running = False
        self._keys: set[Hashable] = set()  # keys submitted and not forgotten: how full a batch can get
        self._stats = BatchStats()

    def submit(self, item: T, key: Hashable) -> R:
        """The item's result, once a batch with it has run (this thread may be the one that runs it)."""
        with self._cond:
            slot = _Slot(item, key, self.order(item), self.clock())
            self._pending.append(slot)
            self._keys.add(key)
            self._cond.notify_all()
            while not slot.done:
                if self._running:
                    self._cond.wait()
                    continue
                batch = self._take_when_ready()
                if batch is None:
                    continue
                self._running = True
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
        if slot.error is not None:
            raise slot.error
        return slot.result

    def forget(self, key: Hashable) -> None:
        """A key that will not come again (a removed stream): batches no longer wait for it."""
        with self._cond:
            self._keys.discard(key)
            self._cond.notify_all()

    def waiting(self) -> int:
        """Items submitted and not yet in a batch."""
        with self._cond:
            return len(self._pending)

    def stats(self) -> BatchStats:
        with self._cond:
            s = self._stats
            return BatchStats(s.batches, s.items, s.largest, s.multi, dict(s.sizes))

    def _eligible(self) -> list[_Slot]:
        """The earliest waiting item of each key (by `order`, then arrival), in the order they came, at
        most `max_batch`."""
        first: dict[Hashable, _Slot] = {}
        for slot in self._pending:
            best = first.get(slot.key)
            if best is None or slot.order < best.order:
                first[slot.key] = slot
        return sorted(first.values(), key=lambda s: s.came)[: self.max_batch]

    def _take_when_ready(self) -> list[_Slot] | None:
        """Under the lock, with no batch running: the next batch once it is full (as many items as keys
        seen, at most `max_batch`) or the oldest item has waited `max_wait`; else None after waiting a
        while (a new item or the deadline wakes the caller to look again)."""
        eligible = self._eligible()
        if not eligible:  # this caller's item is in the running batch's results already, or comes next
            self._cond.wait()
            return None
        full = len(eligible) >= min(self.max_batch, len(self._keys))
        left = eligible[0].came + self.max_wait - self.clock()
        if not full and left > 0:
            self._cond.wait(left)
            return None
        for slot in eligible:
            self._pending.remove(slot)
        return eligible

    def _run(self, batch: list[_Slot]) -> None:
        """Runs one batch outside the lock and files each item's result or exception."""
        try:
            results = list(self.run([s.item for s in batch]))
            if len(results) != len(batch):
                raise RuntimeError(f"a batch of {len(batch)} items gave {len(results)} results")
        except BaseException as e:  # noqa: BLE001 - every caller of the batch gets it
            results = [e] * len(batch)
        with self._cond:
            for slot, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    slot.error = result
                else:
                    slot.result = result
                slot.done = True
            n = len(batch)
            s = self._stats
            s.batches, s.items, s.largest = s.batches + 1, s.items + n, max(s.largest, n)
            s.multi += n > 1
            s.sizes[n] = s.sizes.get(n, 0) + 1
