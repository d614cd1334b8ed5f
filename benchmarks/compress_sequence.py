"""`compress_sequence` against a per-chunk loop with the release's rules, side by side on one long sequence.

    python -m benchmarks.compress_sequence                 # 30 minutes, 144 tokens a frame: 304,210 tokens

The sequence is laid out as the Qwen2.5-Omni processor lays it out (`omnisift.interleave.interleaved_input_ids`)
and its positions come from `transformers`' own `get_rope_index`. Embeddings are random at a narrow width
and the selector is narrow too, so that what is timed is the orchestration (finding chunks, padding,
ranking), not the selector's matrix products, which both sides do alike.

`release_loop_keep` is written from the release's rules as the fidelity issue states them, one chunk at a
time, the way the release's thinker forward calls `similarity_pruning`: distinct video time values taken
in pairs, boolean masks over the row for each frame and for the audio with time in [start, next start)
(the last pair takes all later audio), cosine saliency and `torch.topk` per frame, the selector and
`torch.topk` per chunk, `int(n * rho)` dropped, audio kept whole when no video is left or rho_audio = 1.
Both must keep exactly the same tokens; the run says so, or fails.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from omnisift.interleave import interleaved_input_ids, rope_positions_of, tiny_thinker
from omnisift.selector import VisionGuidedAudioSelector
from omnisift.sequence import compress_sequence
from pipeline.offline.machine import machine


def _top_sorted(scores: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices of the `keep` highest scores, ascending (what the release keeps of a frame or chunk)."""
    return torch.topk(scores, keep).indices.sort().values


def _prune_pair(row: torch.Tensor, idx1: torch.Tensor, idx2: torch.Tensor | None, rho_video: float) -> torch.Tensor:
    """Kept row indices of a pair's frames: frame 1 spatial, frame 2 temporal or whole if sizes differ."""
    f1 = row[idx1]
    n1 = len(idx1)
    spatial = 1 - F.cosine_similarity(f1, f1.mean(0, keepdim=True), dim=-1)
    kept = [idx1[_top_sorted(spatial, n1 - int(n1 * rho_video))]]
    if idx2 is not None:
        if len(idx2) != n1:
            kept.append(idx2)
        else:
            temporal = 1 - F.cosine_similarity(row[idx2], f1, dim=-1)
            kept.append(idx2[_top_sorted(temporal, n1 - int(n1 * rho_video))])
    return torch.cat(kept)


@torch.inference_mode()
def release_loop_keep(embeds: torch.Tensor, input_ids: torch.Tensor, position_ids: torch.Tensor, *,
                      video_token_id: int, audio_token_id: int, selector: VisionGuidedAudioSelector,
                      rho_video: float, rho_audio: float) -> torch.Tensor:
    """Keep mask [B, L] from a per-chunk loop over each row's video time pairs (one video per row).

    embeds: [B, L, D]; input_ids: [B, L]; position_ids: [3, B, L] from `get_rope_index`.
    """
    keep = torch.ones_like(input_ids, dtype=torch.bool)
    for b in range(input_ids.shape[0]):
        row, t = embeds[b], position_ids[0, b]
        is_video, is_audio = input_ids[b] == video_token_id, input_ids[b] == audio_token_id
        times = torch.unique(t[is_video])  # distinct video time values, ascending
        keep[b, is_video] = False
        for c in range(0, len(times), 2):
            idx1 = torch.nonzero(is_video & (t == times[c])).squeeze(1)
            idx2 = torch.nonzero(is_video & (t == times[c + 1])).squeeze(1) if c + 1 < len(times) else None
            kept_video = _prune_pair(row, idx1, idx2, rho_video)
            keep[b, kept_video] = True
            in_chunk = is_audio & (t >= times[c])
            if c + 2 < len(times):
                in_chunk &= t < times[c + 2]
            audio_idx = torch.nonzero(in_chunk).squeeze(1)
            if len(audio_idx) == 0 or len(kept_video) == 0 or rho_audio >= 1.0:
                continue  # no video left or audio pruning off: all of the chunk's audio stays
            logits = selector(row[kept_video], row[audio_idx], logits=True)
            n_a = len(audio_idx)
            keep[b, audio_idx] = False
            keep[b, audio_idx[_top_sorted(logits, n_a - int(n_a * rho_audio))]] = True
    return keep


class AudioSum(torch.nn.Module):
    """A scorer that costs (almost) nothing: the sum of each audio token. With it only the orchestration
    (finding chunks, padding, ranking) is timed on both sides; it decides differently from VGAS but the
    same on both sides (each token's score depends on that token alone)."""

    def forward(self, video: torch.Tensor, audio: torch.Tensor, video_mask: torch.Tensor | None = None,
                logits: bool = True) -> torch.Tensor:
        return audio.sum(-1)  # [..., La]


