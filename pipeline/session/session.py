"""`OmniSession`: a live Qwen2.5-Omni context that grows chunk by chunk and answers at any moment.

Plain PyTorch, no Ray: the model actor wraps one session per stream. Each `append(chunk)` runs
preprocess -> encode -> compress (operators/) and prefills the kept tokens at their original TMRoPE
positions; `ask`, `ask_stream` and `score` fork a question off the live context and roll it back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import torch

from omnisift.counts import TokenCounts
from omnisift.loading import DEFAULT_MODEL, DEFAULT_SYSTEM_PROMPT, OmniModel, load_model
from operators import Compression, Encoder, Preprocessor
from operators.chunk_encoder import StageTimes
from operators.chunks import CompressedChunk
from pipeline.messages import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_QUESTION_TOKENS, GenerationSettings
from pipeline.session.answer import AnswerDecoder, sync_every_for
from pipeline.session.batch import prefill_batch
from pipeline.session.budget import context_budget
from pipeline.session.context import LiveContext
from pipeline.session.decoding import IncrementalText, device_generator, stop_ids
from pipeline.session.prompt import Mode, PromptLayout
from streams.chunk import CHUNK_SECONDS, AVChunk


@dataclass(frozen=True, kw_only=True)
class ChunkTimings(TokenCounts):
    """What one chunk cost per stage (seconds) and what was kept."""

    index: int
    times: StageTimes
    prefill: float
    cache_tokens: int

    @property
    def preprocess(self) -> float:
        return self.times.preprocess

    @property
    def encode(self) -> float:
        return self.times.encode

    @property
    def compress(self) -> float:
        return self.times.compress


@dataclass
class OmniSession:
    """A live context over one stream. Build it with `OmniSession.from_pretrained`."""

    model: OmniModel
    compression: Compression = field(default_factory=Compression)
    window_seconds: float | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    min_pixels: int | None = None
    max_pixels: int | None = None  # None: the processor's own bound, capped at DEFAULT_MAX_PIXELS
    window_tokens: int | None = None  # None: what the model's context leaves (`budget.window_tokens`)
    max_question_tokens: int = DEFAULT_MAX_QUESTION_TOKENS
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS  # the longest answer planned for (the context budget)
    last_timings: ChunkTimings | None = field(default=None, init=False)

    @classmethod
    def from_pretrained(
        cls, model: str = DEFAULT_MODEL, compressor: str = "omnisift", retention: float | None = None,
        window_seconds: float | None = None, device: str | None = None, dtype: str | torch.dtype | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT, *, rho_video: float | None = None,
        rho_audio: float | None = None, selector: str | None = None, min_pixels: int | None = None,
        max_pixels: int | None = None, window_tokens: int | None = None, local_files_only: bool = False,
        **compressor_options,
    ) -> OmniSession:
        """Load the model and start an empty live context.

        `retention` (over audio + video tokens) or `rho_video`/`rho_audio` (fractions dropped) set the
        compression; `window_seconds` (and `window_tokens`) bound the context for streams with no end;
        `max_pixels` the frame size (and so the tokens per frame). A window whose worst case passes the
        model's context is refused (`pipeline.session.budget`).
        """
        compression = Compression.of(compressor, retention, rho_video, rho_audio, compressor_options)
        # A compressor that runs VGAS needs a selector: loading fails early, naming the missing keys.
        loaded = load_model(model, selector=selector, device=device, dtype=dtype,
                            compress=compression.needs_selector, local_files_only=local_files_only)
        return cls.with_compression(loaded, compression, window_seconds, system_prompt, min_pixels=min_pixels,
                                    max_pixels=max_pixels, window_tokens=window_tokens)

    @classmethod
    def from_model(
        cls, model: OmniModel, compressor: str = "omnisift", retention: float | None = None,
        window_seconds: float | None = None, system_prompt: str = DEFAULT_SYSTEM_PROMPT, *,
        rho_video: float | None = None, rho_audio: float | None = None, min_pixels: int | None = None,
        max_pixels: int | None = None, window_tokens: int | None = None, **compressor_options,
    ) -> OmniSession:
        """An empty live context over an already loaded model (several sessions can share one model)."""
        compression = Compression.of(compressor, retention, rho_video, rho_audio, compressor_options)
        return cls.with_compression(model, compression, window_seconds, system_prompt, min_pixels=min_pixels,
                                    max_pixels=max_pixels, window_tokens=window_tokens)

    @classmethod
    def with_compression(cls, model: OmniModel, compression: Compression, window_seconds: float | None = None,
                         system_prompt: str = DEFAULT_SYSTEM_PROMPT, **settings) -> OmniSession:
        """An empty live context over a loaded model with an already checked `Compression`; `settings` are
        the other fields (pixels, token window, question and answer lengths)."""
        if compression.needs_selector and model.thinker.compressor is None:
            raise ValueError(f"compressor {compression.compressor!r} needs a VGAS selector and the model has none")
        return cls(model, compression, window_seconds, system_prompt, **settings)

    def __post_init__(self) -> None:
        if self.window_seconds is not None and self.window_seconds < CHUNK_SECONDS:
            raise ValueError(f"window_seconds must be at least {CHUNK_SECONDS}, got {self.window_seconds}")
        self.chunk_encoder = self.compression.chunk_encoder(self.model, self.min_pixels, self.max_pixels)
        self.budget = context_budget(
            self.model.thinker.config, self.model.processor, self.compression, window_seconds=self.window_seconds,
            max_pixels=self.preprocessor.size["longest_edge"], min_pixels=self.preprocessor.size["shortest_edge"],
            system_prompt=self.system_prompt, max_question_tokens=self.max_question_tokens,
            max_new_tokens=self.max_new_tokens)
        self.budget.check()
        self.context: LiveContext | None = None
        self.layout: PromptLayout | None = None
        # One KV cache: appends and questions from different threads take turns.
        self._lock = threading.RLock()

    @property
    def preprocessor(self) -> Preprocessor:
        return self.chunk_encoder.preprocessor

    @property
    def encoder(self) -> Encoder:
        return self.chunk_encoder.encoder

    # ---- the live context -------------------------------------------------------------------

    def _start(self, mode: Mode) -> None:
        self.layout = PromptLayout.build(self.model.processor, self.system_prompt, mode)
        ids, positions = self.layout.prefix()
        window = None if self.window_seconds is None else math.ceil(self.window_seconds / CHUNK_SECONDS)
        self.context = LiveContext(self.model.thinker, ids, positions, self.layout.av_start, window,
                                   stride_chunks=max(1, (window or 4) // 4),
                                   window_tokens=self.window_tokens or self.budget.window_tokens)
        self.mode = mode

    def append(self, chunk: AVChunk) -> CompressedChunk:
        """Encode, compress and prefill one chunk into the live context."""
        with self._lock:
            compressed = self.chunk_encoder.process(chunk)
            prefill = self.append_compressed(compressed)
            self.last_timings = ChunkTimings(
                **vars(compressed.counts), index=chunk.index, times=self.chunk_encoder.last_times,
                prefill=prefill, cache_tokens=len(self.context))
            return compressed

    def append_compressed(self, compressed: CompressedChunk) -> float:
        """Prefill a chunk compressed elsewhere (an encoder actor) into the live context; the seconds the
        prefill took (returned, not stored, so a caller never reads another thread's append)."""
        with self._lock:
            self._ensure_started_for(compressed)
            start = time.perf_counter()
            self.context.append(compressed)
            return time.perf_counter() - start

    def _ensure_started_for(self, compressed: CompressedChunk) -> None:
        if self.context is None:
            has_v, has_a = compressed.video_before > 0, compressed.audio_before > 0
            self._start(Mode.AUDIO_VIDEO if has_v and has_a else Mode.VIDEO if has_v else Mode.AUDIO)

    def reset(self) -> None:
        """Forget the stream: empty context, fresh compressor state."""
        with self._lock:
            self.context = None
            self.chunk_encoder.reset()

    def context_positions(self) -> torch.Tensor:
        """[3, L] TMRoPE positions of the cached tokens (prefix, then the kept audio-video tokens)."""
        self._ensure_started()
        return self.context.positions()

    def _ensure_started(self) -> None:
        if self.context is None:
            self._start(Mode.AUDIO_VIDEO)

    # ---- questions ----------------------------------------------------------------------------

    def _question_logits(self, question: str, extra: list[int] | None = None) -> tuple[torch.Tensor, int]:
        """The question (and `extra` tokens) appended to the context: the logits [len(extra) + 1, V] that
        predict each `extra` token and the token after them, and the last position."""
        self._ensure_started()
        end = self.context.segment_end if self.context.segment_end is not None else self.layout.av_start
        ids, positions = self.layout.question(question, end, self.max_question_tokens)
        if extra:
            start = int(positions[0, -1]) + 1
            ids = torch.cat([ids, torch.tensor(extra)])
            positions = torch.cat([positions, torch.arange(start, start + len(extra)).expand(3, -1)], dim=1)
        logits = self.context.forward_embeds(self.context.embed(ids), positions, logits=len(extra or ()) + 1)
        return logits, int(positions[0, -1])

    @torch.inference_mode()
    def score(self, question: str, answer: str) -> float:
        """Log-likelihood (natural log, summed over tokens) of `answer` given the live context and question."""
        answer_ids = self.layout_tokens(answer)
        with self._lock:
            return self._score(question, answer_ids)

    def _score(self, question: str, answer_ids: list[int]) -> float:
        self._ensure_started()
        mark = self.context.fork()
        try:
            logits, _ = self._question_logits(question, answer_ids)
            predicting = logits[:-1].float().log_softmax(-1)  # [n_answer, V]
            target = torch.tensor(answer_ids, device=predicting.device)
            return float(predicting.gather(1, target.unsqueeze(1)).sum())
        finally:
            self.context.rollback(mark)

    @torch.inference_mode()
    def score_options(self, question: str, answers: Sequence[str]) -> list[float]:
        """`score(question, a)` for each answer `a`, with the question run once: every answer is scored on
        top of the question's KV (a multiple-choice question costs one question forward, not one per option)."""
        answer_ids = [self.layout_tokens(a) for a in answers]
        if not all(answer_ids):
            raise ValueError("score_options: an answer has no tokens")
        with self._lock:
            self._ensure_started()
            mark = self.context.fork()
            try:
                logits, last = self._question_logits(question)
                first = logits[-1].float().log_softmax(-1)  # [V]: the answer's first token
                asked = self.context.fork()
                out = []
                for ids in answer_ids:
                    total = float(first[ids[0]])
                    if len(ids) > 1:
                        positions = torch.arange(last + 1, last + len(ids)).expand(3, -1)  # [3, n - 1]
                        rest = self.context.forward_embeds(self.context.embed(torch.tensor(ids[:-1])), positions,
                                                           logits=len(ids) - 1).float().log_softmax(-1)
                        target = torch.tensor(ids[1:], device=rest.device).unsqueeze(1)
                        total += float(rest.gather(1, target).sum())
                        self.context.rollback(asked)
                    out.append(total)
                return out
            finally:
                self.context.rollback(mark)

    def layout_tokens(self, text: str) -> list[int]:
        """Token ids of plain text."""
        return self.model.processor.tokenizer(text, add_special_tokens=False)["input_ids"]

    def ask(self, question: str, max_new_tokens: int | None = None, settings: GenerationSettings | None = None,
            **generation) -> str:
        """Answer `question` from the live context as it is now. Give `settings`, or the keyword options
        they are made from (`pipeline.messages.GenerationSettings`)."""
        return "".join(self.ask_stream(question, max_new_tokens, settings, **generation))

    def ask_stream(self, question: str, max_new_tokens: int | None = None,
                   settings: GenerationSettings | None = None, **generation) -> Iterator[str]:
        """Yield the answer's text pieces as they are generated; the context is restored afterwards.
        Give `settings`, or the keyword options they are made from. With `settings.timeout`, generation
        stops when it passes and AnswerTimeout (a TimeoutError) is raised after the pieces so far."""
        settings = settings or GenerationSettings.of(max_new_tokens, **generation)
        deadline = None if settings.timeout is None else time.monotonic() + settings.timeout
        with self._lock:  # held while this generator runs: this stream's chunks wait for the answer
            answer = self.start_answer(question, settings, deadline=deadline)
            try:
                while not answer.done:
                    answer.step()
                    yield from answer.pieces()
            finally:
                answer.close()
            answer.raise_if_late()

    def start_answer(self, question: str, settings: GenerationSettings, *, deadline: float | None = None,
                     sync_every: int | None = None) -> AnswerDecoder:
        """Append `question` to the live context and return the decoder of its answer (one token per step).
        The caller owns the context until `close()`: nothing else may append to it meanwhile (`ask_stream`
        holds the lock; the model actor's scheduler runs one job of a stream at a time). `deadline` is on
        `time.monotonic()`."""
        self._ensure_started()
        mark = self.context.fork()
        try:
            logits, position = self._question_logits(question)
        except BaseException:
            self.context.rollback(mark)
            raise
        tokenizer, device = self.model.processor.tokenizer, self.context.device
        return AnswerDecoder(
            self.context, settings, IncrementalText(tokenizer), stop_ids(tokenizer, self.model.thinker), mark,
            position, logits[-1], device_generator(settings.seed, device),
            sync_every=sync_every or sync_every_for(device), deadline=deadline)


def append_compressed_batch(sessions: Sequence[OmniSession], chunks: Sequence[CompressedChunk]) -> float:
    """Prefill chunks[i] into sessions[i] (distinct sessions over one model) in one batched forward
    (`pipeline.session.batch`), each at the positions it would take alone; the seconds it took."""
    if len({id(s) for s in sessions}) != len(sessions):
        raise ValueError("a batched prefill takes at most one chunk per session")
    with ExitStack() as locks:
        for session in sorted(sessions, key=id):  # one order for every caller: no lock-order deadlock
            locks.enter_context(session._lock)
        for session, chunk in zip(sessions, chunks, strict=True):
            session._ensure_started_for(chunk)
        start = time.perf_counter()
        prefill_batch([s.context for s in sessions], chunks)
        return time.perf_counter() - start
