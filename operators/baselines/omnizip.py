"""OmniZip, chunk by chunk: audio-guided audio-video compression.

Paper: Keda Tao, Kele Shao, Bohan Yu, Weiqiang Wang, Jian Liu, Huan Wang, "OmniZip: Audio-Guided Dynamic
Token Compression for Fast Omnimodal Large Language Models", arXiv 2511.14582.

The rule, per 2-second chunk (one OmniZip time group):
1. Audio saliency: the audio tower's last-layer self-attention inside its real 2-second windows
   (`2 * n_window` mel frames); a token's score is the attention it receives, averaged over heads and
   over the queries of its window, then over the two frames the tower pools into one token.
2. Audio kept: `audio_kept_count(n_a, rho_audio)` tokens: `round(contextual_ratio * n_a)` contextual anchors
   spread evenly over the non-dominant tokens, the rest the most salient (dominant) tokens. Every other
   token is assigned to its most similar anchor (cosine); each anchor absorbs its `g` candidates most
   similar to the chunk's video (max cosine to any video token), weighted by a softmax of that
   similarity: `anchor <- (anchor + sum w_i a_i) / (1 + sum w_i)`.
3. Video retention from audio: the chunk's audio retention `r` (share of its tokens above the audio
   threshold, see below) sets its video drop ratio `rho_v = clip(rho_video + span (k_a / n_a - r), 0, 1)`:
   a chunk with denser audio information keeps more video (OmniZip maps retention onto [0.35, 0.75],
   a span of 0.4, the default `span`).
4. Video per frame (interleaved spatio-temporal): the chunk's first frame keeps the top tokens of
   DPC-kNN density-peak scores (k = 5), the second the tokens least similar to the first (same grid
   position); `kept_count(n_p, rho_v)` each.

Deviations made to run it live:
- No whole-clip normalisation. OmniZip ranks audio over the whole clip, so a group's retention varies,
  then rescales the groups' video ratios to meet the clip's budget. Live, a chunk keeps exactly
  `audio_kept_count(n_a, rho_audio)` audio tokens, and its retention `r` is measured against a running
  threshold: the mean of the previous chunks' k_a-th highest saliency (the first chunk has r = k_a / n_a,
  so rho_v = rho_video). Exception to equal counts: video per chunk varies around the target and is
  not renormalised; `span=0` gives exactly the other methods' video counts.
- Attention weights are needed, so the tower runs a second time (a separate pass, after the normal
  encode) with a hook that takes the last layer's input and recomputes its attention eagerly (softmax of
  q k^T per window). FlashAttention never returns weights, so this compressor is marked incompatible
  with it (`flash_attention_compatible = False`) and refuses a tower loaded with it.
- It reads the tower and the chunk's log-mel from `EncodedChunk.audio_tower` / `audio_features`, set by
  `operators.encode.Encoder`.
- A video-only chunk keeps `kept_count(n_p, rho_video)` per frame; an audio-only chunk merges anchors by
  audio-audio similarity (as OmniZip without video).
- Only from the chunk just before (`Compressor.carrying`): a chunk that does not directly follow the one
  processed last (a gap, out of order, a restarted source, the same chunk again) starts the running
  threshold over, so it has r = k_a / n_a as a stream's first chunk does.
"""

from __future__ import annotations

import dataclasses
from itertools import pairwise

import torch
import torch.nn.functional as F

from omnisift.ratios import Ratios, audio_kept_count, kept_count
from operators.baselines.common import top_mask
from operators.chunks import CompressedChunk, EncodedChunk
from operators.compress import Compressor, register_compressor


class _Captured(Exception):
    pass


