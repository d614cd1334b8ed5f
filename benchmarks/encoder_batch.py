"""Encoder chunks per second with 1, 2 and 4 streams: one chunk at a time against one batched tower forward
per round (`operators.encode_many`), side by side in one run, at the real Qwen2.5-Omni-7B widths.

    python -m benchmarks.encoder_batch                      # 320x240 frames, 1 layer per tower, 3 rounds
    python -m benchmarks.encoder_batch --width 640 --height 480

The model is random at the real widths (towers 1280 wide, output 3584) with `--layers` layers per stack,
float32 on the CPU unless `--device cuda --dtype bfloat16`. Each stream has its own frames and tone and
its own `ChunkEncoder` (preprocess, towers, OmniSIFT at 25% retention with its carried state). A round
gives every stream its next chunk; the two ways run the same rounds alternately (one round one way, then
the same round the other way, on encoders of their own), so both see the same machine load. Reported:
chunks per second of the whole per-chunk path, and the seconds in the towers alone per chunk. On a CPU
the towers' matrix products already use the cores at batch 1, so little is to be gained; a GPU runs a
few-hundred-token forward far below its capacity, which is where the batch pays.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from pipeline.offline.machine import machine
from streams.chunk import AUDIO_RATE, SAMPLES_PER_CHUNK, AVChunk


def stream_chunks(stream: int, rounds: int, width: int, height: int) -> list[AVChunk]:
    """`rounds` consecutive 2 s chunks of one stream: noise frames (4 at 2 fps) and a tone of its own."""
    rng = np.random.default_rng(stream)
    out = []
    for i in range(rounds):
        frames = rng.integers(0, 256, (4, height, width, 3), dtype=np.uint8)
        t = np.arange(SAMPLES_PER_CHUNK) / AUDIO_RATE + 2 * i
        audio = (0.3 * np.sin(2 * np.pi * (300 + 50 * stream) * t)).astype(np.float32)
        out.append(AVChunk(f"cam{stream}", i, 2.0 * i, frames, audio))
    return out


def measure(model, n_streams: int, rounds: int, width: int, height: int) -> dict:
    """Seconds of both ways over the same rounds (after one untimed round each), and tower seconds."""
    from operators import Compression, encode_many

    compression = Compression.of("omnisift", retention=0.25)
    chunks = [stream_chunks(s, rounds + 1, width, height) for s in range(n_streams)]
    alone = [compression.chunk_encoder(model) for _ in range(n_streams)]
    batched = [compression.chunk_encoder(model) for _ in range(n_streams)]
    seconds = {"alone": 0.0, "batched": 0.0}
    towers = {"alone": 0.0, "batched": 0.0}
    for r in range(rounds + 1):
        t0 = time.perf_counter()
        for enc, cs in zip(alone, chunks, strict=True):
            enc.process(cs[r])
        t1 = time.perf_counter()
        results = encode_many([(enc, cs[r]) for enc, cs in zip(batched, chunks, strict=True)])
        t2 = time.perf_counter()
        assert not any(isinstance(x, Exception) for x in results), results
        if r == 0:
            continue  # warm-up
        seconds["alone"] += t1 - t0
        seconds["batched"] += t2 - t1
        towers["alone"] += sum(enc.last_times.encode for enc in alone)
        towers["batched"] += batched[0].last_times.encode  # one forward for all: each chunk records it
    n = n_streams * rounds
    return {"streams": n_streams, "chunks": n,
            "alone_cps": n / seconds["alone"], "batched_cps": n / seconds["batched"],
            "alone_tower_s": towers["alone"] / n, "batched_tower_s": towers["batched"] / n}


def report(rows: list[dict], info: dict) -> str:
    m = info["machine"]
    lines = [f"Encoder at the real 7B widths, {info['layers']} layer(s) per tower, {info['dtype']} on "
             f"{info['device']}, "
             f"{info['width']}x{info['height']} frames ({info['tokens_per_frame']} tokens a frame), "
             f"{info['rounds']} timed rounds; {m['cpu']}, {m['logical_cores']} logical cores, torch threads "
             f"{m['threads']}, load {m['load_average_1min']} ({m['date']})", "",
             "| streams | one at a time, chunks/s | batched, chunks/s | batched / one at a time | "
             "towers s/chunk, one at a time | towers s/chunk, batched |",
             "|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['streams']} | {r['alone_cps']:.2f} | {r['batched_cps']:.2f} | "
                     f"{r['batched_cps'] / r['alone_cps']:.2f}x | {r['alone_tower_s']:.3f} | "
                     f"{r['batched_tower_s']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (one chunk per stream each)")
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--layers", type=int, default=1, help="layers per stack of the random model")
    parser.add_argument("--work", type=Path, default=Path("/tmp/omnisift-encoder-batch"))
    parser.add_argument("--device", default="cpu", help="cuda on a GPU")
    parser.add_argument("--dtype", default="float32", help="bfloat16 on a GPU")
    args = parser.parse_args(argv)
    from transformers.utils import logging as hf_logging

    from omnisift.loading import load_model
    from omnisift.tiny import make_real_width_omni

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    path = args.work / f"real-width-{args.layers}l"
    if not (path / "config.json").exists():
        make_real_width_omni(path, layers=args.layers, max_shard_size="1GB")
    model = load_model(path, device=args.device, dtype=args.dtype, part="towers")
    from operators import Compression

    probe = Compression.of("omnisift", retention=0.25).chunk_encoder(model)
    probe.process(stream_chunks(0, 1, args.width, args.height)[0])
    tokens_per_frame = probe.last_grid_hw[0] * probe.last_grid_hw[1]
    rows = [measure(model, n, args.rounds, args.width, args.height) for n in args.streams]
    info = {"machine": machine(), "layers": args.layers, "width": args.width, "height": args.height,
            "rounds": args.rounds, "tokens_per_frame": tokens_per_frame, "device": args.device, "dtype": args.dtype}
    print(report(rows, info))


if __name__ == "__main__":
    main()
