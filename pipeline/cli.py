"""`omnisift` command line: a thin layer over library functions.

    omnisift infer VIDEO -q QUESTION [--model ID_OR_PATH] [--retention R | --rho-video V --rho-audio A]
    omnisift demo [--duration SECONDS]

Bad input (a missing, undecodable or video-less file, a bad ratio) prints one line and exits 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

EXIT_BAD_INPUT = 2
DEMO_MODEL = "Qwen/Qwen2.5-Omni-3B"
DEMO_QUESTION = "What is on the screen and what do you hear?"


def _ratio(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnisift", description="Live audio-video QA with OmniSIFT compression")
    sub = parser.add_subparsers(dest="command", required=True)

    infer = sub.add_parser("infer", help="answer a question about a video file")
    infer.add_argument("video", type=Path)
    infer.add_argument("-q", "--question", required=True)
    infer.add_argument("--model", default="Qwen/Qwen2.5-Omni-7B", help="hub id or local path")
    infer.add_argument("--selector", help="separate selector checkpoint for a base Qwen2.5-Omni model")
    infer.add_argument("--compressor", default="omnisift")
    ratios = infer.add_mutually_exclusive_group()
    ratios.add_argument("--retention", type=_ratio, help="fraction of audio+video tokens kept")
    ratios.add_argument("--rho-video", type=_ratio, help="fraction of each frame's video tokens dropped")
    infer.add_argument("--rho-audio", type=_ratio, help="fraction of each chunk's audio tokens dropped")
    infer.add_argument("--max-new-tokens", type=int, default=64)
    infer.add_argument("--device")
    infer.add_argument("--dtype")

    demo = sub.add_parser("demo", help="run the live pipeline on a synthetic stream")
    demo.add_argument("--duration", type=float, default=20.0, help="seconds of stream, then stop")
    demo.add_argument("--model", default=DEMO_MODEL)
    demo.add_argument("--every", type=float, default=6.0, help="seconds of media between questions")
    demo.add_argument("--question", default=DEMO_QUESTION)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _quiet_transformers()
    from streams.errors import StreamError

    try:
        return {"infer": run_infer, "demo": run_demo}[args.command](args)
    except (ValueError, OSError, StreamError) as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        return 130


def run_infer(args: argparse.Namespace) -> int:
    from pipeline.offline import infer_file
    from pipeline.session import OmniSession

    if not args.video.exists():
        raise FileNotFoundError(f"{args.video}: no such file")
    session = OmniSession.from_pretrained(
        args.model, compressor=args.compressor, retention=args.retention, rho_video=args.rho_video,
        rho_audio=args.rho_audio, selector=args.selector, device=args.device, dtype=args.dtype,
    )
    result = infer_file(session, args.video, args.question, max_new_tokens=args.max_new_tokens)
    print(result.text)
    print(f"[{result.chunks} chunks, {result.seconds:.1f} s; {result.counts.summary()}]", file=sys.stderr)
    return 0


def run_demo(args: argparse.Namespace) -> int:
    from pipeline.session import OmniSession
    from streams import read_chunks

    session = _demo_session(args.model)
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


def _demo_session(model: str):
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


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _quiet_transformers() -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


if __name__ == "__main__":
    sys.exit(main())
