"""What a model replica dying for good costs its streams: how long they wait, what they drop, what is lost.

    python -m benchmarks.failover --streams 4 --replicas 2 [--before 12] [--after 16] [--model PATH]

Starts local Ray (2 CPUs), N synthetic real-time streams (320x240, 2 s chunks) over R model and R encoder
replicas, the tiny model unless `--model` is given. After `--before` seconds it kills model replica 0 for
good (`ray.kill(no_restart=True)`), runs `--after` seconds more, then prints one row per stream: its
model replica before and after, for a moved stream the seconds from the kill to its first chunk in the
new context and the lag of that chunk, its chunks in the context, dropped (by the live source while it
waited) and lost. Streams that stayed are the control: their chunks keep arriving every 2 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from benchmarks.ray_pipeline import bench_config, model_or_tiny


async def measure(n_streams: int, replicas: int, before: float, after: float, model: str) -> list[dict]:
    import ray

    from pipeline.ray import OmniStream

    cfg = bench_config(n_streams, model)
    cfg["model"]["replicas"] = replicas
    async with OmniStream.from_config(cfg) as p:
        first_fresh: dict[str, tuple[float, float]] = {}  # stream -> (wall time, lag) of its first fresh chunk

        async def collect():
            async for s in p.stats(max_pending=10_000):
                if s.fresh_context and s.stream not in first_fresh:
                    first_fresh[s.stream] = (time.time(), s.lag)

        task = asyncio.create_task(collect())
        await asyncio.sleep(before)
        was = {n: p.snapshot()["streams"][n]["replica"]["model"] for n in p.streams}
        killed = time.time()
        ray.kill(p.replicas.handles["model"][0], no_restart=True)
        await asyncio.sleep(after)
        snap = p.snapshot()["streams"]
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    rows = []
    for name in sorted(snap):
        s, fresh = snap[name], first_fresh.get(name)
        rows.append({"stream": name, "before": was[name], "after": s["replica"]["model"],
                     "kill_to_fresh_s": None if fresh is None else round(fresh[0] - killed, 2),
                     "fresh_lag_s": None if fresh is None else round(fresh[1], 2), "chunks": s["chunks"],
                     "dropped": s["dropped"], "lost": s["lost"], "moves": s["moves"]["model"]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--before", type=float, default=12.0)
    parser.add_argument("--after", type=float, default=16.0)
    parser.add_argument("--model", default=None, help="model path (default: the tiny random model)")
    args = parser.parse_args()
    import ray

    from pipeline.ray.local import start_local_ray

    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        rows = asyncio.run(measure(args.streams, args.replicas, args.before, args.after, model_or_tiny(args.model)))
    finally:
        ray.shutdown()
    for r in rows:
        print(json.dumps(r), flush=True)
    print("| stream | replica before -> after | kill -> first chunk in the new context (s) | its lag (s) | "
          "chunks | dropped | lost |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        gap = "-" if r["kill_to_fresh_s"] is None else f"{r['kill_to_fresh_s']:.2f}"
        lag = "-" if r["fresh_lag_s"] is None else f"{r['fresh_lag_s']:.2f}"
        print(f"| {r['stream']} | {r['before']} -> {r['after']} | {gap} | {lag} | {r['chunks']} | {r['dropped']} "
              f"| {r['lost']} |")


if __name__ == "__main__":
    main()
