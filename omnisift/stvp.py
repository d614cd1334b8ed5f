"""STVP: spatio-temporal video pruning by cosine saliency (OmniSIFT, DESIGN section 3).

Per chunk, the first visual frame is scored by *spatial* saliency (how far each token is from the
frame's mean token) and the second by *temporal* saliency (how far each token moved from the token at
the same grid position in the first frame). `floor(n_p * rho_video)` tokens are dropped per frame and
the survivors keep raster order. No attention scores are needed, so STVP runs under FlashAttention.

The batched core, `frame_saliency` + `keep_top`, is shared by the per-chunk API (`stvp`) and the
whole-sequence path (`omnisift.sequence.compress_sequence`), so both take identical decisions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisift.ratios import check_ratio, kept_count


def frame_saliency(
    frames: torch.Tensor, valid: torch.Tensor, previous: torch.Tensor | None, has_previous: torch.Tensor | None
) -> torch.Tensor:
    """Saliency of every token of a batch of frames, in fp32.

    frames:       [N, P, D] tokens of N frames, padded to P tokens.
    valid:        [N, P] bool, which tokens are real.
    previous:     [N, P, D] the frame each one is compared with at the same grid position, or None.
    has_previous: [N] bool, which frames use temporal saliency (the rest use spatial), or None.
    returns:      [N, P] fp32 saliency; padded tokens get -inf.
    """
    x = frames.float()
    weights = valid.unsqueeze(-1).float()  # [N, P, 1]
    mean = (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # [N, D]
    saliency = 1.0 - F.cosine_similarity(x, mean.unsqueeze(1), dim=-1)  # [N, P] spatial
    if previous is not None:
        temporal = 1.0 - F.cosine_similarity(x, previous.float(), dim=-1)  # [N, P]
        saliency = torch.where(has_previous.unsqueeze(-1), temporal, saliency)
    return saliency.masked_fill(~valid, float("-inf"))


def keep_top(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the `keep[n]` highest scores of each row; ties go to the earlier token.

    scores: [N, P] (padding at -inf); keep: [N] long. returns [N, P] bool.
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices  # [N, P]
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks < keep.unsqueeze(-1)


def stvp(
    frame1: torch.Tensor, frame2: torch.Tensor | None, rho_video: float
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prune the two visual frames of one chunk.

    frame1, frame2: [n_p, D] tokens of the chunk's first and second frame (same grid); frame2 may be
    None for a chunk with a single frame (spatial saliency only).
    rho_video: fraction of tokens dropped per frame; `floor(n_p * rho_video)` go.
    returns: (keep1, keep2) sorted LongTensor indices into each frame (keep2 None when frame2 is None).
    """
    if frame1.ndim != 2 or (frame2 is not None and frame2.shape != frame1.shape):
        raise ValueError(
            f"stvp expects frames of shape [n_p, D] on the same grid, got {tuple(frame1.shape)} and "
            f"{None if frame2 is None else tuple(frame2.shape)}"
        )
    check_ratio("rho_video", rho_video)
    n_p = frame1.shape[0]
    frames = frame1.unsqueeze(0) if frame2 is None else torch.stack([frame1, frame2])  # [N, n_p, D]
    n = frames.shape[0]
    valid = torch.ones(n, n_p, dtype=torch.bool, device=frame1.device)
    previous = has_previous = None
    if frame2 is not None:
        previous = torch.stack([frame1, frame1])
        has_previous = torch.tensor([False, True], device=frame1.device)
    saliency = frame_saliency(frames, valid, previous, has_previous)
    keep_n = torch.full((n,), kept_count(n_p, rho_video), dtype=torch.long, device=frame1.device)
    mask = keep_top(saliency, keep_n)  # [N, n_p]
    keeps = [row.nonzero().squeeze(-1) for row in mask]
    return keeps[0], (keeps[1] if frame2 is not None else None)
