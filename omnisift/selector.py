"""VGAS: the vision-guided audio selector (OmniSIFT, docs/design.md section 3).

A 4.85M-parameter module (at D = 3584) that scores each audio token of a chunk by cross-attending from
the audio tokens to the chunk's *kept* video tokens. Submodule names and shapes are exactly those of
the public OmniSIFT-7B checkpoint (`thinker.compressor.*`), so its weights load unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from omnisift.ratios import audio_kept_count, check_ratio
from omnisift.stvp import keep_top


class VisionGuidedAudioSelector(nn.Module):
    """Scores audio tokens in (0, 1) from the audio tokens and the kept video tokens of a chunk."""

    def __init__(self, d_model: int, hidden_dim: int = 512, num_heads: int = 8) -> None:
        super().__init__()
        self.d_model = d_model
        self.v_proj = nn.Linear(d_model, hidden_dim)
        self.a_proj = nn.Linear(d_model, hidden_dim)
        self.v_norm = nn.LayerNorm(hidden_dim)
        self.a_norm = nn.LayerNorm(hidden_dim)
        self.cross_attn = nn.MultiheadAttention(hidden_dim, num_heads, batch_first=True)
        self.post_attn_norm = nn.LayerNorm(hidden_dim)
        self.score_head = nn.Sequential(nn.Linear(hidden_dim, 256), nn.SiLU(), nn.Linear(256, 1))

    def forward(
        self,
        video: torch.Tensor,
        audio: torch.Tensor,
        video_mask: torch.Tensor | None = None,
        logits: bool = False,
    ) -> torch.Tensor:
        """Score audio tokens.

        video: [Lv, D] or [C, Lv, D] kept video tokens (C chunks, padded to Lv).
        audio: [La, D] or [C, La, D] audio tokens.
        video_mask: [C, Lv] bool, True for real video tokens (batched form only; default all real).
        returns: [La] or [C, La] scores in (0, 1); with `logits=True` the score head's output before the
        sigmoid (same order, but no float32 ties once the sigmoid saturates: decisions rank these).
        A chunk with no video token is scored from audio alone.
        """
        unbatched = audio.ndim == 2
        if unbatched:
            video, audio = video.unsqueeze(0), audio.unsqueeze(0)
        dtype = self.v_proj.weight.dtype
        c, lv = video.shape[:2]
        if video_mask is None:
            video_mask = torch.ones(c, lv, dtype=torch.bool, device=video.device)
        if lv == 0:  # no video anywhere: attend to one zero key, output dropped below
            video = video.new_zeros(c, 1, video.shape[-1])
            video_mask = torch.zeros(c, 1, dtype=torch.bool, device=video.device)
        has_video = video_mask.any(-1)  # [C]
        # A row with every key masked makes attention NaN; unmask one key there and zero its output.
        key_padding = ~(video_mask | (~has_video).unsqueeze(-1) & (torch.arange(video_mask.shape[1],
                                                                                 device=video.device) == 0))
        v = self.v_norm(self.v_proj(video.to(dtype)))  # [C, Lv, H]
        a = self.a_norm(self.a_proj(audio.to(dtype)))  # [C, La, H]
        attended, _ = self.cross_attn(a, v, v, key_padding_mask=key_padding, need_weights=False)
        attended = attended * has_video.to(attended.dtype).view(-1, 1, 1)
        x = self.post_attn_norm(attended + a)
        scores = self.score_head(x).squeeze(-1)  # [C, La] logits
        if not logits:
            scores = torch.sigmoid(scores)
        return scores[0] if unbatched else scores


def select_audio(
    scores: torch.Tensor, rho_audio: float, *, kept_video: int | None = None, straight_through: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Keep the highest-scoring audio tokens of a chunk, in time order: `n_a - int(n_a * rho_audio)` of
    them, or all of them when `rho_audio = 1` or `kept_video == 0` (the release's rules, see
    `omnisift.ratios.audio_kept_count`).

    scores: [n_a] selector scores or logits (only their order matters).
    kept_video: how many video tokens guided the scores (None: not known, taken as some).
    returns: sorted LongTensor of kept indices; with `straight_through=True`, also the mask
    `hard - scores.detach() + scores` ([n_a], 1 at kept tokens and 0 elsewhere in value), which is
    multiplied into the kept audio embeddings so the next-token loss trains the selector. The mask's
    gradient is that of `scores`: to train, pass `omnisift.sequence.straight_through_scores(logits,
    valid)` rather than the plain sigmoid, whose gradient saturates (see there); training in this package
    goes through `decide_sequence`, which does.
    """
    check_ratio("rho_audio", rho_audio)
    n_a = scores.shape[-1]
    keep_n = torch.tensor([audio_kept_count(n_a, rho_audio, kept_video)], device=scores.device)
    hard = keep_top(scores.detach().float().unsqueeze(0), keep_n)[0]  # [n_a] bool
    kept = hard.nonzero().squeeze(-1)
    if not straight_through:
        return kept
    return kept, straight_through_mask(hard, scores)


def straight_through_mask(hard: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
    """Hard 0/1 values in the forward pass, the gradient of `scores` in the backward pass."""
    return hard.to(scores.dtype) - scores.detach() + scores
