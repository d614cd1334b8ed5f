"""`ModelWorker`: one `OmniSession` per stream over one loaded model, in the model actor: appends
compressed chunks, answers questions, gives the yes-probability of standing questions.

Every forward runs on one model thread, through `pipeline.session.scheduler.ModelScheduler`: the actor's
threads submit jobs and wait. Chunks of several streams waiting together are prefilled in one batched
forward (`batch_prefill`), and an answer advances one token per scheduler step, so a long answer on one
stream delays other streams' chunks by a decode step, not by the whole answer. A question's `timeout`
(in its `GenerationSettings`) stops its generation in the model when it passes.

Per-stream state is created on first use, so a restarted actor (its constructor run again) simply
starts the stream's context afresh: the stream goes on.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pipeline.config import ModelConfig
from pipeline.messages import Answer, ChunkMeta, ChunkStats, GenerationSettings, KeptLayout
from pipeline.ray.encoder_worker import CompressedChunkReply
from pipeline.ray.models import compression, load_omni, model_spec
from pipeline.ray.placement import bound_gpu_memory
from pipeline.ray.process import HeapTrim, set_threads, where


@dataclass
class _StreamContext:
    session: Any
    last_meta: ChunkMeta | None = None  # of the last chunk applied
    chunks: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    applied_to: Any = None  # the session's LiveContext that chunk went into (a reset session makes a new one)
    layout: KeptLayout | None = None  # what the compressor kept of the last chunk applied (a few KB)

    def holds(self, meta: ChunkMeta) -> bool:
        """Whether the chunk is already in the context: the session's context is still the one the last
        chunk went into, and this chunk comes from the same source process (a restarted source numbers
        its chunks from 0 again) with an index at most that chunk's."""
        last = self.last_meta
        return (last is not None and self.applied_to is not None and self.session.context is self.applied_to
                and meta.pid == last.pid and meta.index <= last.index)

    def applied(self, meta: ChunkMeta) -> None:
        """Remember the chunk just appended to the session's context."""
        self.last_meta, self.applied_to = meta, self.session.context
        self.chunks += 1


class UnknownStreamError(ValueError):
    """A request named a stream the pipeline does not have."""