@torch.inference_mode()
def last_layer_attention_saliency(tower: torch.nn.Module, features: torch.Tensor) -> torch.Tensor:
    """[n_a] saliency of each audio token from the tower's last-layer attention (a separate eager pass).

    tower: a Qwen2.5-Omni audio tower; features: [128, n_mel] log-mel frames it encoded."""
    attn = tower.layers[-1].self_attn
    captured: dict = {}

    def grab(module, args, kwargs):
        captured["hidden"] = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        captured["cu_seqlens"] = kwargs["cu_seqlens"] if "cu_seqlens" in kwargs else args[1]
        raise _Captured  # the rest of the pass is not needed

    n_mel = features.shape[-1]
    lens = torch.tensor([n_mel], device=features.device)
    handle = attn.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        tower(features.to(tower.conv1.weight.dtype), feature_lens=lens, aftercnn_lens=(lens - 1) // 2 + 1)
    except _Captured:
        pass
    finally:
        handle.remove()
    hidden, cu = captured["hidden"], captured["cu_seqlens"].tolist()  # [L, d]
    length = hidden.shape[0]
    q = attn.q_proj(hidden).view(length, attn.num_heads, -1).transpose(0, 1).float()  # [H, L, hd]
    k = attn.k_proj(hidden).view(length, attn.num_heads, -1).transpose(0, 1).float()
    frame_score = torch.empty(length, device=hidden.device)
    for start, end in pairwise(cu):  # the tower's 2-second windows
        weights = torch.softmax(q[:, start:end] @ k[:, start:end].transpose(1, 2) * attn.scaling, dim=-1)
        frame_score[start:end] = weights.mean(0).mean(0)  # attention received: mean over heads, queries
    n_tokens = (length - 2) // 2 + 1
    return (frame_score[0:2 * n_tokens:2] + frame_score[1:2 * n_tokens:2]) / 2  # the tower's 2x pooling


def select_and_merge_audio(audio: torch.Tensor, video: torch.Tensor | None, saliency: torch.Tensor, keep: int,
                           contextual_ratio: float = 0.05, g: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """OmniZip's audio step on one chunk: ([n_a] kept mask, [n_a, D] audio with anchors merged)."""
    n = audio.shape[0]
    n_ctx = min(keep, round(contextual_ratio * n))
    mask = top_mask(saliency.float(), keep - n_ctx)  # dominant tokens
    merged = audio.clone()
    remaining = (~mask).nonzero().squeeze(-1)
    if n_ctx == 0 or remaining.numel() == 0:
        return mask, merged
    n_ctx = min(n_ctx, remaining.numel())
    local = torch.arange(0, remaining.numel(), max(1, remaining.numel() // n_ctx), device=audio.device)[:n_ctx]
    anchors = remaining[local]
    mask[anchors] = True
    pool = (~mask).nonzero().squeeze(-1)
    if pool.numel() == 0 or g <= 0:
        return mask, merged
    a = F.normalize(audio.float(), dim=-1)
    assign = (a[pool] @ a[anchors].T).argmax(1)  # [P] anchor of each pooled token
    if video is not None and video.numel() > 0:
        guide = (a[pool] @ F.normalize(video.float(), dim=-1).T).max(1).values  # [P]
    else:
        guide = (a[pool] @ a[anchors].T).max(1).values
    for c, anchor in enumerate(anchors.tolist()):
        members = (assign == c).nonzero().squeeze(-1)
        if members.numel() == 0:
            continue
        top = guide[members].topk(min(g, members.numel())).indices
        chosen, w = pool[members[top]], torch.softmax(guide[members[top]], 0)
        merged[anchor] = ((audio[anchor].float() + (w.unsqueeze(1) * audio[chosen].float()).sum(0))
                          / (1 + w.sum())).to(audio.dtype)
    return mask, merged


def density_peak_scores(tokens: torch.Tensor, k: int = 5) -> torch.Tensor:
    """DPC-kNN score (local density x distance to a denser token) of each of [n, D] tokens; [n]."""
    n = tokens.shape[0]
    if n <= 1:
        return torch.ones(n, device=tokens.device)
    x = F.normalize(tokens.float(), dim=-1)
    dist = (1 - x @ x.T).fill_diagonal_(float("inf"))  # [n, n]
    density = torch.exp(-dist.topk(min(k, n - 1), dim=1, largest=False).values.mean(1))  # [n]
    higher = density.unsqueeze(0) > density.unsqueeze(1)  # [i, j]: j denser than i
    delta = dist.masked_fill(~higher, float("inf")).min(1).values
    peak = delta.isinf()
    delta[peak] = dist.masked_fill(torch.eye(n, dtype=torch.bool, device=x.device), 0.0)[peak].max(1).values
    return delta * density


def video_drop_ratio(rho_video: float, span: float, audio_share: float, audio_retention: float) -> float:
    """A chunk's video drop ratio from its audio retention (more audio information keeps more video)."""
    return min(max(rho_video + span * (audio_share - audio_retention), 0.0), 1.0)


@register_compressor("omnizip")
class OmniZipCompressor(Compressor):
    """OmniZip adapted to streaming; see the module docstring. Incompatible with FlashAttention."""

    flash_attention_compatible = False
    carried = ("thresholds",)

    def __init__(self, ratios: Ratios, selector=None, span: float = 0.4, contextual_ratio: float = 0.05,
                 g: int = 3, knn: int = 5) -> None:
        super().__init__(ratios)
        self.span, self.contextual_ratio, self.g, self.knn = span, contextual_ratio, g, knn
        self.reset()

    @classmethod
    def most_kept(cls, tokens_per_frame: int, n_audio: int, ratios: Ratios, options: dict) -> tuple[int, int]:
        """Video is kept most when every audio token beats the threshold (audio retention 1)."""
        span = options.get("span", cls.option_defaults()["span"])
        keep_audio = audio_kept_count(n_audio, ratios.rho_audio)
        rho_v = video_drop_ratio(ratios.rho_video, span, keep_audio / n_audio if n_audio else 1.0, 1.0)
        return kept_count(tokens_per_frame, rho_v), keep_audio

    def forget(self) -> None:
        self.thresholds: list[float] = []  # each past chunk's k_a-th highest audio saliency

    def reset(self) -> None:
        super().reset()
        self.rho_v = self.ratios.rho_video
        self.audio_mask: torch.Tensor | None = None
        self.last_audio_retention: float | None = None

    def audio_saliency(self, chunk: EncodedChunk) -> torch.Tensor:
        tower = chunk.audio_tower
        if tower is None or chunk.audio_features is None:
            raise ValueError("omnizip needs the audio tower and the chunk's log-mel (EncodedChunk.audio_tower / "
                             "audio_features, set by operators.encode.Encoder)")
        if "flash" in str(getattr(tower.config, "_attn_implementation", "")):
            raise ValueError("omnizip needs attention weights and is incompatible with FlashAttention; "
                             "load the model with attn_implementation='sdpa' or 'eager'")
        return last_layer_attention_saliency(tower, chunk.audio_features)

    @torch.inference_mode()
    def process(self, chunk: EncodedChunk) -> CompressedChunk:
        self.rho_v, self.audio_mask = self.ratios.rho_video, None
        if chunk.audio is not None:
            n_a = chunk.audio.shape[0]
            keep = audio_kept_count(n_a, self.ratios.rho_audio)
            saliency = self.audio_saliency(chunk)[:n_a]
            video = None if chunk.video is None else chunk.video.reshape(-1, chunk.video.shape[-1])
            self.audio_mask, merged = select_and_merge_audio(chunk.audio, video, saliency, keep,
                                                             self.contextual_ratio, self.g)
            with self.carrying(chunk.index):
                if self.thresholds and keep > 0:
                    threshold = sum(self.thresholds) / len(self.thresholds)
                    retention = float((saliency > threshold).float().mean())
                else:
                    retention = keep / n_a
                if keep > 0:
                    self.thresholds.append(float(saliency.float().topk(keep).values[-1]))
            self.last_audio_retention = retention
            self.rho_v = video_drop_ratio(self.ratios.rho_video, self.span, keep / n_a, retention)
            chunk = dataclasses.replace(chunk, audio=merged)
        return super().process(chunk)

    def video_keep(self, video: torch.Tensor) -> torch.Tensor:
        steps, n_p = video.shape[:2]
        keep = kept_count(n_p, self.rho_v)
        masks = [top_mask(density_peak_scores(video[0], self.knn), keep)]
        for g in range(1, steps):
            masks.append(top_mask(-F.cosine_similarity(video[g].float(), video[g - 1].float(), dim=-1), keep))
        return torch.stack(masks)

    def audio_keep(self, audio: torch.Tensor, kept_video: torch.Tensor) -> torch.Tensor:
        return self.audio_mask
