"""`OmniSession`: a live Qwen2.5-Omni context that grows chunk by chunk and answers at any moment.

Plain PyTorch, no Ray: the model actor wraps one session per stream. Each `append(chunk)` runs
preprocess -> encode -> compress (operators/) and prefills the kept tokens at their original TMRoPE
positions; `ask`, `ask_stream` and `score` fork a question off the live context and roll it back.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from omnisift.loading import DEFAULT_MODEL, DEFAULT_SYSTEM_PROMPT, OmniModel, load_model
from omnisift.ratios import Ratios, ratios_for_retention
from operators import COMPRESSORS, Encoder, Preprocessor, make_compressor
from operators.chunk_encoder import ChunkEncoder
from operators.chunks import CompressedChunk
from pipeline.context import LiveContext
from pipeline.prompt import Mode, PromptLayout
from streams.chunk import CHUNK_SECONDS, AVChunk


@dataclass
class ChunkTimings:
    """Seconds spent on one chunk per stage, and what was kept."""

    index: int
    preprocess: float
    encode: float
    compress: float
    prefill: float
    video_before: int
    video_after: int
    audio_before: int
    audio_after: int
    cache_tokens: int


@dataclass
class GenerationSettings:
    """How answers are decoded: greedy unless `do_sample`."""

    max_new_tokens: int = 64
    do_sample: bool = False
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    seed: int | None = None


@dataclass
class OmniSession:
    """A live context over one stream. Build it with `OmniSession.from_pretrained`."""

    model: OmniModel
    compressor_name: str = "omnisift"
    ratios: Ratios | None = None
    retention: float | None = None
    window_seconds: float | None = None
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    min_pixels: int | None = None
    max_pixels: int | None = None
    compressor_options: dict = field(default_factory=dict)
    last_timings: ChunkTimings | None = field(default=None, init=False)

    @classmethod
    def from_pretrained(
        cls, model: str = DEFAULT_MODEL, compressor: str = "omnisift", retention: float | None = None,
        window_seconds: float | None = None, device: str | None = None, dtype: str | torch.dtype | None = None,
        system_prompt: str = DEFAULT_SYSTEM_PROMPT, *, rho_video: float | None = None,
        rho_audio: float | None = None, selector: str | None = None, min_pixels: int | None = None,
        max_pixels: int | None = None, local_files_only: bool = False, **compressor_options,
    ) -> OmniSession:
        """Load the model and start an empty live context.

        `retention` (over audio + video tokens) or `rho_video`/`rho_audio` (fractions dropped) set the
        compression; `window_seconds` bounds the context for streams with no end.
        """
        check_compression(compressor, retention, rho_video, rho_audio, compressor_options)
        # A compressor that runs VGAS needs a selector: loading fails early, naming the missing keys.
        loaded = load_model(model, selector=selector, device=device, dtype=dtype,
                            compress=COMPRESSORS[compressor].needs_selector, local_files_only=local_files_only)
        return cls.from_model(loaded, compressor, retention, window_seconds, system_prompt, rho_video=rho_video,
                              rho_audio=rho_audio, min_pixels=min_pixels, max_pixels=max_pixels,
                              **compressor_options)

    @classmethod
    def from_model(
        cls, model: OmniModel, compressor: str = "omnisift", retention: float | None = None,
        window_seconds: float | None = None, system_prompt: str = DEFAULT_SYSTEM_PROMPT, *,
        rho_video: float | None = None, rho_audio: float | None = None, min_pixels: int | None = None,
        max_pixels: int | None = None, **compressor_options,
    ) -> OmniSession:
        """An empty live context over an already loaded model (several sessions can share one model)."""
        check_compression(compressor, retention, rho_video, rho_audio, compressor_options)
        if COMPRESSORS[compressor].needs_selector and model.thinker.compressor is None:
            raise ValueError(f"compressor {compressor!r} needs a VGAS selector and the model has none")
        return cls(model, compressor, Ratios.or_release(rho_video, rho_audio), retention, window_seconds,
                   system_prompt, min_pixels, max_pixels, dict(compressor_options))

    def __post_init__(self) -> None:
        if self.window_seconds is not None and self.window_seconds < CHUNK_SECONDS:
            raise ValueError(f"window_seconds must be at least {CHUNK_SECONDS}, got {self.window_seconds}")
        self.ratios = self.ratios or Ratios.or_release()
        self.chunk_encoder = ChunkEncoder(
            Preprocessor(self.model.processor.video_processor, self.model.device, self.min_pixels, self.max_pixels),
            Encoder(self.model.thinker),
            self._compressor_for,
        )
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
                                   stride_chunks=max(1, (window or 4) // 4))
        self.mode = mode

    def _compressor_for(self, tokens_per_frame: int):
        ratios = self.ratios
        if self.retention is not None:
            ratios = ratios_for_retention(self.retention, tokens_per_frame, rho_audio=self.ratios.rho_audio)
        return make_compressor(self.compressor_name, ratios, self.model.thinker.compressor,
                               **self.compressor_options)

    def append(self, chunk: AVChunk) -> CompressedChunk:
        """Encode, compress and prefill one chunk into the live context."""
        with self._lock:
            compressed = self.chunk_encoder.process(chunk)
            prefill = self.append_compressed(compressed)
            times = self.chunk_encoder.last_times
            self.last_timings = ChunkTimings(
                chunk.index, times.preprocess, times.encode, times.compress, prefill,
                compressed.video_before, compressed.video_after, compressed.audio_before, compressed.audio_after,
                len(self.context),
            )
            return compressed

    def append_compressed(self, compressed: CompressedChunk) -> float:
        """Prefill a chunk compressed elsewhere (an encoder actor) into the live context; the seconds the
        prefill took (returned, not stored, so a caller never reads another thread's append)."""
        with self._lock:
            if self.context is None:
                has_v, has_a = compressed.video_before > 0, compressed.audio_before > 0
                self._start(Mode.AUDIO_VIDEO if has_v and has_a else Mode.VIDEO if has_v else Mode.AUDIO)
            start = time.perf_counter()
            self.context.append(compressed)
            return time.perf_counter() - start

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
        """Logits [n, V] of the question (and `extra` tokens) appended to the context, and the last position."""
        self._ensure_started()
        end = self.context.segment_end if self.context.segment_end is not None else self.layout.av_start
        ids, positions = self.layout.question(question, end)
        if extra:
            start = int(positions[0, -1]) + 1
            ids = torch.cat([ids, torch.tensor(extra)])
            positions = torch.cat([positions, torch.arange(start, start + len(extra)).expand(3, -1)], dim=1)
        return self.context.forward_embeds(self.context.embed(ids), positions), int(positions[0, -1])

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
            predicting = logits[-len(answer_ids) - 1: -1].float().log_softmax(-1)  # [n_answer, V]
            target = torch.tensor(answer_ids, device=predicting.device)
            return float(predicting.gather(1, target.unsqueeze(1)).sum())
        finally:
            self.context.rollback(mark)

    def layout_tokens(self, text: str) -> list[int]:
        """Token ids of plain text."""
        return self.model.processor.tokenizer(text, add_special_tokens=False)["input_ids"]

    def ask(self, question: str, max_new_tokens: int = 64, **generation) -> str:
        """Answer `question` from the live context as it is now."""
        return "".join(self.ask_stream(question, max_new_tokens=max_new_tokens, **generation))

    def ask_stream(self, question: str, max_new_tokens: int = 64, **generation) -> Iterator[str]:
        """Yield the answer's text pieces as they are generated; the context is restored afterwards."""
        settings = GenerationSettings(max_new_tokens=max_new_tokens, **generation)
        with self._lock:  # held while this generator runs: chunks wait for the answer
            yield from self._generate(question, settings)

    def _generate(self, question: str, settings: GenerationSettings) -> Iterator[str]:
        self._ensure_started()
        mark = self.context.fork()
        tokenizer = self.model.processor.tokenizer
        stop = _stop_ids(tokenizer, self.model.thinker)
        generator = None if settings.seed is None else torch.Generator().manual_seed(settings.seed)
        try:
            logits, position = self._question_logits(question)
            generated: list[int] = []
            shown = ""
            for _ in range(settings.max_new_tokens):
                token = _next_token(logits[-1], settings, generator)
                if token in stop:
                    break
                generated.append(token)
                text = tokenizer.decode(generated, skip_special_tokens=True)
                if not text.endswith("\ufffd") and len(text) > len(shown):
                    yield text[len(shown):]
                    shown = text
                position += 1
                logits = self.context.forward_embeds(
                    self.context.embed(torch.tensor([token])), torch.tensor([[position]] * 3))
        finally:
            self.context.rollback(mark)


def check_compression(compressor: str, retention: float | None = None, rho_video: float | None = None,
                      rho_audio: float | None = None, options: dict[str, Any] | None = None) -> None:
    """One-line ValueErrors for a retention given together with ratios, an unknown compressor, or bad
    compressor options, raised when a session is created rather than at its first chunk.

    The options are checked the one way every caller gets: `make_compressor` builds the compressor once
    (option names against its constructors, then the constructor's checks of the values) and it is
    thrown away; the session builds its own at the first chunk, once the frame size is known."""
    if retention is not None and (rho_video is not None or rho_audio is not None):
        raise ValueError("give either retention or rho_video/rho_audio, not both")
    make_compressor(compressor, Ratios.or_release(rho_video, rho_audio), None, **(options or {}))


def _stop_ids(tokenizer, thinker) -> set[int]:
    ids = {tokenizer.convert_tokens_to_ids(t) for t in ("<|im_end|>", "<|endoftext|>")}
    eos = thinker.generation_config.eos_token_id if thinker.generation_config else None
    ids |= set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
    return {i for i in ids if isinstance(i, int) and i >= 0}


def _next_token(logits: torch.Tensor, settings: GenerationSettings, generator: torch.Generator | None) -> int:
    """Greedy, or temperature / top-k / top-p sampling of logits [V]."""
    if not settings.do_sample:
        return int(logits.argmax())
    logits = logits.float() / max(settings.temperature, 1e-5)
    if settings.top_k > 0:
        kth = torch.topk(logits, min(settings.top_k, logits.numel())).values[-1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = logits.softmax(-1)
    if settings.top_p < 1.0:
        sorted_probs, order = probs.sort(descending=True)
        outside = sorted_probs.cumsum(0) - sorted_probs > settings.top_p
        probs = probs.clone()
        probs[order[outside]] = 0.0
        probs /= probs.sum()
    return int(torch.multinomial(probs.cpu(), 1, generator=generator))
