"""The live context's token layout, cut from the model's own chat template.

A live stream is one user turn whose media part grows: the template is rendered once with a video
placeholder and cut there. The prefix (system prompt, user header, `<|vision_bos|><|audio_bos|>`) is
prefilled once; a question closes the audio-video segment (`<|audio_eos|><|vision_eos|>`), adds its
text and the assistant header, and is rolled back after the answer. Special tokens sit on both sides
of each cut, so tokenising the pieces gives the tokens of the whole rendered prompt.

TMRoPE positions follow `get_rope_index`: prefix text at 0..n-1, both bos tokens at n, the first
audio-video position `st = n + 1`; both eos tokens at the end of the last uncompressed block, text on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import torch

from pipeline.messages import DEFAULT_MAX_QUESTION_TOKENS, check_question, check_question_tokens

_PLACEHOLDER = "<|VIDEO|>"
_PROBE = "Q"


class Mode(StrEnum):
    """Which modalities the stream carries; fixes the segment's bos/eos tokens."""

    AUDIO_VIDEO = "audio_video"
    VIDEO = "video"
    AUDIO = "audio"


@dataclass(frozen=True)
class PromptLayout:
    """Token ids and positions of the fixed parts of a live prompt."""

    text_prefix: list[int]  # system prompt and user header, up to the media
    bos: list[int]  # the segment's opening special tokens
    eos: list[int]  # the segment's closing special tokens
    question_template: tuple[list[int], list[int]]  # text tokens around the question
    tokenizer: object

    @classmethod
    def build(cls, processor, system_prompt: str, mode: Mode) -> PromptLayout:
        """Cut the processor's chat template around the media placeholder."""
        tok = processor.tokenizer
        media = {"type": "audio"} if mode is Mode.AUDIO else {"type": "video"}
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
            {"role": "user", "content": [media, {"type": "text", "text": _PROBE}]},
        ]
        text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        placeholder = tok.audio_token if mode is Mode.AUDIO else _PLACEHOLDER
        head, tail = text.split(placeholder)
        open_tok, close_tok = ((tok.audio_bos_token, tok.audio_eos_token) if mode is Mode.AUDIO
                               else (tok.vision_bos_token, tok.vision_eos_token))
        if not head.endswith(open_tok) or not tail.startswith(close_tok):
            raise ValueError("the chat template does not wrap media in bos/eos tokens as Qwen2.5-Omni does")
        head, tail = head[: -len(open_tok)], tail[len(close_tok):]
        bos, eos = [open_tok], [close_tok]
        if mode is Mode.AUDIO_VIDEO:
            bos, eos = [open_tok, tok.audio_bos_token], [tok.audio_eos_token, close_tok]
        before_q, after_q = tail.split(_PROBE)
        ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        return cls(ids(head), tok.convert_tokens_to_ids(bos), tok.convert_tokens_to_ids(eos),
                   (ids(before_q), ids(after_q)), tok)

    @property
    def av_start(self) -> int:
        """`st`: position of the first audio-video token."""
        return len(self.text_prefix) + 1

    def prefix(self) -> tuple[torch.Tensor, torch.Tensor]:
        """ids [n + len(bos)] and positions [3, n + len(bos)] of the prefix."""
        n = len(self.text_prefix)
        positions = list(range(n)) + [n] * len(self.bos)
        return torch.tensor(self.text_prefix + self.bos), torch.tensor(positions).expand(3, -1)

    def question(self, question: str, segment_end: int,
                 max_tokens: int = DEFAULT_MAX_QUESTION_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
        """ids and positions [3, n] closing the segment and asking `question`, eos at `segment_end`. A
        question over `max_tokens` tokens (the context budget's) is refused in one line, a very long one
        before it is tokenized (`pipeline.messages.check_question`)."""
        before, after = self.question_template
        asked = self.tokenizer(check_question(question, max_tokens), add_special_tokens=False)["input_ids"]
        check_question_tokens(len(asked), max_tokens)
        text = before + asked + after
        positions = [segment_end] * len(self.eos) + list(range(segment_end + 1, segment_end + 1 + len(text)))
        return torch.tensor(self.eos + text), torch.tensor(positions).expand(3, -1)
