"""Qwen2.5-Omni's thinker with OmniSIFT applied inside its forward.

`OmniSIFTThinker` is the `transformers` thinker plus a `compressor` submodule (the VGAS selector, so the
OmniSIFT-7B checkpoint's `thinker.compressor.*` weights load by name). On the prefill of a processed
video+audio input (`use_audio_in_video=True`), it embeds the sequence, computes TMRoPE positions with
the model's own `get_rope_index`, decides what to keep with `decide_sequence`, and runs the language
model on the kept tokens at their original positions. Later decoding steps from `generate` carry
attention masks in the uncompressed numbering; they are translated to the packed cache here, so a
plain `thinker.generate(**inputs, use_audio_in_video=True)` runs on the compressed tokens.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Qwen2_5OmniThinkerForConditionalGeneration
from transformers.conversion_mapping import (
    USER_REGISTERED_MAPPINGS,
    get_checkpoint_conversion_mapping,
    register_checkpoint_conversion_mapping,
)
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import MultimodalCausalLMOutputWithPast

from omnisift.counts import TokenCounts
from omnisift.ratios import Ratios, ratios_for_retention, resolve_ratios
from omnisift.selector import VisionGuidedAudioSelector, straight_through_mask
from omnisift.sequence import SequenceDecision, decide_sequence
from omnisift.stvp import check_saliency_dtype


@dataclass(frozen=True, kw_only=True)
class CompressionStats(TokenCounts):
    """Audio and video token counts of one compressed prefill, summed over the batch, and the ratios."""

    rho_video: float
    rho_audio: float

    @classmethod
    def from_decision(cls, decision: SequenceDecision, ratios: Ratios) -> CompressionStats:
        v, a, k = decision.is_video, decision.is_audio, decision.keep
        counts = torch.stack([v.sum(), (v & k).sum(), a.sum(), (a & k).sum()]).tolist()
        return cls(**dict(zip(("video_before", "video_after", "audio_before", "audio_after"), counts, strict=True)),
                   rho_video=ratios.rho_video, rho_audio=ratios.rho_audio)


@dataclass
class _PackedPrefix:
    """The compressed prefill's attention mask and the uncompressed length it replaced."""

    mask: torch.Tensor  # [B, L'] long
    original_length: int

    def translate(self, attention_mask: torch.Tensor) -> torch.Tensor:
        """Uncompressed-numbering mask [B, L + t] -> packed-cache mask [B, L' + t]."""
        return torch.cat([self.mask, attention_mask[:, self.original_length:]], dim=1)


