"""`ModelScheduler`: the one place a model actor's forwards run, so that an answer on one stream does not
stall the other streams' chunks.

Callers (the actor's threads) submit jobs and wait on them; one thread calls `step()` in a loop (`run`).
Each stream's jobs run in the order they were submitted, one at a time; different streams interleave. One
step does, for every stream whose first job is waiting:

    chunk appends   all of them in ONE batched forward (`append_compressed_batch`), or one forward each
                    with `batch_prefill=False` (today's one-at-a-time path, kept for comparison)
    one-shot calls  (a standing question's scores, anything short) run, one each
    answers         a question's first step appends the question (its prefill); every later step
                    chooses ONE token of each answer in progress, their forwards batched when
                    `batch_prefill` (one decode forward for all streams' answers), else one each

So a 64-token answer on stream A delays stream B's next chunk by at most one decode step of each answer
in progress, not the whole answer. A stream's own chunks wait while its answer runs: an answer is
generated from the context as it was when its question reached the front of that stream's queue, i.e.
after every chunk the actor received for the stream before the question, and before any received after
it (those are appended once the answer ends; none is dropped). The same holds for one-shot calls.

A question with a deadline (`GenerationSettings.timeout`, counted from `submit`) stops generating when it
passes, also while it still waits in its stream's queue; `AnswerJob.cancel()` stops it at the next step.
Either way the model is free for the next job at once (the test counts the decode steps run).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from operators.chunks import CompressedChunk
from pipeline.messages import GenerationSettings
from pipeline.session.answer import AnswerDecoder, AnswerEnd, AnswerTimeout
from pipeline.session.batch import forward_batch
from pipeline.session.session import OmniSession, append_compressed_batch

_END = object()  # the last item of an answer's pieces
log = logging.getLogger(__name__)


@dataclass(eq=False)
class Job:
    """One unit of work for one stream; `future` gets its result (or exception)."""

    stream: str
    session: OmniSession
    future: Future = field(default_factory=Future, init=False)


@dataclass(eq=False)
class AppendJob(Job):
    """Prefill a compressed chunk; the result is (prefill seconds, cache tokens, chunks in context, chunks in the
    forward that prefilled it, this one included)."""

    chunk: CompressedChunk


@dataclass(eq=False)
class CallJob(Job):
    """Run `fn()` on the model thread (short: a standing question's scores); the result is its return."""

    fn: Callable[[], Any]


@dataclass(eq=False)
class AnswerJob(Job):
    """Generate an answer; pieces of text arrive on `pieces()` as they are decoded, the result is the text."""

    question: str
    settings: GenerationSettings
    deadline: float | None = None  # on time.monotonic(), set at submit from settings.timeout
    decoder: AnswerDecoder | None = None
    cancelled: bool = False
    end: AnswerEnd | None = field(default=None, init=False)  # why it ended; set before its future resolves
    text: list[str] = field(default_factory=list, init=False)  # the pieces so far
    _pieces: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, init=False)

    def cancel(self) -> None:
        """Stop generating at the next step (or never start); thread-safe."""
        self.cancelled = True
        if self.decoder is not None:
            self.decoder.cancel()

    def pieces(self, timeout: float | None = None) -> Iterator[str]:
        """The answer's text pieces as they are generated (blocks between them); raises the job's error."""
        while (item := self._pieces.get(timeout=timeout)) is not _END:
            yield item
        self.future.result()


@dataclass
class SchedulerCounters:
    """What the model thread has run (the tests order events by these, never by wall-clock)."""

    steps: int = 0
    prefill_forwards: int = 0
    chunks_prefilled: int = 0
    decode_forwards: int = 0  # forwards that fed answer tokens (a batched one counts once)
    tokens: int = 0  # tokens of finished answers
    answers: int = 0  # answers finished (any end)
    timed_out: int = 0
    cancelled: int = 0
    calls: int = 0


@dataclass(frozen=True)
class StepResult:
    """What one `step()` did."""

    appended: int = 0
    decoded: int = 0  # answers that advanced one token (or started: the question's prefill)
    called: int = 0

    @property
    def idle(self) -> bool:
        return not (self.appended or self.decoded or self.called)


