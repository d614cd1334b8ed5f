"""`omnisift infer VIDEO -q QUESTION`: answer a question about a file, with token statistics.

As `omnisift demo`: a model whose weights are not on this machine and cannot be downloaded (`--model
tiny`: always) runs as the tiny random model, with the banner saying so; a `--selector` for the real
model is then left out (the tiny model has its own). A model named by a path that is no folder is reported
in one line instead (a mistyped folder is not replaced by a random model).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "answer a question about a video file"


def ratio(text: str) -> float:
    """argparse type for a fraction in [0, 1]."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1], got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", type=Path)
    parser.add_argument("-q", "--question", required=True)
    parser.add_argument("--model", default="Qwen/Qwen2.5-Omni-7B",
                        help="hub id or local path; tiny: the tiny random model (also used when the weights are "
                             "not on this machine and cannot be downloaded)")
    parser.add_argument("--selector", help="separate selector checkpoint for a base Qwen2.5-Omni model")
    parser.add_argument("--compressor", default="omnisift")
    ratios = parser.add_mutually_exclusive_group()
    ratios.add_argument("--retention", type=ratio, help="fraction of audio+video tokens kept")
    ratios.add_argument("--rho-video", type=ratio, help="fraction of each frame's video tokens dropped")
    parser.add_argument("--rho-audio", type=ratio, help="fraction of each chunk's audio tokens dropped")
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="frame size bound in pixels (default: 640x480; a frame is 1 token per 28x28 pixels)")
    parser.add_argument("--min-pixels", type=int, default=None, help="smallest frame size in pixels")
    parser.add_argument("--device")
    parser.add_argument("--dtype")


def run(args: argparse.Namespace) -> int:
    from pipeline.messages import check_question
    from pipeline.offline.infer import check_video_file, infer_file

    check_question(args.question)  # an empty or huge question is refused before anything loads
    if not args.video.exists():
        raise FileNotFoundError(f"{args.video}: no such file")
    check_video_file(args.video)
    # the first line once the quick checks passed (a bad input is then the only line), before the slow part
    print(f"omnisift infer: loading {args.model}, then reading {args.video} chunk by chunk", file=sys.stderr,
          flush=True)
    from omnisift.tiny import resolve_model, tiny_banner
    from pipeline.session import OmniSession

    model, tiny = resolve_model(args.model, download=True)
    selector = args.selector
    if tiny:
        print(tiny_banner(args.model), file=sys.stderr, flush=True)
        if selector:
            print(f"--selector {selector} is left out: it belongs to the real model; the tiny model has its own",
                  file=sys.stderr, flush=True)
            selector = None
    session = OmniSession.from_pretrained(
        model, compressor=args.compressor, retention=args.retention, rho_video=args.rho_video,
        rho_audio=args.rho_audio, selector=selector, device=args.device, dtype=args.dtype,
        min_pixels=args.min_pixels, max_pixels=args.max_pixels,
    )
    result = infer_file(session, args.video, args.question, max_new_tokens=args.max_new_tokens)
    print(result.text)
    print(f"[{result.chunks} chunks, {result.seconds:.1f} s; {result.counts.summary()}]", file=sys.stderr)
    return 0
