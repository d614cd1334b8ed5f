"""Independent re-implementations of docs/design.md section 2 and 3, used as oracles by the omnisift tests.

Written from the formulas, not from `omnisift/`: float64 numpy for STVP, plain functional ops for VGAS,
the release's count (`int(n * rho)` in Python floats) and a walk over the token layout for chunking at
2 fps. `release_reference.py` beside it derives whole sequences from their time values at any frame rate.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

import omnisift


def dropped(n: int, rho: float) -> int:
    """Tokens the release drops of n: `int(n * rho)` in Python floats (0.29 * 100 = 28.999... -> 28)."""
    return int(n * rho)


def top_sorted(saliency: np.ndarray, keep: int) -> list[int]:
    """Indices of the `keep` largest values (ties to the earlier index), in increasing order."""
    order = sorted(range(len(saliency)), key=lambda i: (-saliency[i], i))
    return sorted(order[:keep])


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def spatial_saliency(f1: np.ndarray) -> np.ndarray:
    mean = f1.mean(axis=0)
    return np.array([1.0 - cos(row, mean) for row in f1])


def temporal_saliency(f1: np.ndarray, f2: np.ndarray) -> np.ndarray:
    return np.array([1.0 - cos(f2[i], f1[i]) for i in range(len(f1))])


def stvp(f1: torch.Tensor, f2: torch.Tensor | None, rho: float) -> tuple[list[int], list[int] | None]:
    """Plain-loop STVP in float64; a second frame of another size is kept whole."""
    a = f1.double().cpu().numpy()
    keep = len(a) - dropped(len(a), rho)
    keep1 = top_sorted(spatial_saliency(a), keep)
    if f2 is None:
        return keep1, None
    if len(f2) != len(a):
        return keep1, list(range(len(f2)))
    return keep1, top_sorted(temporal_saliency(a, f2.double().cpu().numpy()), keep)


def vgas(sel: torch.nn.Module, video: torch.Tensor, audio: torch.Tensor, logits: bool = False) -> torch.Tensor:
    """VGAS forward from the selector's weights with functional ops; video [Lv, D], audio [La, D].
    Scores in (0, 1), or with `logits=True` the score head's output before the sigmoid."""
    p = {k: v.detach().double() for k, v in sel.state_dict().items()}
    hidden = p["v_proj.weight"].shape[0]
    heads = sel.cross_attn.num_heads
    a = F.layer_norm(F.linear(audio.double(), p["a_proj.weight"], p["a_proj.bias"]), (hidden,),
                     p["a_norm.weight"], p["a_norm.bias"])  # [La, H]
    if video.shape[0]:
        v = F.layer_norm(F.linear(video.double(), p["v_proj.weight"], p["v_proj.bias"]), (hidden,),
                         p["v_norm.weight"], p["v_norm.bias"])  # [Lv, H]
        wq, wk, wv = p["cross_attn.in_proj_weight"].chunk(3)
        bq, bk, bv = p["cross_attn.in_proj_bias"].chunk(3)
        q = (a @ wq.T + bq).view(-1, heads, hidden // heads).transpose(0, 1)  # [h, La, d]
        k = (v @ wk.T + bk).view(-1, heads, hidden // heads).transpose(0, 1)  # [h, Lv, d]
        val = (v @ wv.T + bv).view(-1, heads, hidden // heads).transpose(0, 1)
        att = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hidden // heads), dim=-1) @ val  # [h, La, d]
        att = att.transpose(0, 1).reshape(-1, hidden)
        att = att @ p["cross_attn.out_proj.weight"].T + p["cross_attn.out_proj.bias"]
    else:  # no video: nothing to attend to
        att = torch.zeros_like(a)
    x = F.layer_norm(att + a, (hidden,), p["post_attn_norm.weight"], p["post_attn_norm.bias"])
    h = F.silu(x @ p["score_head.0.weight"].T + p["score_head.0.bias"])
    z = (h @ p["score_head.2.weight"].T + p["score_head.2.bias"]).squeeze(-1)  # [La]
    return z if logits else torch.sigmoid(z)


def select_audio(scores: torch.Tensor, rho: float, kept_video: int | None = None) -> list[int]:
    """The release keeps every audio token at rho = 1 or with no video left, else drops int(n * rho)."""
    s = scores.detach().double().cpu().numpy()
    if rho >= 1.0 or kept_video == 0:
        return list(range(len(s)))
    return top_sorted(s, len(s) - dropped(len(s), rho))


def av_chunks(input_ids: list[int], video_token_id: int, audio_token_id: int, tokens_per_frame: int,
              frames: int) -> list[dict]:
    """Slice one row's audio-video segment into chunks by the docs/design.md section 2 layout at 2 fps.

    Walks the tokens: each chunk is up to 2 frames of `tokens_per_frame` video tokens, then up to 50 audio
    tokens; audio that outlasts the video joins the last chunk with frames (the release's last pair takes
    all later audio). Returns per chunk the row indices of frame 1, frame 2 (or None) and the audio tokens.
    """
    start = next(i for i, t in enumerate(input_ids) if t in (video_token_id, audio_token_id))
    n_audio = sum(t == audio_token_id for t in input_ids)
    chunks, i, frames_left, audio_left = [], start, frames, n_audio
    while frames_left or audio_left:
        chunk = {"frames": [], "audio": []}
        for _ in range(min(2, frames_left)):
            idx = list(range(i, i + tokens_per_frame))
            assert all(input_ids[j] == video_token_id for j in idx)
            chunk["frames"].append(idx)
            i += tokens_per_frame
            frames_left -= 1
        n = min(50, audio_left)
        chunk["audio"] = list(range(i, i + n))
        assert all(input_ids[j] == audio_token_id for j in chunk["audio"])
        i += n
        audio_left -= n
        if chunk["frames"] or not chunks:
            chunks.append(chunk)
        else:
            chunks[-1]["audio"] += chunk["audio"]
    assert all(t not in (video_token_id, audio_token_id) for t in input_ids[i:])
    return chunks


def chunkwise_keep(embeds: torch.Tensor, input_ids: torch.Tensor, selector, rho_video: float, rho_audio: float,
                   *, video_token_id: int, audio_token_id: int, tokens_per_frame: int, frames: int) -> torch.Tensor:
    """Keep mask [L] of one row from the per-chunk public API (stvp, selector, select_audio)."""
    ids = input_ids.tolist()
    keep = torch.ones(len(ids), dtype=torch.bool)
    for chunk in av_chunks(ids, video_token_id, audio_token_id, tokens_per_frame, frames):
        kept_video = []
        if chunk["frames"]:
            f1 = embeds[chunk["frames"][0]]
            f2 = embeds[chunk["frames"][1]] if len(chunk["frames"]) > 1 else None
            k1, k2 = omnisift.stvp(f1, f2, rho_video)
            for idx, k in zip(chunk["frames"], (k1, k2), strict=False):  # a one-frame chunk has no k2
                if k is None:
                    continue
                drop = torch.ones(len(idx), dtype=torch.bool)
                drop[k] = False
                keep[torch.tensor(idx)[drop]] = False
                kept_video.append(embeds[torch.tensor(idx)[k]])
        if chunk["audio"] and selector is not None:
            a_idx = torch.tensor(chunk["audio"])
            video = torch.cat(kept_video) if kept_video else embeds.new_zeros(0, embeds.shape[-1])
            scores = selector(video, embeds[a_idx])
            kept = omnisift.select_audio(scores, rho_audio, kept_video=video.shape[0])
            drop = torch.ones(len(a_idx), dtype=torch.bool)
            drop[kept] = False
            keep[a_idx[drop]] = False
    return keep
