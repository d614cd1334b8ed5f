"""What a stream does when a call to one of its actors fails: send it again, give the chunk up, or fail.

One rule for every call the stream loops make (`pipeline.ray.loops`), told apart by two settings:

    raised inside the actor      -> `on_raised`   (a chunk: LOSE it, the stream goes on; the source: FAIL)
    actor restarting/unreachable -> RETRY, until it has been so for `patience` seconds -> `on_timeout`
    actor dead for good          -> FAIL, once the same actor says so twice in a row

"Twice in a row": Ray fails the call an actor died under with ActorUnavailableError when it will
restart (measured on Ray 2.60), so one ActorDiedError could still be a restart on another Ray; the
second call settles it. A call that succeeds clears the record (`succeeded`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum


class Verdict(StrEnum):
    RETRY = "retry"  # send the same call again after a short pause
    LOSE = "lose"  # give this chunk up (counted as lost); the stream goes on
    FAIL = "fail"  # the stream fails: its source or an actor it needs is gone for good


@dataclass
class FailurePolicy:
    """The verdict on each failed call of one piece of work (a chunk's delivery, or a source's steps)."""

    patience: float  # seconds an actor may stay restarting or unreachable
    on_raised: Verdict = Verdict.LOSE
    on_timeout: Verdict = Verdict.LOSE
    clock: Callable[[], float] = time.monotonic
    why: str = field(default="", init=False)  # of the last verdict: "raised", "dead", "timeout" or "away"
    _since: float | None = field(default=None, init=False)  # when the actor became unavailable
    _died: str | None = field(default=None, init=False)  # the actor whose last call said dead for good

    @classmethod
    def for_chunk(cls, restart_wait: float, clock: Callable[[], float] = time.monotonic) -> FailurePolicy:
        """A chunk on its way to the model: lost if an actor raises on it or stays away `restart_wait`
        seconds, counted from now (when the chunk is first sent)."""
        policy = cls(restart_wait, Verdict.LOSE, Verdict.LOSE, clock)
        policy._since = clock()
        return policy

    @classmethod
    def for_source(cls, give_up: float, clock: Callable[[], float] = time.monotonic) -> FailurePolicy:
        """A stream's source actor: an error it raises ends the stream, as does being away `give_up`
        seconds, counted from its first failed call."""
        return cls(give_up, Verdict.FAIL, Verdict.FAIL, clock)

    def judge(self, actor: str, *, gone: bool, restarting: bool) -> Verdict:
        """The verdict on a failed call to `actor`: `gone` if the actor died or is restarting (rather than
        raising itself), `restarting` if Ray says it will come back."""
        if not gone:
            self.why = "raised"
            return self.on_raised
        if restarting:
            self._died = None
        elif self._died == actor:
            self.why = "dead"
            return Verdict.FAIL
        else:
            self._died = actor
        if self._since is None:
            self._since = self.clock()
        if self.clock() - self._since >= self.patience:
            self.why = "timeout"
            return self.on_timeout
        self.why = "away"
        return Verdict.RETRY

    def succeeded(self) -> None:
        """A call went through: the actor is back."""
        self._since = self._died = None
