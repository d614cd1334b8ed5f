"""A day of media through the whole Ray pipeline as fast as it goes: is every process flat after warm-up?

    python -m benchmarks.soak_day --chunks 43200 --out docs/soak_day.jsonl [--model PATH]
    python -m benchmarks.soak_day --report docs/soak_day.jsonl    # the table of a finished run

One unpaced synthetic stream (lavfi testsrc2, `realtime: false`, so the source, encoder and model actors
run as fast as they can) until `--chunks` chunks are in the context (stopped there, every actor still up
for the last sample), the tiny random model unless `--model` is given, a `--window`-second context
window, one standing question (watch, evaluated every `--watch-every` seconds of media) and one question
every `--ask-every` chunks. Every `--sample-every` chunks it writes one JSON line: media seconds, wall
seconds, counters (chunks, dropped, lost, questions asked and answered, watch evaluations), the KV-cache
length and the largest position in it (read inside the model actor), and for every process (driver,
source, encoder, model) the resident memory (VmRSS from /proc) and the number of objects Python's
garbage collector tracks. At the end it prints the flatness table (`flatness`, `table`): RSS at the end
of the warm-up and at the end, growth in % and MB per media hour. Linux only (/proc).
`benchmarks.soak_plot` draws the JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.ray_pipeline import model_or_tiny
from benchmarks.soak import rss_mb
from pipeline.ray.process import malloc_trim

PROCESSES = ("driver", "source", "encoder", "model")
CHUNK_SECONDS = 2.0
QUESTION = "What is on the screen?"
WATCH = "Is there a red square on the screen?"


def day_config(model: str, chunks: int, width: int, height: int, window: float) -> dict:
    """One unpaced synthetic stream `s0` with media for `chunks` 2-second chunks and a minute more (the
    run stops at `chunks`, before the source ends); 2 fps is all the chunker samples; a `window`-second
    context; no network faces."""
    source = {"type": "synthetic", "pattern": "testsrc2", "width": width, "height": height, "fps": 2,
              "duration": chunks * CHUNK_SECONDS + 60.0, "realtime": False}
    return {"streams": [{"name": "s0", "source": source}],
            "model": {"path": model, "window_seconds": window, "max_new_tokens": 8},
            "zmq": {"pub": None, "rep": None}, "metrics": {"port": None}, "http": {"port": None},
            "history": {"path": None}, "clips": {"dir": None},
            "resources": {"source": {"num_cpus": 0}, "encoder": {"num_cpus": 0.5}, "model": {"num_cpus": 0.5}}}


# ---- the arithmetic (tested without Ray) -------------------------------------------------------------


@dataclass(frozen=True)
class Growth:
    """One process between the end of the warm-up and the last sample."""

    process: str
    warm_mb: float  # RSS at the first sample at or after the warm-up
    end_mb: float  # RSS at the last sample
    percent: float  # (end - warm) / warm * 100
    mb_per_media_hour: float  # (end - warm) / media hours between the two samples


def flatness(samples: list[dict], warmup_media_s: float) -> list[Growth]:
    """Per process, the growth from the first sample whose `media_s` is at or after `warmup_media_s` to
    the last sample. Each sample holds `media_s` and `rss_mb` {process: MB}; samples taken after
    `malloc_trim` (`trimmed`) are not part of the curve. Raises ValueError if fewer than two samples lie
    after the warm-up (no growth can be read from one)."""
    after = [s for s in running(samples) if s["media_s"] >= warmup_media_s]
    if len(after) < 2:
        raise ValueError(f"need two samples after the warm-up ({warmup_media_s:g} s of media), have {len(after)}")
    first, last = after[0], after[-1]
    hours = (last["media_s"] - first["media_s"]) / 3600.0
    out = []
    for p in first["rss_mb"]:
        warm, end = first["rss_mb"][p], last["rss_mb"][p]
        out.append(Growth(p, warm, end, (end - warm) / warm * 100.0, (end - warm) / hours))
    return out


def running(samples: list[dict]) -> list[dict]:
    """The samples of the run as it went (not the ones taken after `malloc_trim` at the end)."""
    return [s for s in samples if not s.get("trimmed")]


def is_flat(growths: list[Growth], tolerance_percent: float = 1.0) -> bool:
    """Whether every process grew by at most `tolerance_percent` of its warm RSS (shrinking is flat)."""
    return all(g.percent <= tolerance_percent for g in growths)


def table(samples: list[dict], warmup_media_s: float) -> str:
    """The markdown flatness table (with each process's RSS after `malloc_trim` at the end, if sampled),
    then positions, cache and counters of the run."""
    growths = flatness(samples, warmup_media_s)
    trimmed = next((s["rss_mb"] for s in samples if s.get("trimmed")), None)
    samples = running(samples)
    last = samples[-1]
    lines = [f"| process | RSS at warm-up end ({warmup_media_s / 3600:.2f} h of media) MB | RSS at end "
             f"({last['media_s'] / 3600:.2f} h) MB | growth % | MB per media hour | at end after malloc_trim MB |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {g.process} | {g.warm_mb:.1f} | {g.end_mb:.1f} | {g.percent:+.2f} | {g.mb_per_media_hour:+.2f} | "
              f"{'-' if trimmed is None else format(trimmed[g.process], '.1f')} |" for g in growths]
    lines += ["", f"flat within 1%: {'yes' if is_flat(growths) else 'NO'}; "
              f"largest position {max(s['max_position'] for s in samples)}, "
              f"largest KV cache {max(s['cache_tokens'] for s in samples)} tokens; "
              f"chunks {last['chunks']}, dropped {last['dropped']}, lost {last['lost']}; "
              f"questions answered {last['answered']}/{last['asked']}; watch evaluations {last['watch_events']}"]
    return "\n".join(lines)


# ---- inside the actors (run through Ray's `__ray_call__`, so no worker class needs a method for it) ----


def _probe(worker, trim: bool = False) -> dict:
    """pid, RSS and gc-tracked objects of the process `worker` lives in; for the model worker also the
    KV-cache length and the largest position of every stream's context. With `trim`, glibc's
    `malloc_trim(0)` runs first: what RSS is left is memory in use, what went was freed heap the allocator
    kept (which tells allocator retention from a leak)."""
    if trim and malloc_trim is not None:
        malloc_trim()
    out = {"pid": os.getpid(), "rss_mb": rss_mb(os.getpid()), "objects": len(gc.get_objects())}
    contexts = getattr(worker, "contexts", None)
    if contexts is not None:
        live = [c.session.context for c in list(contexts.values()) if c.session.context is not None]
        out["cache_tokens"] = max((len(c) for c in live), default=0)
        out["max_position"] = max((int(c.positions().max()) for c in live), default=0)
    return out


async def _probe_all(p, trim: bool = False) -> dict[str, dict]:
    st = p.streams["s0"]
    refs = {"source": st.source, "encoder": p.encoder, "model": p.model}
    got = await asyncio.gather(*(a.__ray_call__.remote(_probe, trim) for a in refs.values()))
    return {"driver": _probe(None, trim), **dict(zip(refs, got, strict=True))}


@dataclass
class _Counts:
    asked: int = 0
    answered: int = 0
    failed: int = 0
    watch_events: int = 0


async def run(model: str, chunks: int, width: int, height: int, window: float, ask_every: int,
              sample_every: int, watch_every: float, out: Path) -> list[dict]:
    from pipeline.ray import OmniStream

    samples: list[dict] = []
    counts = _Counts()
    async with OmniStream.from_config(day_config(model, chunks, width, height, window)) as p:
        start = time.monotonic()

        async def watch() -> None:
            async for _ in p.watch(WATCH, "s0", every=watch_every, max_pending=1024):
                counts.watch_events += 1

        async def ask() -> None:
            counts.asked += 1
            try:
                await p.ask(QUESTION, "s0", timeout=600)
                counts.answered += 1
            except Exception as e:  # noqa: BLE001 - counted and said, the run goes on
                counts.failed += 1
                print(json.dumps({"ask_failed": str(e)}), flush=True)

        async def sample(trim: bool = False) -> None:
            probes = await _probe_all(p, trim)
            snap = p.snapshot()["streams"]["s0"]
            row = {"media_s": snap["chunks"] * CHUNK_SECONDS, "wall_s": round(time.monotonic() - start, 1),
                   "chunks": snap["chunks"], "dropped": snap["dropped"], "lost": snap["lost"], "state": snap["state"],
                   "asked": counts.asked, "answered": counts.answered, "ask_failed": counts.failed,
                   "watch_events": counts.watch_events, "cache_tokens": probes["model"]["cache_tokens"],
                   "max_position": probes["model"]["max_position"],
                   "rss_mb": {k: round(v["rss_mb"], 1) for k, v in probes.items()},
                   "objects": {k: v["objects"] for k, v in probes.items()}, "trimmed": trim}
            samples.append(row)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)

        watcher = asyncio.create_task(watch())
        pending: set[asyncio.Task] = set()
        try:
            next_ask, next_sample = ask_every, sample_every
            while (n := p.streams["s0"].chunks) < chunks and p.streams["s0"].state not in ("ended", "failed"):
                await asyncio.sleep(0.5)
                if n >= next_ask:
                    next_ask += ask_every
                    pending.add(t := asyncio.create_task(ask()))
                    t.add_done_callback(pending.discard)
                if n >= next_sample:
                    next_sample += sample_every
                    await sample()
            await asyncio.gather(*pending)
            await sample()
            await sample(trim=True)  # the same moment after malloc_trim: retained heap vs memory in use
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=43_200, help="2-second chunks of media (43,200 = 24 h)")
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--height", type=int, default=120)
    parser.add_argument("--window", type=float, default=60.0, help="context window, seconds of media")
    parser.add_argument("--ask-every", type=int, default=600, help="chunks between questions")
    parser.add_argument("--sample-every", type=int, default=300, help="chunks between samples")
    parser.add_argument("--watch-every", type=float, default=60.0, help="media seconds between watch evaluations")
    parser.add_argument("--warmup", type=float, default=0.1, help="fraction of the run that is warm-up")
    parser.add_argument("--model", default=None, help="model path (default: the tiny random model)")
    parser.add_argument("--out", default="soak_day.jsonl", help="JSON lines, one per sample (appended)")
    parser.add_argument("--report", type=Path, default=None,
                        help="print the table of a finished run's JSON lines (warm-up: --warmup of its media) and stop")
    args = parser.parse_args()
    if args.report is not None:
        rows = [json.loads(line) for line in args.report.read_text().splitlines() if line.strip()]
        print(table(rows, args.warmup * running(rows)[-1]["media_s"]))
        return
    model = model_or_tiny(args.model)
    import ray

    from pipeline.ray.local import start_local_ray

    start_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        samples = asyncio.run(run(model, args.chunks, args.width, args.height, args.window, args.ask_every,
                                  args.sample_every, args.watch_every, Path(args.out)))
    finally:
        ray.shutdown()
    print(table(samples, args.warmup * args.chunks * CHUNK_SECONDS))


if __name__ == "__main__":
    main()
