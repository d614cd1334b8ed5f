"""Real containers made with PyAV for the CLI tests: a gradient that brightens and a 440 Hz tone."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

CODECS = {"mp4": ("libx264", "aac"), "mkv": ("libx264", "aac"), "webm": ("libvpx-vp9", "libopus")}


def write_clip(path: Path, seconds: float = 3.0, video: bool = True, audio: bool = True, fps: int = 10) -> Path:
    vcodec, acodec = CODECS[path.suffix.lstrip(".")]
    rate = 48000 if acodec == "libopus" else 16000
    with av.open(str(path), "w") as container:
        vs = container.add_stream(vcodec, rate=fps) if video else None
        if vs is not None:
            vs.width, vs.height, vs.pix_fmt = 160, 120, "yuv420p"
        aus = container.add_stream(acodec, rate=rate, layout="mono") if audio else None
        if vs is not None:
            for i in range(int(seconds * fps)):
                frame = np.full((120, 160, 3), (i * 7) % 255, np.uint8)
                for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
            for packet in vs.encode():
                container.mux(packet)
        if aus is not None:
            t = np.arange(int(seconds * rate)) / rate
            samples = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            step = aus.codec_context.frame_size or 1024
            for start in range(0, len(samples), step):
                frame = av.AudioFrame.from_ndarray(samples[None, start:start + step], format="fltp", layout="mono")
                frame.sample_rate, frame.pts = rate, start
                for packet in aus.encode(frame):
                    container.mux(packet)
            for packet in aus.encode():
                container.mux(packet)
    return path
