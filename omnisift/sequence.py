"""OmniSIFT over whole offline Qwen2.5-Omni sequences: the public release's decisions, in batched tensor calls.

The model interleaves a clip between `<|audio_bos|>` and `<|audio_eos|>` in windows of 50 time positions
(docs/design.md section 2). The chunks OmniSIFT prunes are formed as the release forms them, per row (sample),
from the TMRoPE time values (`position_ids[0]`), so they are right at any frame rate:

- a *frame* is the set of a row's video tokens sharing one time value t;
- frames pair up in time order (0+1, 2+3, ...): one chunk per pair, an odd last frame alone (spatial
  saliency only). At 2 fps a pair is one 2-second chunk; at other rates the position ids per grid step
  are 25 x seconds per grid (50 at 1 fps), so fixed 50-position windows would cut them wrongly;
- chunk c starts at the t of its first frame and owns every audio token of the row with t in
  [start_c, start_c+1); the row's last chunk takes all later audio (audio that outlasts the video);
- audio before the row's first frame belongs to no pair and is kept, as is all audio of a row without
  video: the release prunes audio only inside a pair, guided by that pair's video.

A row holding two videos is paired across them, as the release pairs a sample's time values: the first
video's odd last frame pairs with the second's first frame, which is kept whole when its size differs (no
grid position to compare with), and audio outside the videos (a separate audio clip) joins the pair whose
time range holds it.

Per chunk, STVP scores frame 1 spatially and frame 2 temporally, dropping `int(n * rho_video)` of each;
VGAS scores the chunk's audio against the kept video tokens and drops `int(n_a * rho_audio)`, except that
it keeps all audio when `rho_audio = 1` or no video token is left (`omnisift.ratios.audio_kept_count`).
Ties go to the earlier token.

Cost: all frames' saliency (in blocks of frames, to bound memory), one top-k over all frames, one padded
selector call over all chunks and one grouped ranking of all audio; a constant number of host
synchronisations (tensor sizes), no per-chunk Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from omnisift.ratios import check_ratio
from omnisift.selector import VisionGuidedAudioSelector
from omnisift.stvp import check_saliency_dtype, keep_top, spatial_saliency, temporal_saliency

SALIENCY_BLOCK_FRAMES = 256  # bounds the fp32 temporaries of saliency on long clips
_ROW_STRIDE = 1 << 40  # (row, time) -> one sortable key; time positions stay far below this


@dataclass
class SequenceDecision:
    """What OmniSIFT keeps of a batch of sequences.

    keep:         [B, L] bool; every token that is not audio or video is kept.
    audio_scores: [B, L] selector scores at audio tokens of a chunk, 0 elsewhere; differentiable as
                  `straight_through_scores` says.
    is_video, is_audio: [B, L] bool masks of the audio-video tokens considered.
    """

    keep: torch.Tensor
    audio_scores: torch.Tensor
    is_video: torch.Tensor
    is_audio: torch.Tensor


@dataclass
class _Chunks:
    """How a batch's video frames pair into chunks. Frames and chunks are numbered over the whole batch."""

    frame: torch.Tensor  # [Nv] frame of each video token (video tokens in sequence order)
    frame_counts: torch.Tensor  # [F] tokens per frame
    second: torch.Tensor  # [F] bool: the frame is the second of its pair
    frame_chunk: torch.Tensor  # [F] chunk of each frame
    chunk_row: torch.Tensor  # [C]
    chunk_start: torch.Tensor  # [C] time value of the chunk's first frame


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


