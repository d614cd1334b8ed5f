"""OmniSIFT over a whole offline Qwen2.5-Omni sequence, batched and free of per-chunk host syncs.

The model interleaves a clip as `[chunk 0 video][chunk 0 audio][chunk 1 video]...` between
`<|audio_bos|>` and `<|audio_eos|>` (DESIGN section 2). Here every audio/video token is assigned to
its segment, its 2-second chunk (from its TMRoPE time position) and, for video, its frame; then all
frames are pruned by STVP in one batched call and all chunks' audio is scored by VGAS in one batched
call. The decisions are the ones `stvp` + `VisionGuidedAudioSelector` + `select_audio` take chunk by
chunk, because both paths run the same batched core. Cost is linear in the number of tokens (plus
two sorts), with a constant number of host synchronisations (tensor sizes), none per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnisift.ratios import check_ratio
from omnisift.selector import VisionGuidedAudioSelector
from omnisift.stvp import frame_saliency, keep_top

from omnisift.token_layout import POSITIONS_PER_CHUNK


@dataclass
class SequenceDecision:
    """What OmniSIFT keeps of a batch of sequences.

    keep:         [B, L] bool; every token that is not audio or video is kept.
    audio_scores: [B, L] selector scores at audio tokens, 0 elsewhere; differentiable as
                  `straight_through_scores` says.
    is_video, is_audio: [B, L] bool masks of the audio-video tokens considered.
    """

    keep: torch.Tensor
    audio_scores: torch.Tensor
    is_video: torch.Tensor
    is_audio: torch.Tensor


def straight_through_scores(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """The selector's scores `sigmoid(logits)` [C, A] in value; in the backward pass the gradient goes to
    the logits as it is, minus its mean over each chunk's `valid` [C, A] tokens.

    Two things kept selector training from learning (seen on the synthetic task): only the order of the
    scores within a chunk decides what is kept, so a gradient shared by a chunk's tokens carries no
    information, yet the straight-through loss pushed every score the same way until the sigmoid
    saturated (all scores above 0.999 within 25 steps); after that the sigmoid's derivative vanished and
    the order was decided by float32 ties. Centring removes the shared part; skipping the sigmoid's
    derivative keeps the gradient alive; decisions rank the logits, which never tie that way.
    Without a gradient to carry (inference), this is just the sigmoid.
    """
    if not logits.requires_grad:
        return torch.sigmoid(logits)
    weights = valid.to(logits.dtype)
    mean = (logits * weights).sum(-1, keepdim=True) / weights.sum(-1, keepdim=True).clamp(min=1)  # [C, 1]
    centred = (logits - mean) * weights  # padding slots get no gradient
    return torch.sigmoid(logits.detach()) + (centred - centred.detach())


def _group_slots(group: torch.Tensor, n_groups: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For items sorted by `group` ([N] long, nondecreasing): each item's slot inside its group and
    the group sizes ([n_groups])."""
    counts = torch.bincount(group, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    slots = torch.arange(group.numel(), device=group.device) - starts[group]
    return slots, counts


def _dense_ids(change: torch.Tensor) -> torch.Tensor:
    """Dense ids 0, 1, ... that advance where `change` ([N] bool) is True (the first item starts id 0)."""
    if change.numel() == 0:
        return change.long()
    change = change.clone()
    change[0] = False
    return torch.cumsum(change.long(), 0)


def _kept_counts(counts: torch.Tensor, rho: float) -> torch.Tensor:
    """Vectorised `omnisift.ratios.kept_count`."""
    return counts - torch.floor(counts.double() * rho + 1e-9).long()


SALIENCY_BLOCK_FRAMES = 256  # bounds the fp32 temporaries of saliency on long clips


def _blocked_saliency(frames: torch.Tensor, valid: torch.Tensor, has_previous: torch.Tensor) -> torch.Tensor:
    """`frame_saliency` of frames [F, P, D] against frame f-1, in blocks of frames so that memory stays
    a few blocks' worth of fp32 whatever the clip length (one pass per block, not per chunk)."""
    out = torch.empty(frames.shape[:2], dtype=torch.float32, device=frames.device)
    for start in range(0, frames.shape[0], SALIENCY_BLOCK_FRAMES):
        end = min(start + SALIENCY_BLOCK_FRAMES, frames.shape[0])
        if start == 0:
            previous = torch.cat([frames[:1], frames[: end - 1]])  # frame 0 has no previous frame
        else:
            previous = frames[start - 1: end - 1]
        out[start:end] = frame_saliency(frames[start:end], valid[start:end], previous, has_previous[start:end])
    return out


def decide_sequence(
    inputs_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    *,
    video_token_id: int,
    audio_token_id: int,
    selector: VisionGuidedAudioSelector | None,
    rho_video: float,
    rho_audio: float,
    attention_mask: torch.Tensor | None = None,
    positions_per_chunk: int = POSITIONS_PER_CHUNK,
) -> SequenceDecision:
    """OmniSIFT's keep decisions for a batch of interleaved Qwen2.5-Omni sequences.

    inputs_embeds: [B, L, D]; input_ids: [B, L]; position_ids: [3, B, L] (what `get_rope_index`
    returns); attention_mask: [B, L] (padding is never audio or video). `selector=None` keeps all audio.
    """
    check_ratio("rho_video", rho_video)
    check_ratio("rho_audio", rho_audio)
    b, l, d = inputs_embeds.shape
    device = inputs_embeds.device
    real = torch.ones(b, l, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
    is_video = (input_ids == video_token_id) & real
    is_audio = (input_ids == audio_token_id) & real
    is_av = is_video | is_audio

    # Flatten the batch; segments are maximal runs of audio/video tokens within one row.
    flat_av = is_av.reshape(-1)
    av_index = flat_av.nonzero().squeeze(-1)  # [N] positions in the flattened [B*L]
    t = position_ids[0].reshape(-1)[av_index]  # [N] temporal position
    starts_run = torch.ones_like(av_index, dtype=torch.bool)
    starts_run[1:] = av_index[1:] != av_index[:-1] + 1
    starts_run |= (av_index % l) == 0
    segment = _dense_ids(starts_run)  # [N]
    segment_start_t = t[starts_run][segment] if av_index.numel() else t  # st of each token's segment
    chunk_key = torch.div(t - segment_start_t, positions_per_chunk, rounding_mode="floor")
    new_chunk = starts_run.clone()
    new_chunk[1:] |= chunk_key[1:] != chunk_key[:-1]
    chunk = _dense_ids(new_chunk)  # [N] dense chunk id over the whole batch
    n_chunks = int(chunk[-1]) + 1 if chunk.numel() else 0

    flat_video = is_video.reshape(-1)[av_index]  # [N] which audio/video tokens are video
    keep_av = torch.ones_like(flat_video)
    embeds = inputs_embeds.reshape(b * l, d)[av_index]  # [N, D]

    # STVP over all frames at once.
    v_sel = flat_video.nonzero().squeeze(-1)  # [Nv] indices into the N audio/video tokens
    if v_sel.numel():
        v_t, v_chunk = t[v_sel], chunk[v_sel]
        new_frame = torch.ones_like(v_sel, dtype=torch.bool)
        new_frame[1:] = (v_t[1:] != v_t[:-1]) | (v_chunk[1:] != v_chunk[:-1])
        frame = _dense_ids(new_frame)  # [Nv]
        n_frames = int(frame[-1]) + 1
        slot, counts = _group_slots(frame, n_frames)
        frames = embeds.new_zeros(n_frames, int(counts.max()), d)  # [F, P, D]
        frames[frame, slot] = embeds[v_sel]
        valid = torch.zeros(frames.shape[:2], dtype=torch.bool, device=device)
        valid[frame, slot] = True
        frame_chunk = v_chunk[new_frame]  # [F]
        has_previous = torch.zeros(n_frames, dtype=torch.bool, device=device)
        has_previous[1:] = frame_chunk[1:] == frame_chunk[:-1]
        saliency = _blocked_saliency(frames, valid, has_previous)
        frame_keep = keep_top(saliency, _kept_counts(counts, rho_video))  # [F, P]
        keep_av[v_sel] = frame_keep[frame, slot]

    # VGAS over all chunks at once, guided by each chunk's kept video tokens.
    scores_av = embeds.new_zeros(embeds.shape[0], dtype=torch.float32)
    a_sel = (~flat_video).nonzero().squeeze(-1)  # [Na]
    if a_sel.numel() and selector is not None:
        kv_sel = (flat_video & keep_av).nonzero().squeeze(-1)  # kept video tokens
        kv_slot, kv_counts = _group_slots(chunk[kv_sel], n_chunks)
        video_pad = embeds.new_zeros(n_chunks, int(kv_counts.max()) if kv_sel.numel() else 0, d)
        video_pad[chunk[kv_sel], kv_slot] = embeds[kv_sel]
        video_mask = torch.arange(video_pad.shape[1], device=device) < kv_counts.unsqueeze(-1)  # [C, Vmax]
        a_slot, a_counts = _group_slots(chunk[a_sel], n_chunks)
        audio_pad = embeds.new_zeros(n_chunks, int(a_counts.max()), d)
        audio_pad[chunk[a_sel], a_slot] = embeds[a_sel]
        logits = selector(video_pad, audio_pad, video_mask, logits=True)  # [C, Amax]
        audio_valid = torch.arange(audio_pad.shape[1], device=device) < a_counts.unsqueeze(-1)
        scores = straight_through_scores(logits, audio_valid)
        ranked = logits.detach().float().masked_fill(~audio_valid, float("-inf"))
        chunk_keep = keep_top(ranked, _kept_counts(a_counts, rho_audio))  # [C, Amax]
        keep_av[a_sel] = chunk_keep[chunk[a_sel], a_slot]
        scores_av = scores_av.to(scores.dtype).index_put((a_sel,), scores[chunk[a_sel], a_slot])

    keep = torch.ones(b * l, dtype=torch.bool, device=device)
    keep[av_index] = keep_av
    audio_scores = scores_av.new_zeros(b * l).index_put((av_index,), scores_av)
    return SequenceDecision(keep.view(b, l), audio_scores.view(b, l), is_video, is_audio)


def compress_sequence(
    inputs_embeds: torch.Tensor,
    input_ids: torch.Tensor,
    position_ids: torch.Tensor,
    *,
    video_token_id: int,
    audio_token_id: int,
    selector: VisionGuidedAudioSelector | None,
    rho_video: float,
    rho_audio: float,
    attention_mask: torch.Tensor | None = None,
    positions_per_chunk: int = POSITIONS_PER_CHUNK,
) -> torch.Tensor:
    """Bool keep-mask [B, L] of OmniSIFT over whole Qwen2.5-Omni sequences (see `decide_sequence`)."""
    with torch.no_grad():
        return decide_sequence(
            inputs_embeds, input_ids, position_ids, video_token_id=video_token_id,
            audio_token_id=audio_token_id, selector=selector, rho_video=rho_video, rho_audio=rho_audio,
            attention_mask=attention_mask, positions_per_chunk=positions_per_chunk,
        ).keep
