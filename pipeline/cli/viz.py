"""`omnisift viz VIDEO`: a PNG of what each compressor kept (patches over frames, audio timeline)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "draw what each compressor keeps of a video file (PNG)"
DEFAULT_METHODS = ["random", "omnisift", "dycoke", "timechat", "vidcom2", "omnizip"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pipeline.cli.infer import ratio

    parser.add_argument("video", type=Path)
    parser.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    parser.add_argument("--model", help="hub id or local path (default: the tiny random model)")
    parser.add_argument("--chunks", type=int, default=3, help="how many 2-second chunks to draw")
    parser.add_argument("--rho-video", type=ratio, default=0.8)
    parser.add_argument("--rho-audio", type=ratio, default=0.3)
    parser.add_argument("--max-pixels", type=int, default=224 * 224, help="frame size the model sees")
    parser.add_argument("-o", "--out", type=Path, default=Path("kept.png"))


def first_line(args: argparse.Namespace) -> str:
    return (f"omnisift viz: running {len(args.methods)} compressors over the first {args.chunks} chunks of "
            f"{args.video}, then drawing {args.out}")


def run(args: argparse.Namespace) -> int:
    from operators.compress import COMPRESSORS
    from pipeline.viz import visualize

    if not args.video.exists():
        raise FileNotFoundError(f"{args.video}: no such file")
    unknown = [m for m in args.methods if m not in COMPRESSORS]
    if unknown:
        raise ValueError(f"unknown compressor(s) {', '.join(unknown)}; choose from {', '.join(sorted(COMPRESSORS))}")
    from omnisift.tiny import resolve_model, tiny_banner

    model, tiny = resolve_model(args.model)
    if tiny:  # its VGAS choices are random; the video choices still follow the content
        print(tiny_banner(args.model), flush=True)
    try:
        image, _ = visualize(str(args.video), args.methods, model, args.chunks, args.rho_video, args.rho_audio,
                             args.max_pixels)
    except KeyboardInterrupt:
        print(f"interrupted: nothing written ({args.out} is written once every compressor has run)", flush=True)
        raise
    image.save(args.out, optimize=True)
    print(f"wrote {args.out} ({image.width}x{image.height})")
    return 0