def _grouped_straight_through_scores(logits: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """`straight_through_scores` of flat logits [M] whose chunks are `group` [M]: centred per chunk."""
    if not logits.requires_grad:
        return torch.sigmoid(logits)
    sums = logits.new_zeros(n_groups).index_add(0, group, logits)
    mean = sums / torch.bincount(group, minlength=n_groups).clamp(min=1).to(logits.dtype)
    centred = logits - mean[group]
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


def _dropped(counts: torch.Tensor, rho: float) -> torch.Tensor:
    """Vectorised `int(n * rho)` (the release's float count): counts [N] long -> [N] long."""
    return torch.floor(counts.double() * rho).long()


def _rank_in_groups(scores: torch.Tensor, group: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Rank of each item among the items of its group, highest score first, ties to the earlier item.

    scores: [M]; group: [M] long in [0, n_groups). returns [M] long. Two stable sorts, no padding.
    """
    order = torch.sort(scores, descending=True, stable=True).indices  # [M]
    order = order[torch.sort(group[order], stable=True).indices]  # grouped, best first within a group
    counts = torch.bincount(group, minlength=n_groups)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.empty_like(order)
    ranks[order] = torch.arange(order.numel(), device=order.device) - starts[group[order]]
    return ranks


def _pair_frames(t: torch.Tensor, row: torch.Tensor) -> _Chunks:
    """Frames (runs of one time value) and their pairs, from the video tokens' times t [Nv] and rows [Nv]
    (sequence order, so each row's times ascend, as `get_rope_index` lays them out)."""
    new_frame = torch.ones_like(t, dtype=torch.bool)
    new_frame[1:] = (t[1:] != t[:-1]) | (row[1:] != row[:-1])
    frame = _dense_ids(new_frame)  # [Nv]
    frame_row, frame_t = row[new_frame], t[new_frame]  # [F]
    n_frames = frame_t.numel()
    first_of_row = torch.ones_like(frame_row, dtype=torch.bool)
    first_of_row[1:] = frame_row[1:] != frame_row[:-1]
    index = torch.arange(n_frames, device=t.device)
    row_first = torch.cummax(torch.where(first_of_row, index, 0), 0).values  # [F]
    second = (index - row_first) % 2 == 1
    frame_chunk = torch.cumsum((~second).long(), 0) - 1  # [F]
    return _Chunks(frame, torch.bincount(frame, minlength=n_frames), second, frame_chunk,
                   frame_row[~second], frame_t[~second])


def _audio_chunk(t: torch.Tensor, row: torch.Tensor, chunks: _Chunks) -> torch.Tensor:
    """Chunk of each audio token (times t [Na], rows [Na]): the last chunk of its row starting at or before
    it; -1 when none does (audio before the row's first frame, or a row without video)."""
    if chunks.chunk_start.numel() == 0:
        return torch.full_like(t, -1)
    chunk_key = chunks.chunk_row * _ROW_STRIDE + chunks.chunk_start  # [C], ascending
    index = torch.searchsorted(chunk_key, row * _ROW_STRIDE + t, right=True) - 1  # [Na]
    same_row = chunks.chunk_row[index.clamp_min(0)] == row
    return torch.where((index >= 0) & same_row, index, -1)


def _gather_frames(embeds: torch.Tensor, frame_pos: torch.Tensor) -> torch.Tensor:
    """Frames [n, P, D] gathered from flat embeddings [B*L, D] at token positions frame_pos [n, P] (-1:
    padding, zero tokens)."""
    n, width = frame_pos.shape
    frames = embeds.index_select(0, frame_pos.clamp_min(0).reshape(-1)).view(n, width, -1)
    return frames.masked_fill((frame_pos < 0).unsqueeze(-1), 0) if bool((frame_pos < 0).any()) else frames


def _frame_saliency(embeds: torch.Tensor, frame_pos: torch.Tensor, counts: torch.Tensor | None,
                    temporal: torch.Tensor, saliency_dtype: str) -> torch.Tensor:
    """Saliency [F, P] (fp32) of the frames whose tokens sit at frame_pos [F, P] of embeds [B*L, D]:
    temporal against frame f-1 where `temporal` [F], spatial elsewhere; `counts` [F] when frames are
    padded (None: all P real). Each frame gets only the saliency it uses, computed in blocks of frames
    gathered straight from the embeddings, so memory stays a few blocks' worth whatever the clip length."""
    out = torch.full(frame_pos.shape, float("-inf"), dtype=torch.float32, device=embeds.device)
    for is_temporal in (False, True):
        index = (temporal == is_temporal).nonzero().squeeze(-1)  # [n] frames scored this way
        for start in range(0, index.numel(), SALIENCY_BLOCK_FRAMES):
            block = index[start:start + SALIENCY_BLOCK_FRAMES]
            frames = _gather_frames(embeds, frame_pos[block])  # [n, P, D]
            if is_temporal:
                scores = temporal_saliency(frames, _gather_frames(embeds, frame_pos[block - 1]), saliency_dtype)
            else:
                scores = spatial_saliency(frames, saliency_dtype, None if counts is None else counts[block])
            out[block] = scores.float()
    return out


def _stvp_keep(embeds: torch.Tensor, v_pos: torch.Tensor, chunks: _Chunks, rho_video: float,
               saliency_dtype: str) -> torch.Tensor:
    """STVP keep mask [Nv] of the video tokens at flat positions v_pos [Nv] of embeds [B*L, D], all frames
    at once."""
    counts = chunks.frame_counts  # [F]
    n_frames = counts.numel()
    width = int(counts.max())
    uniform = bool(counts.min() == width)
    slot = None
    if uniform:
        frame_pos = v_pos.view(n_frames, width)  # [F, P]
    else:
        slot, _ = _group_slots(chunks.frame, n_frames)
        frame_pos = torch.full((n_frames, width), -1, dtype=torch.long, device=v_pos.device)
        frame_pos[chunks.frame, slot] = v_pos
    previous_counts = torch.cat([counts[:1], counts[:-1]])
    temporal = chunks.second & (counts == previous_counts)  # a second frame of another size is kept whole
    saliency = _frame_saliency(embeds, frame_pos, None if uniform else counts, temporal, saliency_dtype)
    if not uniform:
        saliency = saliency.masked_fill(frame_pos < 0, float("-inf"))
    kept = torch.where(chunks.second & ~temporal, counts, counts - _dropped(counts, rho_video))  # [F]
    frame_keep = keep_top(saliency, kept)  # [F, P]
    return frame_keep.reshape(-1) if uniform else frame_keep[chunks.frame, slot]


def _pad_groups(values: torch.Tensor, group: torch.Tensor, slot: torch.Tensor, n_groups: int,
                width: int) -> torch.Tensor:
    """values [M, D] placed at [group, slot] of a zero tensor [n_groups, width, D]."""
    out = values.new_zeros(n_groups, width, values.shape[-1])
    out[group, slot] = values
    return out


@dataclass
class _AudioSlabs:
    """Selector logits of all chunks' audio, padded: logits [S, W], each audio token at [slab, col]."""

    logits: torch.Tensor  # [S, W]
    slab: torch.Tensor  # [Na]
    col: torch.Tensor  # [Na]
    one_per_chunk: bool  # slab s is chunk s (no chunk spans several slabs)

    def flat(self) -> torch.Tensor:
        return self.logits[self.slab, self.col]  # [Na]


def _vgas_logits(selector: VisionGuidedAudioSelector, kept_video: torch.Tensor, kept_video_chunk: torch.Tensor,
                 audio: torch.Tensor, audio_chunk: torch.Tensor, n_chunks: int,
                 last_chunk: torch.Tensor) -> _AudioSlabs:
    """Selector logits of audio tokens [Na, D] (chunks nondecreasing), each guided by its chunk's kept
    video tokens [Kv, D] (chunks nondecreasing), in one padded call.

    The padded audio is cut in slabs as wide as the widest chunk that is not its row's last; a last chunk
    holding audio that outlasts the video spans several slabs, each guided by the chunk's video (an audio
    token's score depends only on itself and that video), so one long tail does not pad every chunk.
    """
    v_slot, v_counts = _group_slots(kept_video_chunk, n_chunks)
    video_pad = _pad_groups(kept_video, kept_video_chunk, v_slot, n_chunks, int(v_counts.max()))  # [C, V, D]
    a_slot, a_counts = _group_slots(audio_chunk, n_chunks)
    inner = a_counts[~last_chunk]
    width = max(int((inner if inner.numel() else a_counts).max()), 1)
    slabs = (a_counts + width - 1) // width  # [C] slabs per chunk
    n_slabs = int(slabs.sum())
    one_per_chunk = n_slabs == n_chunks and bool((slabs == 1).all())
    slab_base = torch.cumsum(slabs, 0) - slabs
    a_slab, a_col = slab_base[audio_chunk] + a_slot // width, a_slot % width
    audio_pad = _pad_groups(audio, a_slab, a_col, n_slabs, width)  # [S, W, D]
    slab_chunk = torch.repeat_interleave(torch.arange(n_chunks, device=audio.device), slabs, output_size=n_slabs)
    if not one_per_chunk:
        video_pad = video_pad.index_select(0, slab_chunk)  # [S, V, D]
    video_mask = torch.arange(video_pad.shape[1], device=audio.device) < v_counts[slab_chunk].unsqueeze(-1)
    logits = selector(video_pad, audio_pad, video_mask, logits=True)  # [S, W]
    return _AudioSlabs(logits, a_slab, a_col, one_per_chunk)


def _audio_keep(slabs: _AudioSlabs, audio_chunk: torch.Tensor, counts: torch.Tensor,
                kept: torch.Tensor) -> torch.Tensor:
    """Keep mask [Na]: the `kept[c]` highest logits of each chunk c (of `counts[c]` audio tokens), ties to
    the earlier token."""
    ranked = slabs.logits.detach().float()
    if slabs.one_per_chunk:  # slab c is chunk c: rank within the padded slabs
        padding = torch.arange(ranked.shape[1], device=ranked.device) >= counts.unsqueeze(-1)
        return keep_top(ranked.masked_fill(padding, float("-inf")), kept)[slabs.slab, slabs.col]
    ranks = _rank_in_groups(ranked[slabs.slab, slabs.col], audio_chunk, kept.numel())
    return ranks < kept[audio_chunk]


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
    saliency_dtype: str = "float32",
) -> SequenceDecision:
    """OmniSIFT's keep decisions for a batch of interleaved Qwen2.5-Omni sequences (see the module docstring).

    inputs_embeds: [B, L, D]; input_ids: [B, L]; position_ids: [3, B, L] (what `get_rope_index`
    returns); attention_mask: [B, L] (padding is never audio or video). `selector=None` keeps all audio.
    saliency_dtype: "float32" (default) or "input" (the release's arithmetic in the embeddings' dtype).
    """
    check_ratio("rho_video", rho_video)
    check_ratio("rho_audio", rho_audio)
    check_saliency_dtype(saliency_dtype)
    b, length, d = inputs_embeds.shape
    device = inputs_embeds.device
    real = torch.ones(b, length, dtype=torch.bool, device=device) if attention_mask is None else attention_mask.bool()
    is_video = (input_ids == video_token_id) & real
    is_audio = (input_ids == audio_token_id) & real
    embeds = inputs_embeds.reshape(b * length, d)
    times = position_ids[0].reshape(-1)  # [B*L]
    v_pos = is_video.reshape(-1).nonzero().squeeze(-1)  # [Nv] flat positions, sequence order
    a_pos = is_audio.reshape(-1).nonzero().squeeze(-1)  # [Na]
    keep = torch.ones(b * length, dtype=torch.bool, device=device)
    audio_scores = torch.zeros(b * length, dtype=torch.float32, device=device)
    chunks = _pair_frames(times[v_pos], torch.div(v_pos, length, rounding_mode="floor"))
    video_keep = torch.ones_like(v_pos, dtype=torch.bool)
    if v_pos.numel():
        video_keep = _stvp_keep(embeds, v_pos, chunks, rho_video, saliency_dtype)
        keep[v_pos] = video_keep

    a_chunk = _audio_chunk(times[a_pos], torch.div(a_pos, length, rounding_mode="floor"), chunks)  # [Na], -1: none
    in_chunk = a_chunk >= 0  # audio outside every chunk is kept
    if selector is not None and bool(in_chunk.any()):
        n_chunks = chunks.chunk_start.numel()
        a_pos, a_chunk = a_pos[in_chunk], a_chunk[in_chunk]
        kv_pos, kv_chunk = v_pos[video_keep], chunks.frame_chunk[chunks.frame[video_keep]]
        last_chunk = torch.ones(n_chunks, dtype=torch.bool, device=device)
        last_chunk[:-1] = chunks.chunk_row[1:] != chunks.chunk_row[:-1]
        slabs = _vgas_logits(selector, embeds.index_select(0, kv_pos), kv_chunk, embeds.index_select(0, a_pos),
                             a_chunk, n_chunks, last_chunk)
        a_counts = torch.bincount(a_chunk, minlength=n_chunks)  # [C]
        guided = torch.bincount(kv_chunk, minlength=n_chunks) > 0
        kept = a_counts - _dropped(a_counts, rho_audio)
        kept = torch.where(guided & (rho_audio < 1.0), kept, a_counts)  # release: no video left / rho = 1 keep all
        keep[a_pos] = _audio_keep(slabs, a_chunk, a_counts, kept)
        scores = _grouped_straight_through_scores(slabs.flat(), a_chunk, n_chunks)
        audio_scores = audio_scores.to(scores.dtype).index_put((a_pos,), scores)
    return SequenceDecision(keep.view(b, length), audio_scores.view(b, length), is_video, is_audio)


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
    saliency_dtype: str = "float32",
) -> torch.Tensor:
    """Bool keep-mask [B, L] of OmniSIFT over whole Qwen2.5-Omni sequences (see `decide_sequence`)."""
    with torch.no_grad():
        return decide_sequence(
            inputs_embeds, input_ids, position_ids, video_token_id=video_token_id,
            audio_token_id=audio_token_id, selector=selector, rho_video=rho_video, rho_audio=rho_audio,
            attention_mask=attention_mask, saliency_dtype=saliency_dtype,
        ).keep
