"""Decode + chunk speed for generated 720p and 1080p H.264 files: `python -m benchmarks.ingest`.

Prints a markdown table: media seconds per wall second (multiple of real time) and CPU use
(process CPU seconds / wall seconds; 1.0 = one core busy) for the file source read as fast as possible,
at full decoded size and with `max_width: 640`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streams.api import read_chunks


def make_h264(path: Path, width: int, height: int, seconds: float, fps: int = 30) -> Path:
    """A moving-gradient H.264 (+AAC tone) clip, encoded with libx264 veryfast."""
    out = av.open(str(path), "w")
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
    vs.options = {"preset": "veryfast", "crf": "23"}
    a = out.add_stream("aac", rate=48000)
    a.layout = "mono"
    yy, xx = np.mgrid[0:height, 0:width]
    for i in range(int(seconds * fps)):
        img = np.stack([(xx + 4 * i) % 256, (yy + 2 * i) % 256, np.full_like(xx, (3 * i) % 256)], -1).astype(np.uint8)
        for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(p)
    n = int(seconds * 48000)
    t = np.arange(n) / 48000
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for s in range(0, n, 1024):
        f = av.AudioFrame.from_ndarray(x[None, s : s + 1024], format="fltp", layout="mono")
        f.sample_rate, f.pts, f.time_base = 48000, s, Fraction(1, 48000)
        for p in a.encode(f):
            out.mux(p)
    for st in (vs, a):
        for p in st.encode(None):
            out.mux(p)
    out.close()
    return path


def measure(path: Path, **opts) -> tuple[float, float, int]:
    """(multiple of real time, CPU use, chunks)."""
    wall0, cpu0 = time.perf_counter(), time.process_time()
    chunks = list(read_chunks({"type": "file", "path": str(path), **opts}))
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    media = sum(c.duration for c in chunks)
    return media / wall, cpu / wall, len(chunks)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each generated clip")
    ap.add_argument("--keep", type=Path, default=None, help="folder to keep the generated clips in")
    args = ap.parse_args(argv)
    folder = args.keep or Path(tempfile.mkdtemp(prefix="streams-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, (w, h) in {"720p": (1280, 720), "1080p": (1920, 1080)}.items():
        path = folder / f"{name}.mp4"
        if not path.exists():
            make_h264(path, w, h, args.seconds)
        for cap in (None, 640):
            speed, cpu, n = measure(path, **({"max_width": cap} if cap else {}))
            rows.append((name, "full" if cap is None else f"max_width {cap}", speed, cpu, n))
    print(f"Decode + chunk, H.264 30 fps + AAC, {args.seconds:.0f} s clips, {os.cpu_count()} cores, "
          f"PyAV {av.__version__}\n")
    print("| input | frame size out | x real time | CPU (cores busy) | chunks |")
    print("|---|---|---:|---:|---:|")
    for name, size, speed, cpu, n in rows:
        print(f"| {name} H.264 | {size} | {speed:.1f}x | {cpu:.2f} | {n} |")


if __name__ == "__main__":
    main()
