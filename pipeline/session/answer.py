"""`AnswerDecoder`: one answer generated on a live context one token at a time, so a scheduler can
interleave its steps with other streams' work (`pipeline.session.scheduler`) and stop it at a deadline.

The question was appended to the context when the decoder was made (`OmniSession.start_answer`); each
step chooses a token on the device and feeds it back; `close()` crops the question and answer off the
context again. Tokens come to the host every `sync_every` steps (one copy for several tokens): only then are
stop tokens seen and text decoded, so on a GPU up to `sync_every - 1` forwards after a stop token are wasted
(and cropped with the rest), in exchange for no host synchronisation per token. On the CPU a sync costs
nothing and `sync_every` is 1. Greedy answers do not depend on `sync_every`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import torch

from pipeline.messages import GenerationSettings
from pipeline.session.context import LiveContext
from pipeline.session.decoding import IncrementalText, next_token

GPU_SYNC_EVERY = 8


class AnswerEnd(StrEnum):
    """Why an answer ended."""

    STOP = "stop"  # the model ended it (a stop token)
    LENGTH = "length"  # max_new_tokens reached
    TIMEOUT = "timeout"  # its deadline passed
    CANCELLED = "cancelled"  # cancelled by its asker


class AnswerTimeout(TimeoutError):
    """An answer's deadline passed while it was being generated; generation stopped there."""


def sync_every_for(device: torch.device) -> int:
    """Tokens between host copies: 1 on the CPU (a copy is free), GPU_SYNC_EVERY elsewhere."""
    return 1 if device.type == "cpu" else GPU_SYNC_EVERY


@dataclass(eq=False)
class AnswerDecoder:
    """One answer in progress. Drive it with `step()` (or `next_input()` + `take()` when a scheduler runs
    the forward of several answers in one batch) until `done`; read text with `pieces()`; `close()` always."""

    context: LiveContext
    settings: GenerationSettings
    text: IncrementalText
    stop: set[int]
    mark: int  # context length before the question (what `close` crops back to)
    position: int  # TMRoPE position of the last token fed (all three components equal for text)
    logits: torch.Tensor  # [V] predicting the next token
    generator: torch.Generator | None = None
    sync_every: int = 1
    deadline: float | None = None  # on `clock`
    clock: Callable[[], float] = time.monotonic
    steps: int = 0  # tokens chosen
    forwards: int = 0  # decode forwards run (the question's prefill not counted)
    end: AnswerEnd | None = None
    cancelled: bool = False  # set from any thread by `cancel()`; seen at the next step
    _pending: list[torch.Tensor] = field(default_factory=list)  # chosen tokens still on the device
    _pieces: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.end is not None

    def cancel(self) -> None:
        """Stop at the next step (thread-safe: a flag)."""
        self.cancelled = True

    def next_input(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Choose the next token; the (embeds [1, D], positions [3, 1]) that feed it to the model, or None
        when the answer has ended (no forward needed)."""
        if self.end is None and (self.cancelled or self._late()):
            self._finish(AnswerEnd.CANCELLED if self.cancelled else AnswerEnd.TIMEOUT)
        if self.end is not None:
            return None
        token = next_token(self.logits, self.settings, self.generator)  # 0-d, on the device
        self._pending.append(token)
        self.steps += 1
        if self.steps >= self.settings.max_new_tokens:
            self._finish(AnswerEnd.LENGTH)
            return None
        if len(self._pending) >= self.sync_every:
            self._flush()
            if self.end is not None:
                return None
        self.position += 1
        return self.context.embed(token.view(1)), torch.full((3, 1), self.position)

    def take(self, logits: torch.Tensor) -> None:
        """The logits [V] the forward of `next_input()` gave."""
        self.logits = logits
        self.forwards += 1

    def step(self) -> None:
        """One token: choose it and run its forward on the context."""
        fed = self.next_input()
        if fed is not None:
            self.take(self.context.forward_embeds(*fed, logits=1)[-1])

    def pieces(self) -> list[str]:
        """The text decoded since the last call."""
        out, self._pieces = self._pieces, []
        return out

    def close(self) -> None:
        """Crop the question and the answer off the context (the live context goes on as if unasked)."""
        self.context.rollback(self.mark)

    def raise_if_late(self) -> None:
        """AnswerTimeout if the answer ended at its deadline."""
        if self.end is AnswerEnd.TIMEOUT:
            raise AnswerTimeout(f"answer stopped at its {self.settings.timeout:g}s timeout after {self.steps} tokens")

    def _late(self) -> bool:
        return self.deadline is not None and self.clock() >= self.deadline

    def _finish(self, end: AnswerEnd) -> None:
        self._flush()
        self._end(end)

    def _end(self, end: AnswerEnd) -> None:
        if self.end is None:
            self.end = end
            rest = self.text.finish()
            if rest:
                self._pieces.append(rest)

    def _flush(self) -> None:
        """Bring the pending tokens to the host (one copy), end at a stop token, decode the text."""
        if not self._pending:
            return
        tokens = torch.stack(self._pending).tolist()
        self._pending = []
        for token in tokens:
            if token in self.stop:
                self._end(AnswerEnd.STOP)
                return
            piece = self.text.push(token)
            if piece:
                self._pieces.append(piece)
