"""The compressed forward: OmniSIFT decides what to keep, the frozen language model runs on the kept
tokens at their original positions, and the straight-through mask carries the answer's next-token loss
to the selector (through the kept audio embeddings, or through the attention keys)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from omnisift.ratios import Ratios
from omnisift.selector import straight_through_mask
from omnisift.sequence import decide_sequence
from omnisift.training.layout import Batch


class RandomScorer(nn.Module):
    """Uniform random scores: random audio selection at the same counts as VGAS (a baseline)."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        self.generator = torch.Generator().manual_seed(seed)

    def forward(self, video, audio, video_mask=None, logits=False):  # the selector's signature
        return torch.rand(audio.shape[:-1], generator=self.generator).to(audio.device)


@dataclass
class ForwardResult:
    loss: torch.Tensor | None
    logits: torch.Tensor  # [B, L', V] over the kept tokens
    index: torch.Tensor  # [B, L'] original index of each kept token (left-padded)
    kept_mask: torch.Tensor  # [B, L'] 1 at real kept tokens
    video: tuple[int, int]  # before, after (summed over the batch)
    audio: tuple[int, int]


def embed_batch(thinker, batch: Batch) -> torch.Tensor:
    """Token embeddings [B, L, D] with the cached tower outputs at the audio/video placeholders."""
    embeds = thinker.get_input_embeddings()(batch.input_ids)
    cfg = thinker.config
    is_av = (batch.input_ids == cfg.video_token_id) | (batch.input_ids == cfg.audio_token_id)
    slots = is_av & batch.attention_mask.bool()
    return embeds.masked_scatter(slots.unsqueeze(-1), batch.av_features.to(embeds.dtype))


GATES = ("embedding", "attention")


def compressed_forward(thinker, batch: Batch, ratios: Ratios | None, selector: nn.Module | None = None,
                       gate: str = "embedding") -> ForwardResult:
    """Next-token loss on the answer with OmniSIFT deciding what to keep.

    `ratios=None` keeps every token (the full model). `selector` defaults to `thinker.compressor`; a
    `RandomScorer` gives random audio selection. When grad is enabled and the selector has trainable
    weights, the straight-through mask (1 in value at kept tokens) carries the gradient to its scores:
    `gate="embedding"` multiplies it into the kept audio embeddings (docs/design.md section 3; dropped tokens are
    removed), `gate="attention"` keeps every token and weighs each attention key by it
    (`omnisift.key_gate`: the forward is the same, dropped tokens get a gradient too).
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
    cfg = thinker.config
    embeds = embed_batch(thinker, batch)  # [B, L, D]
    real = batch.attention_mask.bool()
    is_video = (batch.input_ids == cfg.video_token_id) & real
    is_audio = (batch.input_ids == cfg.audio_token_id) & real
    keep, scores = torch.ones_like(is_video), None
    if ratios is not None:
        decision = decide_sequence(
            embeds, batch.input_ids, batch.positions, video_token_id=cfg.video_token_id,
            audio_token_id=cfg.audio_token_id, selector=thinker.compressor if selector is None else selector,
            rho_video=ratios.rho_video, rho_audio=ratios.rho_audio, attention_mask=batch.attention_mask,
        )
        keep = decision.keep
        if torch.is_grad_enabled() and decision.audio_scores.requires_grad:
            scores = decision.audio_scores  # [B, L]
    keep = keep & real
    counts = torch.stack([is_video.sum(), (is_video & keep).sum(), is_audio.sum(), (is_audio & keep).sum()]).tolist()
    if scores is not None and gate == "attention":
        key_gate = torch.where(is_audio, straight_through_mask(keep, scores), keep.to(scores.dtype))  # [B, L]
        logits, index, packed_mask = _key_gated_logits(thinker, batch, embeds, keep, key_gate)
    else:
        if scores is not None:
            audio_gate = torch.where(is_audio, straight_through_mask(keep, scores), 1.0)  # [B, L]
            embeds = embeds * audio_gate.unsqueeze(-1).to(embeds.dtype)
        logits, index, packed_mask = _packed_logits(thinker, batch, embeds, keep)
    labels = batch.labels.gather(1, index).masked_fill(packed_mask == 0, -100)  # [B, L']
    loss = None
    if (labels != -100).any():
        loss = nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(),
                                           ignore_index=-100)
    return ForwardResult(loss, logits, index, packed_mask, (counts[0], counts[1]), (counts[2], counts[3]))


def _packed_logits(thinker, batch: Batch, embeds: torch.Tensor, keep: torch.Tensor):
    """The language model on the kept tokens only, at their original positions.

    returns logits [B, L', V], index [B, L'] into L, packed mask [B, L'] (left-padded)."""
    from omnisift.thinker import pack_kept

    index, packed_mask = pack_kept(keep)  # [B, L']
    packed = embeds.gather(1, index.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
    positions = batch.positions.gather(2, index.unsqueeze(0).expand(3, -1, -1))
    out = thinker.model.language_model(inputs_embeds=packed, attention_mask=packed_mask, position_ids=positions,
                                       use_cache=False)
    return thinker.lm_head(out.last_hidden_state), index, packed_mask


def _key_gated_logits(thinker, batch: Batch, embeds: torch.Tensor, keep: torch.Tensor, key_gate: torch.Tensor):
    """The language model on every token with attention keys weighed by `key_gate` [B, L]; the logits at
    the kept tokens are returned in the packed layout of `_packed_logits`, so the loss is the same."""
    from omnisift.key_gate import key_gated
    from omnisift.thinker import pack_kept

    language_model = thinker.model.language_model
    with key_gated(language_model):
        out = language_model(inputs_embeds=embeds, attention_mask=batch.attention_mask,
                             position_ids=batch.positions, use_cache=False, key_gate=key_gate)
    index, packed_mask = pack_kept(keep)  # [B, L']
    hidden = out.last_hidden_state.gather(1, index.unsqueeze(-1).expand(-1, -1, out.last_hidden_state.shape[-1]))
    return thinker.lm_head(hidden), index, packed_mask


def option_logits(result: ForwardResult, batch: Batch, option_ids: Sequence[int]) -> torch.Tensor:
    """Logits [B, n_options] of the options' first tokens where the answer's first token is predicted."""
    # the kept token just before the answer: the last kept token whose original index < answer_start
    before = (result.index < batch.answer_start.unsqueeze(1)) & result.kept_mask.bool()
    last = before.long().cumsum(1).argmax(1)  # [B] last True
    rows = torch.arange(batch.input_ids.shape[0], device=last.device)
    return result.logits[rows, last][:, list(option_ids)].float()
