"""`omnisift demo`: the live session on a synthetic stream (the README's main command)."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

HELP = "run the live pipeline on a synthetic stream"
DEMO_MODEL = "Qwen/Qwen2.5-Omni-3B"
DEMO_QUESTION = "What is on the screen and what do you hear?"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of stream, then stop")
    parser.add_argument("--model", default=DEMO_MODEL)
    parser.add_argument("--every", type=float, default=6.0, help="seconds of media between questions")
    parser.add_argument("--question", default=DEMO_QUESTION)


def run(args: argparse.Namespace) -> int:
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
    """The real model when its weights are on this machine, else the tiny random one with a banner."""
    from pipeline.session import OmniSession

    try:
        return OmniSession.from_pretrained(model, compressor="full", window_seconds=120, local_files_only=True)
    except Exception:  # noqa: BLE001 - any failure to find or load the weights means: use the tiny model
        from omnisift.testing import make_tiny_omni

        print("=" * 78 + f"\n{model} weights are not on this machine: running the TINY RANDOM model.\n"
              "Its answers are meaningless; everything else (ingestion, OmniSIFT, the live KV cache)\n"
              "is the real code path.\n" + "=" * 78, flush=True)
        path = make_tiny_omni(Path(tempfile.mkdtemp(prefix="omnisift-tiny-")))
        return OmniSession.from_pretrained(str(path), window_seconds=120)
