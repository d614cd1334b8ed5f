"""`omnisift demo`: the whole pipeline on a synthetic live stream (the README's main command).

By default it starts local Ray with the source, encoder and model actors, a standing question, ZeroMQ,
metrics, the event history, alert clips and the dashboard (its URL is printed: http://127.0.0.1:8321/),
exactly as `omnisift run` does; `--no-ray` runs the same session in this process (no dashboard).
"""

from __future__ import annotations

import argparse
import time

HELP = "run the live pipeline on a synthetic stream"
DEMO_MODEL = "Qwen/Qwen2.5-Omni-3B"
DEMO_QUESTION = "What is on the screen and what do you hear?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of stream, then stop")
    parser.add_argument("--model", default=DEMO_MODEL)
    parser.add_argument("--every", type=float, default=6.0, help="seconds of media between questions")
    parser.add_argument("--question", default=DEMO_QUESTION)
    parser.add_argument("--http-port", type=int, default=8321, help="dashboard and HTTP API port (0: any free port)")
    parser.add_argument("--data", default="omnisift-data", help="folder of the event history and alert clips")
    parser.add_argument("--no-ray", dest="ray", action="store_false",
                        help="run the session in this process instead of the Ray pipeline (starts faster)")


def run(args: argparse.Namespace) -> int:
    if args.ray:
        return run_ray(args)
    from streams import read_chunks

    session = demo_session(args.model)
    source = {"type": "synthetic", "pattern": "testsrc2", "width": 320, "height": 240, "duration": None,
              "realtime": True}
    started = time.monotonic()
    next_question = args.every
    for chunk in read_chunks(source, name="demo"):
        session.append(chunk)
        t = session.last_timings
        lag = time.time() - chunk.capture_time if chunk.capture_time else 0.0
        print(f"chunk {chunk.index:3d} @ {chunk.start:6.1f}s  kept video {t.video_after}/{t.video_before} "
              f"audio {t.audio_after}/{t.audio_before}  cache {t.cache_tokens} tokens  lag {lag:.2f}s", flush=True)
        if chunk.start + chunk.duration >= next_question:
            print(f"Q: {args.question}\nA: {session.ask(args.question, max_new_tokens=24)!r}", flush=True)
            next_question += args.every
        if time.monotonic() - started >= args.duration:
            break
    return 0


def demo_session(model: str):
    """The real model when its weights are on this machine, else the tiny random one with the banner."""
    from omnisift.tiny import TINY_BANNER, resolve_model
    from pipeline.session import OmniSession

    path, tiny = resolve_model(model)
    if tiny:
        print(TINY_BANNER.format(model=model), flush=True)
        return OmniSession.from_pretrained(path, window_seconds=120)
    return OmniSession.from_pretrained(path, compressor="full", window_seconds=120, local_files_only=True)


def run_ray(args: argparse.Namespace) -> int:
    """The demo on the Ray pipeline: local Ray, the same synthetic stream, a standing question."""
    import asyncio

    from omnisift.tiny import TINY_BANNER, resolve_model
    from pipeline.cli.run import run_pipeline
    from pipeline.config import load_pipeline_config

    path, tiny = resolve_model(args.model)
    config = load_pipeline_config({
        "streams": [{"name": "demo", "source": {"type": "synthetic", "pattern": "testsrc2", "width": 320,
                                                "height": 240, "duration": None, "realtime": True}}],
        # the tiny model carries a VGAS selector; the released 3B does not, so it gets STVP + uniform audio
        "model": {"path": path, "compressor": "omnisift" if tiny else "stvp", "local_files_only": True,
                  "window_seconds": 120, "max_new_tokens": 24},
        "ask_every": args.every, "question": args.question,
        "watch": [{"question": "Is there a loud tone?", "every": 4.0}],
        "zmq": {"pub": "tcp://127.0.0.1:*", "rep": "tcp://127.0.0.1:*"},
        "metrics": {"port": 0},
        "http": {"port": args.http_port},
        "history": {"path": f"{args.data}/history.sqlite3"},
        "clips": {"dir": f"{args.data}/clips"},
        "resources": {"source": {"num_cpus": 0}, "encoder": {"num_cpus": 0.5}, "model": {"num_cpus": 0.5}},
        "runtime_sources": {"types": ["synthetic"]},  # the dashboard may add test patterns, nothing else
    })
    if tiny:
        print(TINY_BANNER.format(model=args.model), flush=True)
    return asyncio.run(run_pipeline(config, args.duration))
