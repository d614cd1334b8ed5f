"""Generated test media whose pixels and tones encode their own timestamps.

Video: frame number `n` (at `fps`) is written as BITS vertical bars, white = 1, most significant bit
on the left; `decode_frame_number` reads it back from any (resized, lossy) RGB frame.
Audio: the clip is split into 0.5-second segments; segment `j` is a sine at `tone_hz(j)`;
`decode_segment` finds the dominant frequency of a stretch of samples and maps it back to `j`.
So a test can check that chunk sample `i` shows time `start + i/2` with no knowledge of the code.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

BITS = 10
SEGMENT = 0.5  # seconds per audio tone segment
TONE_BASE = 300.0
TONE_STEP = 125.0


def tone_hz(j: int) -> float:
    return TONE_BASE + TONE_STEP * (j % 56)


def frame_image(n: int, width: int, height: int) -> np.ndarray:
    img = np.zeros((height, width, 3), np.uint8)
    bar = width // BITS
    for b in range(BITS):
        if (n >> (BITS - 1 - b)) & 1:
            img[:, b * bar : (b + 1) * bar] = 255
    return img


def decode_frame_number(img: np.ndarray) -> int:
    h, w, _ = img.shape
    bar = w / BITS
    n = 0
    for b in range(BITS):
        x0, x1 = int(b * bar + bar * 0.3), int((b + 1) * bar - bar * 0.3)
        v = img[h // 4 : 3 * h // 4, x0 : max(x1, x0 + 1)].mean()
        n = (n << 1) | int(v > 127)
    return n


def tone_samples(t0: float, n: int, rate: int) -> np.ndarray:
    """Samples for media times [t0, t0 + n/rate): the segment tone at each instant, continuous phase per segment."""
    t = t0 + np.arange(n) / rate
    seg = np.floor(t / SEGMENT + 1e-9).astype(int)
    freqs = TONE_BASE + TONE_STEP * (seg % 56)
    return (0.5 * np.sin(2 * np.pi * freqs * t)).astype(np.float32)


def decode_segment(x: np.ndarray, rate: int = 16000) -> int:
    """Segment index (mod 56) of the dominant tone in `x`."""
    win = np.hanning(len(x))
    spec = np.abs(np.fft.rfft(x * win))
    f = np.argmax(spec) * rate / len(x)
    return int(round((f - TONE_BASE) / TONE_STEP)) % 56


def make_clip(
    path: Path,
    *,
    seconds: float = 6.0,
    fps: int = 10,
    width: int = 160,
    height: int = 96,
    video: bool = True,
    audio: bool = True,
    audio_rate: int = 44100,
    audio_offset: float = 0.0,
    video_offset: float = 0.0,
    frame_times: list[float] | None = None,
    vcodec: str = "libx264",
    acodec: str = "aac",
    gop: int | None = None,
) -> Path:
    """Write a clip; `frame_times` (seconds) makes it variable frame rate (frame n is shown at frame_times[n]
    and carries the number round(t*fps) so the decoded number still means time*fps)."""
    path = Path(path)
    out = av.open(str(path), "w")
    vs = as_ = None
    if video:
        vs = out.add_stream(vcodec, rate=1000 if frame_times is not None else fps)
        vs.width, vs.height = width, height
        vs.pix_fmt = "yuv420p"
        vs.time_base = Fraction(1, 1000) if frame_times is not None else Fraction(1, fps)
        if gop:
            vs.codec_context.gop_size = gop
        if vcodec == "libx264":
            vs.options = {"preset": "ultrafast", "tune": "zerolatency"}
    if audio:
        as_ = out.add_stream(acodec, rate=audio_rate)
        as_.layout = "mono"
        if acodec == "aac":
            as_.bit_rate = 96000
    events: list[tuple[float, str, object]] = []
    if video:
        times = frame_times if frame_times is not None else [i / fps for i in range(int(seconds * fps))]
        for t in times:
            events.append((t + video_offset, "v", t))
    if audio:
        block = 1024
        total = int((seconds - audio_offset) * audio_rate) if audio_offset >= 0 else int(seconds * audio_rate)
        for s in range(0, total, block):
            events.append((audio_offset + s / audio_rate, "a", s))
    events.sort(key=lambda e: (e[0], e[1]))
    for t, kind, arg in events:
        if kind == "v":
            n = int(round(arg * fps))
            frame = av.VideoFrame.from_ndarray(frame_image(n, width, height), format="rgb24")
            if frame_times is not None:
                frame.pts = int(round(t * 1000))
                frame.time_base = Fraction(1, 1000)
            else:
                frame.pts = int(round(t * fps))
            for p in vs.encode(frame):
                out.mux(p)
        else:
            s = arg
            n = min(1024, int((seconds - audio_offset) * audio_rate) - s)
            # the tone encodes the media time at which it is heard (offset included)
            x = tone_samples(audio_offset + s / audio_rate, n, audio_rate)
            fmt = "fltp" if acodec in ("aac", "libopus", "libvorbis") else "s16"
            if fmt == "fltp":
                frame = av.AudioFrame.from_ndarray(x[None, :], format="fltp", layout="mono")
            else:
                frame = av.AudioFrame.from_ndarray((x * 32767).astype(np.int16)[None, :], format="s16", layout="mono")
            frame.sample_rate = audio_rate
            frame.pts = int(round((audio_offset + s / audio_rate) * audio_rate))
            frame.time_base = Fraction(1, audio_rate)
            for p in as_.encode(frame):
                out.mux(p)
    for st in (vs, as_):
        if st is not None:
            for p in st.encode(None):
                out.mux(p)
    out.close()
    return path
