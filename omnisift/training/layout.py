"""The token layout of one training example, as Qwen2.5-Omni lays it out (docs/design.md section 2).

Each clip's cached per-chunk vision and audio tokens go between the bos and eos tokens as
`[chunk 0 video][chunk 0 audio]...`, then the question and the answer, with TMRoPE positions (a test
checks them against `get_rope_index`); `collate` left-pads examples into a `Batch`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from omnisift.token_layout import POSITIONS_PER_SECOND


@dataclass
class ClipFeatures:
    """Cached tower outputs of one clip, chunk by chunk (what `pipeline.offline.features` stores).

    video: [G, n_p, D] tokens of every visual frame (grid step) of the clip, or None.
    audio: [A, D] audio tokens (25 per second), or None.
    chunk_steps / chunk_audio: grid steps and audio tokens of each 2-second chunk (they sum to G and A).
    grid_hw: merged-token rows and columns of a frame.
    """

    video: torch.Tensor | None
    audio: torch.Tensor | None
    chunk_steps: list[int]
    chunk_audio: list[int]
    grid_hw: tuple[int, int]


@dataclass(frozen=True)
class PromptTemplate:
    """Token ids of the fixed text around a clip, cut from the processor's chat template."""

    prefix: list[int]  # system prompt and user header
    bos: list[int]  # <|vision_bos|><|audio_bos|>
    eos: list[int]  # <|audio_eos|><|vision_eos|>
    before_question: list[int]
    after_question: list[int]  # ... <|im_start|>assistant\n
    end_of_answer: list[int]  # <|im_end|>
    video_token_id: int
    audio_token_id: int

    @classmethod
    def from_processor(cls, processor, system_prompt: str, video_token_id: int, audio_token_id: int) -> PromptTemplate:
        tok = processor.tokenizer
        conversation = [
            {"role": "system", "content": [{"type": "text", "text": system_prompt}]},
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "\x00"}]},
        ]
        text = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        head, tail = text.split("<|VIDEO|>")
        head = head.removesuffix(tok.vision_bos_token)
        tail = tail.removeprefix(tok.vision_eos_token)
        before_q, after_q = tail.split("\x00")
        ids = lambda s: tok(s, add_special_tokens=False)["input_ids"]  # noqa: E731
        bos = tok.convert_tokens_to_ids([tok.vision_bos_token, tok.audio_bos_token])
        eos = tok.convert_tokens_to_ids([tok.audio_eos_token, tok.vision_eos_token])
        return cls(ids(head), bos, eos, ids(before_q), ids(after_q), ids("<|im_end|>"),
                   video_token_id, audio_token_id)


@dataclass
class Example:
    """One laid-out sequence: ids [L], positions [3, L], labels [L] (-100 off the answer) and the
    audio/video tower outputs [N_av, D] in sequence order (they replace the placeholder ids)."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    av_features: torch.Tensor
    answer_start: int  # index of the first answer token


def av_layout(features: ClipFeatures, st: int) -> tuple[list[torch.Tensor], list[bool], torch.Tensor]:
    """Interleaved audio-video tokens of a clip: feature blocks, which are video, positions [3, N]."""
    blocks, is_video, positions = [], [], []
    rows, cols = features.grid_hw
    g0 = a0 = 0
    for steps, n_audio in zip(features.chunk_steps, features.chunk_audio, strict=True):
        if steps:
            video = features.video[g0:g0 + steps].reshape(-1, features.video.shape[-1])  # [steps * n_p, D]
            g = torch.arange(g0, g0 + steps).repeat_interleave(rows * cols)
            r = torch.arange(rows).repeat_interleave(cols).repeat(steps)
            c = torch.arange(cols).repeat(rows * steps)
            positions.append(torch.stack([st + POSITIONS_PER_SECOND * g, st + r, st + c]))
            blocks.append(video)
            is_video.append(True)
        if n_audio:
            k = torch.arange(a0, a0 + n_audio)
            positions.append((st + k).expand(3, -1))
            blocks.append(features.audio[a0:a0 + n_audio])
            is_video.append(False)
        g0, a0 = g0 + steps, a0 + n_audio
    return blocks, is_video, torch.cat(positions, dim=1)


def build_example(template: PromptTemplate, features: ClipFeatures, question_ids: list[int],
                  answer_ids: list[int] | None) -> Example:
    """Lay out `prefix, bos, [video, audio] per chunk, eos, question, assistant header, answer, <|im_end|>`.

    Positions (docs/design.md section 2): text 0..n-1, both bos tokens at n, `st = n + 1`; video token at grid
    step g, row r, column c at (st + 25 g, st + r, st + c); audio token k at st + k; both eos tokens at
    one past the largest audio-video position; text after them counts on. `answer_ids=None` ends the
    sequence after the assistant header (for generation and option scoring).
    """
    n = len(template.prefix)
    st = n + 1
    blocks, is_video, av_pos = av_layout(features, st)
    av_ids = torch.cat([torch.full((b.shape[0],), template.video_token_id if v else template.audio_token_id)
                        for b, v in zip(blocks, is_video, strict=True)])
    end = int(av_pos.max()) + 1
    text = template.before_question + question_ids + template.after_question
    answer = [] if answer_ids is None else answer_ids + template.end_of_answer
    tail = text + answer
    ids = torch.cat([torch.tensor(template.prefix + template.bos, dtype=torch.long), av_ids,
                     torch.tensor(template.eos + tail, dtype=torch.long)])
    pre_pos = torch.tensor(list(range(n)) + [n] * len(template.bos)).expand(3, -1)
    eos_pos = torch.full((3, len(template.eos)), end)
    tail_pos = torch.arange(end + 1, end + 1 + len(tail)).expand(3, -1)
    positions = torch.cat([pre_pos, av_pos, eos_pos, tail_pos], dim=1)
    labels = torch.full_like(ids, -100)
    answer_start = ids.numel() - len(answer)
    if answer:
        labels[answer_start:] = ids[answer_start:]
    return Example(ids, positions, labels, torch.cat(blocks), answer_start)


@dataclass
class Batch:
    """Right-padded examples. input_ids/labels/attention_mask [B, L]; positions [3, B, L];
    av_features [N_av, D] in row-major order of the audio/video placeholders."""

    input_ids: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    attention_mask: torch.Tensor
    av_features: torch.Tensor
    answer_start: torch.Tensor  # [B]

    def to(self, device: torch.device) -> Batch:
        return Batch(*(t.to(device) for t in (self.input_ids, self.positions, self.labels, self.attention_mask,
                                               self.av_features, self.answer_start)))

    @property
    def tokens(self) -> int:
        return int(self.attention_mask.sum())


def collate(examples: Sequence[Example], pad_id: int) -> Batch:
    """Right-pad a list of examples into a batch."""
    length = max(e.input_ids.numel() for e in examples)
    b = len(examples)
    ids = torch.full((b, length), pad_id, dtype=torch.long)
    labels = torch.full((b, length), -100, dtype=torch.long)
    mask = torch.zeros(b, length, dtype=torch.long)
    positions = torch.zeros(3, b, length, dtype=torch.long)
    for i, e in enumerate(examples):
        n = e.input_ids.numel()
        ids[i, :n], labels[i, :n], mask[i, :n], positions[:, i, :n] = e.input_ids, e.labels, 1, e.positions
    return Batch(ids, positions, labels, mask, torch.cat([e.av_features for e in examples]),
                 torch.tensor([e.answer_start for e in examples]))
