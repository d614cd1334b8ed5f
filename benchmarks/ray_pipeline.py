"""End-to-end figures of the Ray pipeline for 1..N live streams on this machine.

    python -m benchmarks.ray_pipeline --streams 1 2 3 4 --seconds 20 [--model PATH] [--json out.json]

Each run starts local Ray, N synthetic real-time streams (320x240, 2 s chunks) and the tiny model
unless `--model` is given, lets them run `--seconds`, asks one question per stream at the end, and
reports: real-time factor (media seconds that reached the context per wall second, per stream; 1.0 keeps
up), mean and p95 lag (capture -> in context), question latency, and chunks dropped by `drop_oldest`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from pathlib import Path


def bench_config(n_streams: int, model: str) -> dict:
    """The pipeline both Ray benchmarks run: N synthetic live streams (320x240, 10 fps, 2 s chunks) named
    s0, s1, ..., a 60-second window, no ZeroMQ or metrics server."""
    source = {"type": "synthetic", "pattern": "testsrc2", "width": 320, "height": 240, "fps": 10,
              "duration": None, "realtime": True}
    return {"streams": [{"name": f"s{i}", "source": source} for i in range(n_streams)],
            "model": {"path": model, "window_seconds": 60, "max_new_tokens": 8},
            "zmq": {"pub": None, "rep": None}, "metrics": {"port": None}, "http": {"port": None},
            "history": {"path": None}, "clips": {"dir": None},
            "resources": {"source": {"num_cpus": 0}, "encoder": {"num_cpus": 0.5}, "model": {"num_cpus": 0.5}}}


async def measure(n_streams: int, seconds: float, model: str) -> dict:
    from pipeline.ray import OmniStream

    cfg = bench_config(n_streams, model)
    async with OmniStream.from_config(cfg) as p:
        lags, media = [], dict.fromkeys(p.streams, 0.0)
        start = time.monotonic()

        async def collect():
            async for s in p.stats():
                if time.monotonic() - start > 3.0:  # skip the warm-up
                    lags.append(s.lag)
                    media[s.stream] += s.duration

        task = asyncio.create_task(collect())
        await asyncio.sleep(3.0 + seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        t = time.perf_counter()
        await asyncio.gather(*(p.ask("What is on the screen?", name, timeout=120) for name in p.streams))
        ask = time.perf_counter() - t
        snap = p.snapshot()
    lags.sort()
    return {
        "streams": n_streams,
        "rtf_per_stream": round(statistics.mean(m / seconds for m in media.values()), 3),
        "lag_mean_s": round(statistics.mean(lags), 3) if lags else None,
        "lag_p95_s": round(lags[int(0.95 * (len(lags) - 1))], 3) if lags else None,
        "ask_all_streams_s": round(ask, 3),
        "dropped": sum(s["dropped"] for s in snap["streams"].values()),
    }


def model_or_tiny(path: str | None) -> str:
    """`path`, or the tiny random Qwen2.5-Omni when none is given."""
    from omnisift.tiny import resolve_model

    return resolve_model(path, fallback_tiny=False)[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--model", default=None, help="model path (default: the tiny random model)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    model = model_or_tiny(args.model)
    rows = []
    for n in args.streams:
        import ray

        from pipeline.ray.local import start_local_ray

        start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
        try:
            rows.append(asyncio.run(measure(n, args.seconds, model)))
        finally:
            ray.shutdown()
        print(json.dumps(rows[-1]), flush=True)
    print("| streams | RTF per stream | lag mean (s) | lag p95 (s) | one question per stream (s) | dropped |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['streams']} | {r['rtf_per_stream']} | {r['lag_mean_s']} | {r['lag_p95_s']} | "
              f"{r['ask_all_streams_s']} | {r['dropped']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