def scorers() -> list[tuple[str, int, torch.nn.Module]]:
    """(name, embedding width D, scorer) of each row of the benchmark."""
    torch.manual_seed(0)
    return [
        ("VGAS, hidden 32, 4 heads", 64, VisionGuidedAudioSelector(64, hidden_dim=32, num_heads=4).eval()),
        ("VGAS, hidden 8, 2 heads", 16, VisionGuidedAudioSelector(16, hidden_dim=8, num_heads=2).eval()),
        ("stand-in scorer (sum of each audio token)", 16, AudioSum()),
    ]


def interleaved_times(runs: dict[str, Callable[[], object]], reps: int) -> dict[str, list[float]]:
    """Wall times of each run, `reps` rounds, the runs alternating inside a round (same machine state)."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def bench_scorer(name: str, dim: int, scorer: torch.nn.Module, input_ids: torch.Tensor, position_ids: torch.Tensor,
                 config, args) -> dict:
    """Both implementations on one sequence with random embeddings [1, L, dim]: decisions, then times."""
    g = torch.Generator().manual_seed(0)
    embeds = torch.randn(1, input_ids.shape[1], dim, generator=g)
    common = {"video_token_id": config.video_token_id, "audio_token_id": config.audio_token_id,
              "selector": scorer, "rho_video": args.rho_video, "rho_audio": args.rho_audio}
    runs = {"loop": lambda: release_loop_keep(embeds, input_ids, position_ids, **common),
            "batched": lambda: compress_sequence(embeds, input_ids, position_ids, **common)}
    decisions = {key: fn() for key, fn in runs.items()}  # warm-up, and the decisions to compare
    differing = int((decisions["loop"] != decisions["batched"]).sum())
    if differing:
        raise SystemExit(f"{name}: decisions differ at {differing} tokens")
    times = interleaved_times(runs, args.reps)
    medians = {key: statistics.median(ts) for key, ts in times.items()}
    is_av = (input_ids == config.video_token_id) | (input_ids == config.audio_token_id)
    return {"scorer": name, "dim": dim, "times_s": times, "median_s": medians,
            "kept": int((decisions["batched"] & is_av).sum()), "speedup": medians["loop"] / medians["batched"]}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.compress_sequence",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--grid", type=int, nargs=2, default=[12, 12], metavar=("ROWS", "COLS"),
                        help="merged tokens per frame, rows x cols (12 x 12 = 144)")
    parser.add_argument("--seconds-per-grid", type=float, default=1.0, help="1.0 is 2 fps")
    parser.add_argument("--rho-video", type=float, default=0.7)
    parser.add_argument("--rho-audio", type=float, default=0.3)
    parser.add_argument("--reps", type=int, default=7, help="timed rounds, after one untimed warm-up of each")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    thinker = tiny_thinker()
    cfg = thinker.config
    rows, cols = args.grid
    grid_t = round(args.minutes * 60 / args.seconds_per_grid)
    audio_tokens = round(args.minutes * 60 * cfg.position_id_per_seconds)
    input_ids = interleaved_input_ids(cfg, grid_t, rows, cols, audio_tokens, args.seconds_per_grid)
    position_ids = rope_positions_of(thinker, input_ids, grid_t, rows, cols, audio_tokens, args.seconds_per_grid)
    is_av = (input_ids == cfg.video_token_id) | (input_ids == cfg.audio_token_id)
    result = {"args": vars(args), "tokens": input_ids.shape[1], "av": int(is_av.sum()), "chunks": (grid_t + 1) // 2,
              "rows": []}
    for name, dim, scorer in scorers():
        result["rows"].append(bench_scorer(name, dim, scorer, input_ids, position_ids, cfg, args))
        print(f"  {name}: {result['rows'][-1]['speedup']:.1f}x", flush=True)
    result["machine"] = machine()
    print(markdown(result))
    return result


def markdown(r: dict) -> str:
    m, a = r["machine"], r["args"]
    lines = [
        (f"{a['minutes']:g} minutes, {a['grid'][0]} x {a['grid'][1]} tokens a frame, {a['seconds_per_grid']:g} s per "
        f"grid: {r['tokens']:,} tokens from `get_rope_index` ({r['av']:,} audio + video), {r['chunks']} chunks; "
        f"rho_video = {a['rho_video']}, rho_audio = {a['rho_audio']}; fp32 random embeddings. Identical decisions "
        f"on every row. {m['cpu']}, {m['threads']} torch thread(s), torch {m['torch']}, {m['date']}, load "
        f"{m['load_average_1min']} at the end; medians of {a['reps']} alternating runs after a warm-up."),
        "",
        "| scorer | D | release loop (s) | `compress_sequence` (s) | per chunk (ms), loop / batched | speed-up |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in r["rows"]:
        loop, batched = row["median_s"]["loop"], row["median_s"]["batched"]
        lines.append(f"| {row['scorer']} | {row['dim']} | {loop:.3f} | {batched:.3f} | "
                     f"{1e3 * loop / r['chunks']:.2f} / {1e3 * batched / r['chunks']:.3f} | {row['speedup']:.1f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