class ModelWorker:
    """One `OmniSession` per stream over one loaded model. Thread-safe: callers' threads submit to the
    scheduler, whose one thread runs the model (`batch_prefill=False`: one forward per chunk and per answer
    token, the path before batching, kept for comparison)."""

    YES, NO = "Yes", "No"

    def __init__(self, spec: ModelConfig | Mapping[str, Any], *, model=None, num_cpus: float | None = None,
                 num_gpus: float | None = None,
                 batch_prefill: bool | None = None) -> None:
        from pipeline.session.scheduler import ModelScheduler

        self.spec = model_spec(spec)
        self.compression = compression(self.spec)
        set_threads(num_cpus)
        bound_gpu_memory(num_gpus, self.spec.device)  # its share of the card, before anything is allocated
        self.model = model if model is not None else load_omni(self.spec, part="language")
        self.contexts: dict[str, _StreamContext] = {}
        self._lock = threading.Lock()
        self._asking: dict[str, Any] = {}  # ticket -> the answer job of an `ask` in progress
        self._called_off: set[str] = set()  # tickets cancelled before their `ask` arrived
        batching = self.spec.model_batch  # `batch_prefill` given here overrides the spec's (benchmarks compare both)
        if batch_prefill is None:
            batch_prefill = batching.batch_prefill
        self.scheduler = ModelScheduler(batch_prefill=batch_prefill, max_batch=batching.max_batch)
        self.heap = HeapTrim()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.scheduler.run, args=(self._stop,), name="model", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the model thread (jobs still queued are not run)."""
        self._stop.set()
        self._thread.join(timeout=30)

    def scheduler_stats(self) -> dict[str, int]:
        """What the model thread has run: steps, prefill and decode forwards, chunks, answer tokens, answers
        finished, timed out, cancelled; and the jobs waiting now."""
        return {**asdict(self.scheduler.counters), "pending": self.scheduler.pending()}

    def _new_session(self):
        from pipeline.session import OmniSession

        s = self.spec
        return OmniSession.with_compression(self.model, self.compression, s.window_seconds, min_pixels=s.min_pixels,
                                            max_pixels=s.max_pixels, max_new_tokens=s.max_new_tokens,
                                            max_question_tokens=s.max_question_tokens)

    def _context(self, stream: str, create: bool = True) -> _StreamContext:
        with self._lock:
            ctx = self.contexts.get(stream)
            if ctx is None:
                if not create:
                    raise UnknownStreamError(f"no context for stream {stream!r} yet")
                ctx = self.contexts[stream] = _StreamContext(self._new_session())
            return ctx

    def append(self, meta: ChunkMeta, encoded: CompressedChunkReply) -> ChunkStats:
        """Prefill one compressed chunk into its stream's context. Idempotent: a chunk the context already
        holds (sent again after a call that failed but had run) is skipped, its stats marked `duplicate`."""
        started = time.perf_counter()
        ctx = self._context(meta.stream)
        c = encoded.compressed
        with ctx.lock:
            duplicate = ctx.holds(meta)
            prefill, batch = 0.0, 0
            if duplicate:
                cache, in_context = len(ctx.session.context), len(ctx.session.context.chunks)
            else:
                prefill, cache, in_context, batch = self.scheduler.append(meta.stream, ctx.session, c).future.result()
                ctx.applied(meta)
                ctx.layout = encoded.layout
        self.heap.after_work()
        pad = self.spec.min_append_seconds - (time.perf_counter() - started)
        if pad > 0 and not duplicate:
            time.sleep(pad)
        t = encoded.times
        return ChunkStats(
            **vars(c.counts), stream=meta.stream, index=meta.index, media_time=meta.start, duration=meta.duration,
            capture_time=meta.capture_time, lag=max(0.0, time.time() - meta.capture_time),
            preprocess=t.preprocess, encode=t.encode, compress=t.compress, prefill=prefill, cache_tokens=cache,
            chunks_in_context=in_context, dropped=meta.dropped, reconnects=meta.reconnects, model_pid=os.getpid(),
            encoder_pid=encoded.pid, duplicate=duplicate, encode_batch=encoded.batch, prefill_batch=batch,
        )

    def ask(self, stream: str, question: str, settings: GenerationSettings | None = None, *,
            ticket: str | None = None, **generation) -> Answer:
        """Answer from the stream's live context as it is now. `settings`, or the keyword options they are
        made from; `max_new_tokens` defaults to the spec's. `ticket`: a name the caller may cancel the
        answer by (`cancel_ask`), from another call (this one blocks until the answer ends; Ray cannot
        cancel a running call of a threaded actor)."""
        ctx = self._context(stream)
        started = time.perf_counter()
        if generation.get("max_new_tokens") is None:
            generation["max_new_tokens"] = self.spec.max_new_tokens
        job = self.scheduler.ask(stream, ctx.session, question, settings or GenerationSettings.of(**generation))
        if ticket is not None:
            with self._lock:
                self._asking[ticket] = job
                if ticket in self._called_off:
                    self._called_off.discard(ticket)
                    job.cancel()
        try:
            text = job.future.result()
        finally:
            if ticket is not None:
                with self._lock:
                    self._asking.pop(ticket, None)
        return self._answer(ctx, stream, question, text, time.perf_counter() - started, job.end)

    def cancel_ask(self, ticket: str) -> None:
        """Stop the answer of the `ask` call holding `ticket` (its asker went away or gave up); one not
        arrived yet is stopped when it does, one already ended is left alone."""
        with self._lock:
            job = self._asking.get(ticket)
            if job is None:
                self._called_off.add(ticket)
                if len(self._called_off) > 1024:  # tickets of asks that never came: forget one
                    self._called_off.pop()
                return
        job.cancel()

    def yes_probability(self, stream: str, question: str) -> float:
        """p("Yes") / (p("Yes") + p("No")) as the answer to `question` on the live context."""
        session = self._context(stream).session
        job = self.scheduler.call(stream, session, lambda: (session.score(question, self.YES),
                                                            session.score(question, self.NO)))
        yes, no = job.future.result()
        return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, no - yes))))

    def _answer(self, ctx: _StreamContext, stream: str, question: str, text: str, latency: float,
                end: str | None = None) -> Answer:
        m = ctx.last_meta
        media = None if m is None else m.start + m.duration
        lag = 0.0 if m is None else max(0.0, time.time() - m.capture_time)
        chunks = 0 if ctx.session.context is None else len(ctx.session.context.chunks)
        return Answer(stream, question, text, media, lag, latency, chunks, str(end or "stop"))

    def kept_layout(self, stream: str) -> KeptLayout | None:
        """What was kept of the stream's newest chunk in the context, for the dashboard's picture. Kept
        here rather than sent to the driver with every chunk: the model actor already receives it, answers
        while a chunk is prefilled (the encoder takes one call at a time), and it is asked only when a
        picture is wanted."""
        ctx = self.contexts.get(stream)
        return None if ctx is None else ctx.layout

    def ask_stream(self, stream: str, question: str, settings: GenerationSettings):
        """The answer's text pieces as they are generated (a Ray streaming generator), then the `Answer`."""
        ctx = self._context(stream)
        started = time.perf_counter()
        job = self.scheduler.ask(stream, ctx.session, question, settings)
        try:
            yield from job.pieces()
        finally:
            job.cancel()  # the consumer went away (or the answer ended: then this does nothing)
        text = job.future.result()
        yield self._answer(ctx, stream, question, text, time.perf_counter() - started, job.end)

    def remove(self, stream: str) -> None:
        with self._lock:
            self.contexts.pop(stream, None)

    def cache_tokens(self) -> dict[str, int]:
        return {s: (0 if c.session.context is None else len(c.session.context)) for s, c in list(self.contexts.items())}

    def where(self) -> dict:
        return where()
