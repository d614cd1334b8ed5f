"""Memory and lag of the Ray pipeline over a long run: does anything grow while streams run for hours?

    python -m benchmarks.soak --streams 2 --minutes 20 --every 60 [--model PATH] [--json out.json]

Starts local Ray, N synthetic real-time streams (320x240, 2 s chunks, a 60 s context window) and the tiny
model unless `--model` is given, and asks one question per stream every `--every` seconds (each question
forks the live context and is rolled back). Every `--every` seconds it samples the resident memory (RSS,
from /proc) of the driver and of every actor process, the KV-cache tokens, the chunks taken so far and
the lag of the chunks since the last sample. It prints one table row per sample, then each process's
growth from the first sample after the warm-up (a quarter of the run) to the last, in MB and MB per hour.
Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.ray_pipeline import bench_config, model_or_tiny

PROCESSES = ("driver", "sources", "encoder", "model")


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (VmRSS of /proc/PID/status); 0.0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


@dataclass(frozen=True)
class Sample:
    """One look at the running pipeline, `seconds` after it started."""

    seconds: float
    chunks: int  # taken into the contexts so far, all streams
    cache_tokens: int  # largest KV cache of any stream
    lag_p95: float | None  # over the chunks since the previous sample
    ask_s: float  # one question per stream, side by side
    rss: dict[str, float]  # MB per process in PROCESSES ("sources" summed over the streams)


def growth(samples: list[Sample], warmup_seconds: float) -> dict[str, tuple[float, float]]:
    """Per process: (MB gained, MB per hour) from the first sample at or after `warmup_seconds` to the
    last sample. Empty if fewer than two samples lie after the warm-up."""
    after = [s for s in samples if s.seconds >= warmup_seconds]
    if len(after) < 2:
        return {}
    first, last = after[0], after[-1]
    hours = (last.seconds - first.seconds) / 3600.0
    return {p: (last.rss[p] - first.rss[p], (last.rss[p] - first.rss[p]) / hours) for p in PROCESSES}


async def _pids(p) -> dict[str, list[int]]:
    """Process ids of the driver and of every actor (`where()` answers from inside each actor)."""
    sources = await asyncio.gather(*(st.source.where.remote() for st in p.streams.values()))
    encoder, model = await asyncio.gather(p.encoder.where.remote(), p.model.where.remote())
    return {"driver": [os.getpid()], "sources": [w["pid"] for w in sources],
            "encoder": [encoder["pid"]], "model": [model["pid"]]}


async def soak(n_streams: int, seconds: float, every: float, model: str) -> list[Sample]:
    from pipeline.ray import OmniStream

    cfg = bench_config(n_streams, model)
    samples: list[Sample] = []
    async with OmniStream.from_config(cfg) as p:
        lags: list[float] = []

        async def collect() -> None:
            async for s in p.stats():
                lags.append(s.lag)

        task = asyncio.create_task(collect())
        start = time.monotonic()
        try:
            while (elapsed := time.monotonic() - start) < seconds:
                await asyncio.sleep(min(every, seconds - elapsed))
                t = time.perf_counter()
                await asyncio.gather(*(p.ask("What is on the screen?", name, timeout=120) for name in p.streams))
                ask = time.perf_counter() - t
                pids = await _pids(p)  # asked each time: a restarted actor has a new process
                snap = p.snapshot()["streams"]
                window, lags[:] = sorted(lags), []
                samples.append(Sample(
                    round(time.monotonic() - start, 1), sum(s["chunks"] for s in snap.values()),
                    max((s["cache_tokens"] or 0) for s in snap.values()),
                    round(window[int(0.95 * (len(window) - 1))], 3) if window else None, round(ask, 3),
                    {name: round(sum(rss_mb(pid) for pid in ids), 1) for name, ids in pids.items()}))
                print(json.dumps(asdict(samples[-1])), flush=True)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    return samples


def report(samples: list[Sample], warmup_seconds: float) -> str:
    """The samples as a markdown table, then each process's growth after the warm-up."""
    lines = ["| s | chunks | cache tokens | lag p95 (s) | ask (s) | " + " | ".join(f"{p} MB" for p in PROCESSES) + " |",
             "|" + "---:|" * (5 + len(PROCESSES))]
    for s in samples:
        lines.append(f"| {s.seconds:.0f} | {s.chunks} | {s.cache_tokens} | {s.lag_p95} | {s.ask_s} | "
                     + " | ".join(f"{s.rss[p]:.1f}" for p in PROCESSES) + " |")
    lines += ["", f"Growth after the warm-up ({warmup_seconds:.0f} s):", "",
              "| process | MB | MB per hour |", "|---|---:|---:|"]
    for p, (mb, per_hour) in growth(samples, warmup_seconds).items():
        lines.append(f"| {p} | {mb:+.1f} | {per_hour:+.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=2)
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--every", type=float, default=60.0, help="seconds between samples")
    parser.add_argument("--model", default=None, help="model path (default: the tiny random model)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model = model_or_tiny(args.model)
    import ray

    from pipeline.ray.local import start_local_ray

    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        samples = asyncio.run(soak(args.streams, args.minutes * 60.0, args.every, model))
    finally:
        ray.shutdown()
    print(report(samples, args.minutes * 60.0 / 4))
    if args.json:
        Path(args.json).write_text(json.dumps([asdict(s) for s in samples], indent=1))


if __name__ == "__main__":
    main()