def pack_kept(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded gather index and mask for the kept tokens of each row.

    keep: [B, L] bool. returns index [B, L'] into L (pads point at 0) and mask [B, L'] long,
    where L' is the largest kept count; padding goes on the left, as generation expects.
    """
    b, length = keep.shape
    counts = keep.sum(1)  # [B]
    packed_len = int(counts.max())
    dest = (packed_len - counts).unsqueeze(1) + keep.cumsum(1) - 1  # [B, L]
    rows = torch.arange(b, device=keep.device).unsqueeze(1).expand(b, length)
    cols = torch.arange(length, device=keep.device).expand(b, length)
    index = torch.zeros(b, packed_len, dtype=torch.long, device=keep.device)
    index[rows[keep], dest[keep]] = cols[keep]
    mask = (torch.arange(packed_len, device=keep.device) >= (packed_len - counts).unsqueeze(1)).long()
    return index, mask


class OmniSIFTThinker(Qwen2_5OmniThinkerForConditionalGeneration):
    """Qwen2.5-Omni thinker that compresses audio-video tokens with OmniSIFT during prefill."""

    @classmethod
    def register_checkpoint_layout(cls) -> None:
        """Load Qwen2.5-Omni checkpoints (`thinker.*` keys) into this subclass as into the base class.

        `transformers` applies its key renames only to classes it knows, so the thinker's are
        registered under this class's name too; `thinker.compressor.*` then lands on `compressor`.
        """
        if cls.__name__ not in USER_REGISTERED_MAPPINGS:
            base = get_checkpoint_conversion_mapping(Qwen2_5OmniThinkerForConditionalGeneration.__name__)
            register_checkpoint_conversion_mapping(cls.__name__, base, overwrite=True)

    def __init__(self, config) -> None:
        super().__init__(config)
        self.compressor = VisionGuidedAudioSelector(config.text_config.hidden_size)
        self.ratios: Ratios | None = Ratios()
        self.retention: float | None = None
        self.saliency_dtype = "float32"
        self.last_stats: CompressionStats | None = None
        self._packed: _PackedPrefix | None = None

    def configure_compression(
        self, *, rho_video: float | None = None, rho_audio: float | None = None,
        retention: float | None = None, enabled: bool = True, saliency_dtype: str | None = None,
    ) -> None:
        """Set the ratios (fractions dropped) or one retention target over audio + video tokens.

        `retention` keeps audio at the release ratio and sets the video ratio per input so that
        about `retention` of the audio + video tokens stay. `enabled=False` runs the full model.
        `saliency_dtype`: STVP's arithmetic, "float32" (default) or "input" (the release's, in the
        embeddings' dtype; see `omnisift.stvp`); None leaves it as it is.
        """
        if saliency_dtype is not None:
            self.saliency_dtype = check_saliency_dtype(saliency_dtype)
        if not enabled:
            self.ratios, self.retention = None, None
            return
        self.ratios = resolve_ratios(retention, rho_video, rho_audio)
        self.retention = retention

    def _ratios_for(self, video_grid_thw: torch.Tensor) -> Ratios:
        if self.retention is None:
            return self.ratios
        merge = self.config.vision_config.spatial_merge_size
        tokens_per_frame = int(video_grid_thw[0, 1] * video_grid_thw[0, 2]) // merge**2
        return ratios_for_retention(self.retention, tokens_per_frame, rho_audio=self.ratios.rho_audio)

    def embed_multimodal(
        self, input_ids: torch.Tensor, input_features: torch.Tensor | None,
        feature_attention_mask: torch.Tensor | None, pixel_values_videos: torch.Tensor | None,
        video_grid_thw: torch.Tensor | None, pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Token embeddings with the audio, video and image tower outputs scattered in: [B, L, D]."""
        embeds = self.get_input_embeddings()(input_ids)
        placements = []
        if input_features is not None:
            audio = self.model.get_audio_features(input_features, feature_attention_mask, return_dict=True)
            placements.append((self.config.audio_token_id, audio.last_hidden_state))
        if pixel_values_videos is not None:
            video = self.model.get_video_features(pixel_values_videos, video_grid_thw, return_dict=True)
            placements.append((self.config.video_token_id, torch.cat(video.pooler_output)))
        if pixel_values is not None:
            image = self.model.get_image_features(pixel_values, image_grid_thw, return_dict=True)
            placements.append((self.config.image_token_id, torch.cat(image.pooler_output)))
        for token_id, features in placements:
            slots = (input_ids == token_id).unsqueeze(-1)
            embeds = embeds.masked_scatter(slots, features.to(embeds.device, embeds.dtype))
        return embeds

    def forward(self, input_ids=None, input_features=None, pixel_values=None, pixel_values_videos=None,
                image_grid_thw=None, video_grid_thw=None, attention_mask=None, feature_attention_mask=None,
                position_ids=None, cache=None, inputs_embeds=None, labels=None, use_cache=None,
                use_audio_in_video=None, video_second_per_grid=None, **kwargs):
        cache = kwargs.pop("past_key_values", cache)
        prefill = cache is None or cache.get_seq_length() == 0
        if prefill:
            self._packed = None
        compress = (prefill and self.ratios is not None and use_audio_in_video and input_ids is not None
                    and pixel_values_videos is not None and inputs_embeds is None)
        if compress:
            return self._compressed_forward(
                input_ids, input_features, pixel_values, pixel_values_videos, image_grid_thw, video_grid_thw,
                attention_mask, feature_attention_mask, position_ids, cache, labels, use_cache,
                video_second_per_grid, **kwargs,
            )
        if self._packed is not None and attention_mask is not None:
            attention_mask = self._packed.translate(attention_mask)
            if position_ids is not None and position_ids.shape[0] == 4:
                position_ids = position_ids[1:]  # the text row counts uncompressed tokens
        return super().forward(
            input_ids=input_ids, input_features=input_features, pixel_values=pixel_values,
            pixel_values_videos=pixel_values_videos, image_grid_thw=image_grid_thw,
            video_grid_thw=video_grid_thw, attention_mask=attention_mask,
            feature_attention_mask=feature_attention_mask, position_ids=position_ids, cache=cache,
            inputs_embeds=inputs_embeds, labels=labels, use_cache=use_cache,
            use_audio_in_video=use_audio_in_video, video_second_per_grid=video_second_per_grid, **kwargs,
        )

    def _compressed_forward(self, input_ids, input_features, pixel_values, pixel_values_videos, image_grid_thw,
                            video_grid_thw, attention_mask, feature_attention_mask, position_ids, cache, labels,
                            use_cache, video_second_per_grid, **kwargs):
        b, length = input_ids.shape
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        embeds = self.embed_multimodal(input_ids, input_features, feature_attention_mask, pixel_values_videos,
                                       video_grid_thw, pixel_values, image_grid_thw)  # [B, L, D]
        if position_ids is None:
            audio_lengths = None if feature_attention_mask is None else feature_attention_mask.sum(-1)
            position_ids, _ = self.get_rope_index(input_ids, image_grid_thw, video_grid_thw, attention_mask,
                                                  True, audio_lengths, video_second_per_grid)
        positions = position_ids[-3:]  # [3, B, L]; a leading text row from `generate` is dropped
        ratios = self._ratios_for(video_grid_thw)
        decision = decide_sequence(
            embeds, input_ids, positions, video_token_id=self.config.video_token_id,
            audio_token_id=self.config.audio_token_id, selector=self.compressor,
            rho_video=ratios.rho_video, rho_audio=ratios.rho_audio, attention_mask=attention_mask,
            saliency_dtype=self.saliency_dtype,
        )
        if torch.is_grad_enabled() and decision.audio_scores.requires_grad:
            gate = straight_through_mask(decision.keep, decision.audio_scores)  # [B, L]
            embeds = embeds * torch.where(decision.is_audio, gate, 1.0).unsqueeze(-1).to(embeds.dtype)
        self.last_stats = CompressionStats.from_decision(decision, ratios)

        index, packed_mask = pack_kept(decision.keep & attention_mask.bool())  # [B, L']
        packed_embeds = embeds.gather(1, index.unsqueeze(-1).expand(-1, -1, embeds.shape[-1]))
        packed_positions = positions.gather(2, index.unsqueeze(0).expand(3, -1, -1))
        self._packed = _PackedPrefix(mask=packed_mask, original_length=length)

        outputs: BaseModelOutputWithPast = self.model(
            input_ids=None, inputs_embeds=packed_embeds, attention_mask=packed_mask,
            position_ids=packed_positions, cache=cache, use_cache=use_cache, **kwargs,
        )
        logits = self.lm_head(outputs.last_hidden_state)
        loss = None
        if labels is not None:
            packed_labels = labels.gather(1, index).masked_fill(packed_mask == 0, -100)
            loss = self.loss_function(logits=logits, labels=packed_labels,
                                      vocab_size=self.config.get_text_config().vocab_size, **kwargs)
        return MultimodalCausalLMOutputWithPast(
            loss=loss, logits=logits, cache=outputs.cache, hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )



OmniSIFTThinker.register_checkpoint_layout()
