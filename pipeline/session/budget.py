"""How many tokens a live context holds at worst, and whether that fits the model.

A stream's context is the prompt prefix, the kept tokens of every chunk in its window, and one question
with its answer. At the real model's sizes a frame is hundreds of tokens (a 640x480 frame is 391, a 1080p
frame 2691), so a window of minutes can pass the 32,768 positions Qwen2.5-Omni was trained for. The worst
case is computed before anything runs, from what bounds it:

    tokens per frame   the processor's `max_pixels` (frames are resized to at most that many pixels, 28 x 28
                       per token after the 2 x 2 merge), or less when the source caps the frame size
    kept per chunk     the compressor's most-kept counts at those frames (`Compressor.most_kept`)
    window             `window_seconds` / 2 chunks
    prompt, question   the prefix as the model's chat template makes it; the question cap plus the answer

A config whose worst case passes the model's context is refused in one line naming the numbers. The
context also slides by tokens (`window_tokens`: what is left of the model's context once the prefix and one
question are counted), so an underestimate never reaches the model either.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from omnisift.token_layout import (
    AUDIO_TOKENS_PER_CHUNK,
    DEFAULT_MAX_PIXELS,
    GRID_STEPS_PER_CHUNK,
    PATCH_SIDE,
    PIXELS_PER_TOKEN,
)
from operators import COMPRESSORS, Compression
from pipeline.messages import DEFAULT_MAX_QUESTION_TOKENS
from streams.chunk import CHUNK_SECONDS

QUESTION_TEMPLATE_TOKENS = 16  # the closing eos tokens and the chat turn around a question (at most)


def frame_tokens(max_pixels: int, min_pixels: int | None = None, frame_size: tuple[int, int] | None = None) -> int:
    """Tokens of one frame at most: any frame under `max_pixels`, or one of `frame_size` (width, height)
    when the source caps its frames, resized the way the model's processor does (`smart_resize`)."""
    bound = max_pixels // PIXELS_PER_TOKEN
    if frame_size is None:
        return bound
    from transformers.models.qwen2_vl.image_processing_qwen2_vl import smart_resize

    width, height = frame_size
    h, w = smart_resize(height, width, factor=PATCH_SIDE, min_pixels=min_pixels or PIXELS_PER_TOKEN,
                        max_pixels=max_pixels)
    return min(bound, (h // PATCH_SIDE) * (w // PATCH_SIDE))


def effective_max_pixels(max_pixels: int | None, processor_max: int) -> int:
    """The frame-size cap in force: the one given, else the processor's own capped at DEFAULT_MAX_PIXELS."""
    return max_pixels if max_pixels is not None else min(processor_max, DEFAULT_MAX_PIXELS)


def kept_per_chunk(compression: Compression, tokens_per_frame: int, has_audio: bool = True) -> int:
    """Tokens one 2-second chunk leaves in the context at most, under `compression`."""
    n_audio = AUDIO_TOKENS_PER_CHUNK if has_audio else 0
    ratios = compression.ratios_for(tokens_per_frame, has_audio=has_audio)
    video, audio = COMPRESSORS[compression.compressor].most_kept(tokens_per_frame, n_audio, ratios,
                                                                 dict(compression.options))
    return GRID_STEPS_PER_CHUNK * video + audio


@dataclass(frozen=True)
class ContextBudget:
    """The worst case of one stream's context, in tokens."""

    max_context: int  # the model's (its text config's max_position_embeddings)
    prefix: int  # system prompt and user header up to the media
    question: int  # a question at its cap, the template around it, and the longest answer
    tokens_per_frame: int
    kept_per_chunk: int
    window_chunks: int | None  # None: no window in seconds (the token window alone bounds the context)

    @property
    def worst_case(self) -> int | None:
        if self.window_chunks is None:
            return None
        return self.prefix + self.window_chunks * self.kept_per_chunk + self.question

    @property
    def window_tokens(self) -> int:
        """The most chunk tokens the context may hold so that a question still fits the model."""
        return self.max_context - self.prefix - self.question

    def check(self, who: str = "") -> None:
        """One-line ValueError, naming the numbers and `who` (e.g. "stream 'door'"), if the worst case
        passes the model's context."""
        worst = self.worst_case
        if worst is None or worst <= self.max_context:
            return
        fits = max(0, self.window_tokens // max(1, self.kept_per_chunk))
        raise ValueError(
            f"{who + ': ' if who else ''}context budget of {worst} tokens ({self.window_chunks} chunks x "
            f"{self.kept_per_chunk} kept tokens at {self.tokens_per_frame} per frame + {self.prefix} prompt + "
            f"{self.question} question) is more than the model's {self.max_context}; lower window_seconds to "
            f"{fits * CHUNK_SECONDS:g} or less, or max_pixels, or retention")


def window_chunks(window_seconds: float | None) -> int | None:
    """Chunks a window of `window_seconds` holds (None: no window)."""
    return None if window_seconds is None else math.ceil(window_seconds / CHUNK_SECONDS)


def context_budget(config, processor, compression: Compression, *, window_seconds: float | None,
                   max_pixels: int, min_pixels: int | None = None, frame_size: tuple[int, int] | None = None,
                   has_audio: bool = True, system_prompt: str | None = None,
                   max_question_tokens: int = DEFAULT_MAX_QUESTION_TOKENS, max_new_tokens: int = 64) -> ContextBudget:
    """The worst case of a stream's context for a model's thinker `config` and `processor` (neither
    needs the weights)."""
    from omnisift.loading import DEFAULT_SYSTEM_PROMPT
    from pipeline.session.prompt import Mode, PromptLayout

    layout = PromptLayout.build(processor, system_prompt or DEFAULT_SYSTEM_PROMPT, Mode.AUDIO_VIDEO)
    tokens = frame_tokens(max_pixels, min_pixels, frame_size)
    return ContextBudget(
        max_context=config.get_text_config().max_position_embeddings,
        prefix=len(layout.prefix()[0]),
        question=max_question_tokens + QUESTION_TEMPLATE_TOKENS + max_new_tokens,
        tokens_per_frame=tokens,
        kept_per_chunk=kept_per_chunk(compression, tokens, has_audio),
        window_chunks=window_chunks(window_seconds),
    )
