"""The public OmniSIFT release's keep decisions for one row, re-derived in float64 from its rules.

Written from the rules the fidelity issue states for the release (`similarity_pruning` and the thinker
forward that calls it), not from `omnisift/`; only the test helpers of `omnisift_reference` are shared:

- counts: `int(n * rho)` tokens dropped, in Python floats;
- chunks: the row's distinct video time values (`position_ids[0]`) taken in pairs; a frame is every video
  token with that time value; chunk c starts at its first frame's time and owns every audio token with
  time in [start_c, start_c+1); the last chunk takes all later audio; audio before the first frame is in
  no chunk and stays;
- frame 1: spatial saliency `1 - cos(x_i, mean x)`; frame 2: temporal `1 - cos(x2_i, x1_i)`, or kept whole
  when its size differs from frame 1's; the highest-saliency tokens stay, ties to the earlier token;
- audio: scored from the chunk's kept video tokens; all of it stays when no video token is left or
  rho_audio = 1, else `n_a - int(n_a * rho_audio)` highest scores stay.

Saliency is float64 by default; `saliency="bfloat16"` computes it frame by frame in bf16 with plain torch
calls (mean, then `1 - cosine_similarity`), the release's arithmetic on bf16 tokens.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from omnisift_reference import top_sorted

Scorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (kept video [Kv, D], audio [Na, D]) -> [Na]


def _cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def saliency_float64(frame: torch.Tensor, previous: torch.Tensor | None) -> list[float]:
    """Spatial (previous None) or temporal saliency of frame [n, D] in float64."""
    x = frame.double().numpy()
    if previous is None:
        return list(1.0 - _cosine_rows(x, x.mean(axis=0, keepdims=True)))
    return list(1.0 - _cosine_rows(x, previous.double().numpy()))


def saliency_bfloat16(frame: torch.Tensor, previous: torch.Tensor | None) -> list[float]:
    """The same saliency computed in bf16, one frame at a time."""
    x = frame.bfloat16()
    other = x.mean(0, keepdim=True) if previous is None else previous.bfloat16()
    return (1 - F.cosine_similarity(x, other, dim=-1)).float().tolist()


SALIENCY = {"float64": saliency_float64, "bfloat16": saliency_bfloat16}


def release_keep(embeds: torch.Tensor, input_ids: torch.Tensor, position_ids: torch.Tensor, *,
                 video_token_id: int, audio_token_id: int, scorer: Scorer | None, rho_video: float,
                 rho_audio: float, saliency: str = "float64") -> list[bool]:
    """Keep flag of every token of one row. embeds [L, D]; input_ids [L]; position_ids [3, L]."""
    ids, times = input_ids.tolist(), position_ids[0].tolist()
    video = [i for i, tok in enumerate(ids) if tok == video_token_id]
    audio = [i for i, tok in enumerate(ids) if tok == audio_token_id]
    values = sorted({times[i] for i in video})
    frames = [[i for i in video if times[i] == v] for v in values]
    keep = [True] * len(ids)
    for c in range(0, len(frames), 2):
        pair = frames[c:c + 2]
        kept_video = _prune_pair(embeds, pair, rho_video, SALIENCY[saliency])
        for i in (i for frame in pair for i in frame if i not in kept_video):
            keep[i] = False
        end = values[c + 2] if c + 2 < len(values) else math.inf
        chunk_audio = [i for i in audio if values[c] <= times[i] < end]
        if not chunk_audio or not kept_video or rho_audio >= 1.0 or scorer is None:
            continue  # no video left, or audio pruning off: the chunk's audio all stays
        scores = scorer(embeds[sorted(kept_video)].double(), embeds[chunk_audio].double())
        n_a = len(chunk_audio)
        stay = {chunk_audio[j] for j in top_sorted(scores.detach().double().numpy(), n_a - int(n_a * rho_audio))}
        for i in chunk_audio:
            keep[i] = i in stay
    return keep


def _prune_pair(embeds: torch.Tensor, pair: list[list[int]], rho_video: float, saliency) -> set[int]:
    """Row indices kept of a pair's one or two frames."""
    first = pair[0]
    n = len(first)
    stay = {first[j] for j in top_sorted(saliency(embeds[first], None), n - int(n * rho_video))}
    if len(pair) == 2:
        second = pair[1]
        if len(second) != n:
            stay |= set(second)  # no grid position to compare with: kept whole
        else:
            scores = saliency(embeds[second], embeds[first])
            stay |= {second[j] for j in top_sorted(scores, n - int(n * rho_video))}
    return stay
