"""STVP: spatio-temporal video pruning by cosine saliency (OmniSIFT, docs/design.md section 3).

Per chunk, the first visual frame is scored by *spatial* saliency (how far each token is from the
frame's mean token) and the second by *temporal* saliency (how far each token moved from the token at
the same grid position in the first frame). `int(n_p * rho_video)` tokens are dropped per frame (the
release's count, `omnisift.ratios.kept_count`) and the survivors keep raster order. As in the release, a
second frame whose token count differs from the first's has no token to compare with and is kept whole.
No attention scores are needed, so STVP runs under FlashAttention.

Saliency arithmetic (`saliency_dtype`): "float32" (default) computes the mean and the cosines in fp32
whatever the tokens' dtype; "input" computes them in the tokens' own dtype, which is what the release does
(bf16 in its use), so bf16 tokens get its exact rounding and ties. fp32 ranks tokens by the formula's
value; in bf16 many near-equal saliencies round to the same value and near-ties flip.

The batched core (`spatial_saliency`, `temporal_saliency`, `keep_top`) is shared by the per-chunk API
(`stvp`), the streaming compressor and the whole-sequence path (`omnisift.sequence`): on the same frames
they compute bit-identical saliencies, hence identical decisions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from omnisift.ratios import check_ratio, kept_count

SALIENCY_DTYPES = ("float32", "input")


def check_saliency_dtype(value: str) -> str:
    """Return `value` if it names a saliency arithmetic, else raise a one-line ValueError."""
    if value not in SALIENCY_DTYPES:
        raise ValueError(f"saliency_dtype must be one of {', '.join(SALIENCY_DTYPES)}, got {value!r}")
    return value


def _in_saliency_dtype(x: torch.Tensor, saliency_dtype: str) -> torch.Tensor:
    return x if saliency_dtype == "input" else x.float()


def spatial_saliency(frames: torch.Tensor, saliency_dtype: str = "float32",
                     counts: torch.Tensor | None = None) -> torch.Tensor:
    """`1 - cos(token, frame mean)` of every token of a batch of frames.

    frames: [N, P, D]; counts: [N] real tokens per frame when frames are padded to P (None: no padding).
    returns: [N, P] in fp32, or in the tokens' dtype with saliency_dtype="input"; padded slots are junk.
    """
    x = _in_saliency_dtype(frames, saliency_dtype)
    if counts is None:
        mean = x.mean(1, keepdim=True)  # [N, 1, D]
    else:
        valid = (torch.arange(x.shape[1], device=x.device) < counts.unsqueeze(-1)).unsqueeze(-1)  # [N, P, 1]
        total = (x.float() * valid).sum(1, keepdim=True)
        mean = (total / counts.clamp_min(1).view(-1, 1, 1)).to(x.dtype)
    return 1 - F.cosine_similarity(x, mean, dim=-1)


def temporal_saliency(frames: torch.Tensor, previous: torch.Tensor, saliency_dtype: str = "float32") -> torch.Tensor:
    """`1 - cos(token, same grid position in the previous frame)`: frames, previous [N, P, D] -> [N, P]."""
    x = _in_saliency_dtype(frames, saliency_dtype)
    return 1 - F.cosine_similarity(x, _in_saliency_dtype(previous, saliency_dtype), dim=-1)


def keep_top(scores: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Boolean mask of the `keep[n]` highest scores of each row; ties go to the earlier token.

    scores: [N, P] (padding at -inf); keep: [N] long. returns [N, P] bool.
    """
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices  # [N, P]
    ranks = torch.empty_like(order)
    ranks.scatter_(-1, order, torch.arange(scores.shape[-1], device=scores.device).expand_as(order))
    return ranks < keep.unsqueeze(-1)


def stvp(
    frame1: torch.Tensor, frame2: torch.Tensor | None, rho_video: float, saliency_dtype: str = "float32",
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Prune the two visual frames of one chunk.

    frame1: [n_1, D] and frame2: [n_2, D] tokens of the chunk's first and second frame; frame2 may be None
    for a chunk with a single frame (spatial saliency only), and is kept whole when n_2 != n_1 (no grid
    position to compare with; the release does the same).
    rho_video: fraction of tokens dropped per frame; `int(n * rho_video)` go.
    returns: (keep1, keep2) sorted LongTensor indices into each frame (keep2 None when frame2 is None).
    """
    if frame1.ndim != 2 or (frame2 is not None and (frame2.ndim != 2 or frame2.shape[1] != frame1.shape[1])):
        raise ValueError(
            f"stvp expects frames of shape [n_p, D] of one width D, got {tuple(frame1.shape)} and "
            f"{None if frame2 is None else tuple(frame2.shape)}"
        )
    check_ratio("rho_video", rho_video)
    check_saliency_dtype(saliency_dtype)
    device = frame1.device
    n_1 = frame1.shape[0]
    keep_n = torch.tensor([kept_count(n_1, rho_video)], device=device)
    keep1 = keep_top(spatial_saliency(frame1.unsqueeze(0), saliency_dtype), keep_n)[0].nonzero().squeeze(-1)
    if frame2 is None:
        return keep1, None
    if frame2.shape[0] != n_1:
        return keep1, torch.arange(frame2.shape[0], device=device)
    temporal = temporal_saliency(frame2.unsqueeze(0), frame1.unsqueeze(0), saliency_dtype)  # [1, n_p]
    return keep1, keep_top(temporal, keep_n)[0].nonzero().squeeze(-1)