class ModelScheduler:
    """Per-stream FIFO queues of jobs, run by `step()` (see the module docstring). Thread-safe submits."""

    def __init__(self, *, batch_prefill: bool = True, max_batch: int = 16) -> None:
        self.batch_prefill = batch_prefill
        self.max_batch = max_batch
        self.counters = SchedulerCounters()
        self._queues: dict[str, deque[Job]] = {}
        self._wake = threading.Condition()

    # ---- callers' side ---------------------------------------------------------------------------

    def submit(self, job: Job) -> Job:
        if isinstance(job, AnswerJob) and job.settings.timeout is not None and job.deadline is None:
            job.deadline = time.monotonic() + job.settings.timeout
        with self._wake:
            self._queues.setdefault(job.stream, deque()).append(job)
            self._wake.notify()
        return job

    def append(self, stream: str, session: OmniSession, chunk: CompressedChunk) -> AppendJob:
        return self.submit(AppendJob(stream, session, chunk))

    def call(self, stream: str, session: OmniSession, fn: Callable[[], Any]) -> CallJob:
        return self.submit(CallJob(stream, session, fn))

    def ask(self, stream: str, session: OmniSession, question: str, settings: GenerationSettings) -> AnswerJob:
        return self.submit(AnswerJob(stream, session, question, settings))

    def pending(self) -> int:
        with self._wake:
            return sum(len(q) for q in self._queues.values())

    # ---- the model thread --------------------------------------------------------------------------

    def run(self, stop: threading.Event, idle_wait: float = 1.0) -> None:
        """Step until `stop` is set, sleeping on the queue when there is nothing to do."""
        while not stop.is_set():
            try:
                idle = self.step().idle
            except Exception:  # a bug here must not end the model thread (every asker would wait forever)
                log.exception("model scheduler step failed")
                stop.wait(0.5)
                continue
            if idle:
                with self._wake:
                    if not any(self._queues.values()):
                        self._wake.wait(idle_wait)

    def step(self) -> StepResult:
        """One round over the streams whose first job waits: appends, calls, one token of each answer."""
        with self._wake:
            heads = [q[0] for q in self._queues.values() if q]
        self.counters.steps += 1
        appends = [j for j in heads if isinstance(j, AppendJob)][: self.max_batch]
        calls = [j for j in heads if isinstance(j, CallJob)]
        answers = [j for j in heads if isinstance(j, AnswerJob)]
        self._run_appends(appends)
        for job in calls:
            self._run(job, job.fn)
            self.counters.calls += 1
        decoded = self._run_answers(answers)
        return StepResult(len(appends), decoded, len(calls))

    def _done(self, job: Job, result: Any = None, error: BaseException | None = None) -> None:
        with self._wake:
            q = self._queues[job.stream]
            q.popleft()
            if not q:
                del self._queues[job.stream]
        if error is not None:
            job.future.set_exception(error)
        else:
            job.future.set_result(result)
        if isinstance(job, AnswerJob):
            job._pieces.put(_END)

    def _run(self, job: Job, fn: Callable[[], Any]) -> None:
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - the caller's error, raised in its thread
            self._done(job, error=e)
        else:
            self._done(job, result)

    def _run_appends(self, jobs: list[AppendJob]) -> None:
        if not jobs:
            return
        if self.batch_prefill and len(jobs) > 1:
            try:
                seconds = append_compressed_batch([j.session for j in jobs], [j.chunk for j in jobs])
            except Exception as e:  # noqa: BLE001 - every chunk of the batch failed with it
                for job in jobs:
                    self._done(job, error=e)
                return
            self.counters.prefill_forwards += 1
            for job in jobs:
                self._done(job, (seconds / len(jobs), len(job.session.context), len(job.session.context.chunks),
                                 len(jobs)))
        else:
            for job in jobs:
                self._run(job, lambda j=job: self._append_one(j))
                self.counters.prefill_forwards += 1
        self.counters.chunks_prefilled += len(jobs)

    @staticmethod
    def _append_one(job: AppendJob) -> tuple[float, int, int, int]:
        seconds = job.session.append_compressed(job.chunk)
        return seconds, len(job.session.context), len(job.session.context.chunks), 1

    def _run_answers(self, jobs: list[AnswerJob]) -> int:
        """Start waiting answers (question prefill) and advance the running ones by one token."""
        running, fed = [], []
        for job in jobs:
            if job.decoder is None:
                self._start(job)
            elif (inp := job.decoder.next_input()) is not None:
                running.append(job)
                fed.append(inp)
        try:
            self._decode(running, fed)
        except Exception as e:  # noqa: BLE001 - every answer of the forward failed with it
            for job in running:
                job.decoder.close()
                self._done(job, error=e)
            return len(jobs)
        for job in jobs:
            if job.decoder is not None:
                self._emit(job)
        return len(jobs)

    def _decode(self, running: list[AnswerJob], fed: list[tuple]) -> None:
        """The forwards of one token of each running answer: one batched forward, or one each."""
        if not running:
            return
        if self.batch_prefill:
            logits = forward_batch([j.decoder.context for j in running], [e for e, _ in fed], [p for _, p in fed],
                                   logits=True)
            self.counters.decode_forwards += 1
        else:
            logits = [j.decoder.context.forward_embeds(e, p, logits=1)[-1] for j, (e, p) in zip(running, fed,
                                                                                                strict=True)]
            self.counters.decode_forwards += len(running)
        for job, out in zip(running, logits, strict=True):
            job.decoder.take(out)

    def _start(self, job: AnswerJob) -> None:
        if job.cancelled or (job.deadline is not None and time.monotonic() >= job.deadline):
            self._finish(job, AnswerEnd.CANCELLED if job.cancelled else AnswerEnd.TIMEOUT)
            return
        try:
            job.decoder = job.session.start_answer(job.question, job.settings, deadline=job.deadline)
        except Exception as e:  # noqa: BLE001 - e.g. a question past the context: the asker's error
            self._done(job, error=e)
            return
        if job.cancelled:
            job.decoder.cancel()

    def _emit(self, job: AnswerJob) -> None:
        decoder = job.decoder
        for piece in decoder.pieces():
            job.text.append(piece)
            job._pieces.put(piece)
        if decoder.done:
            decoder.close()
            self._finish(job, decoder.end)

    def _finish(self, job: AnswerJob, end: AnswerEnd) -> None:
        c, steps = self.counters, 0 if job.decoder is None else job.decoder.steps
        c.answers += 1
        c.tokens += steps
        c.timed_out += end is AnswerEnd.TIMEOUT
        c.cancelled += end is AnswerEnd.CANCELLED
        job.end = end
        if end is AnswerEnd.TIMEOUT:
            self._done(job, error=AnswerTimeout(
                f"answer stopped at its {job.settings.timeout:g}s timeout after {steps} tokens"))
        else:
            self._done(job, "".join(job.text))
