"""Webcams and microphones through the system `ffmpeg` binary (Debian package `ffmpeg`).

Why: PyAV's wheels carry no V4L2 or PulseAudio input, so capture runs `ffmpeg` as a subprocess:

    webcam:     ffmpeg -f v4l2 [-video_size WxH] [-framerate F] -i /dev/video0 \\
                       -vf fps=2[,scale=...] -pix_fmt rgb24 -f rawvideo pipe:1
    microphone: ffmpeg -f alsa|pulse -i default -ac 1 -ar 16000 -af aresample=async=1 -f f32le pipe:1

ffmpeg's `fps=2` filter resamples video to 2 fps by timestamp, so frame `n` on the pipe is at `n / 2`
seconds; audio sample `i` is at `i / 16000` (aresample=async fills device dropouts). A missing device or
missing ffmpeg binary is a one-line `SourceError` at open time. `input_format` (e.g. `lavfi`) lets tests
run the same path without hardware.
"""

from __future__ import annotations

import os
import select
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator

import numpy as np

from .chunk import AUDIO_RATE, VIDEO_FPS
from .decode import capped_size
from .errors import SourceError
from .events import AudioSample, Event, VideoSample

STARTUP_WAIT = 5.0  # seconds to wait for the first bytes before declaring the device broken


def _ffmpeg(binary: str) -> str:
    path = shutil.which(binary)
    if path is None:
        raise SourceError(f"ffmpeg binary {binary!r} not found on PATH (Debian: apt-get install ffmpeg)")
    return path


def _probe_size(ffmpeg: str, in_args: list[str]) -> tuple[int, int]:
    """Ask ffmpeg for the device's frame size (one frame decoded to a PPM header)."""
    cmd = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *in_args,
        "-frames:v",
        "1",
        "-f",
        "image2pipe",
        "-vcodec",
        "ppm",
        "pipe:1",
    ]
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=STARTUP_WAIT)
    except subprocess.TimeoutExpired:
        raise SourceError(f"webcam: no frame within {STARTUP_WAIT:.0f}s") from None
    if p.returncode != 0 or not p.stdout.startswith(b"P6"):
        err = (p.stderr.decode(errors="replace").strip().splitlines() or ["no output"])[-1]
        raise SourceError(f"webcam: cannot open device: {err}")
    fields = p.stdout.split(maxsplit=3)
    return int(fields[1]), int(fields[2])


class FfmpegProducer:
    """Reads raw RGB frames or f32le PCM from an ffmpeg subprocess."""

    def __init__(
        self, cmd: list[str], *, kind: str, frame_bytes: int = 0, size: tuple[int, int] = (0, 0), what: str = ""
    ) -> None:
        self.has_video, self.has_audio = kind == "video", kind == "audio"
        self.origin = 0.0
        self.what = what
        self._kind, self._frame_bytes, self._size = kind, frame_bytes, size
        self._stop = threading.Event()
        self._proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._stderr_tail: list[str] = []
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        for line in self._proc.stderr:
            self._stderr_tail = (self._stderr_tail + [line.decode(errors="replace").strip()])[-5:]

    def close(self) -> None:
        self._stop.set()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(2.0)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def _read(self, n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            part = self._proc.stdout.read(n - len(buf))
            if not part:
                break
            buf += part
        return bytes(buf)

    def __iter__(self) -> Iterator[Event]:
        try:
            if self._kind == "video":
                w, h = self._size
                n = 0
                while not self._stop.is_set():
                    data = self._read(self._frame_bytes)
                    if len(data) < self._frame_bytes:
                        break
                    yield VideoSample(n / VIDEO_FPS, np.frombuffer(data, np.uint8).reshape(h, w, 3), time.time())
                    n += 1
            else:
                block = AUDIO_RATE // 10 * 4  # 100 ms of f32
                pos = 0
                while not self._stop.is_set():
                    data = self._read(block)
                    if len(data) < 4:
                        break
                    x = np.frombuffer(data[: len(data) // 4 * 4], np.float32)
                    yield AudioSample(pos / AUDIO_RATE, x, time.time())
                    pos += len(x)
        finally:
            asked = self._stop.is_set()
            if not asked:
                try:
                    self._proc.wait(2.0)
                except subprocess.TimeoutExpired:
                    pass
            self.close()
        rc = self._proc.returncode
        if not asked and rc not in (0, None, -15):
            tail = self._stderr_tail[-1] if self._stderr_tail else f"exit code {rc}"
            raise SourceError(f"{self.what}: ffmpeg failed: {tail}")


def open_webcam(
    device: str,
    *,
    input_format: str = "v4l2",
    width: int | None = None,
    height: int | None = None,
    fps: float | None = None,
    max_width: int | None = None,
    max_height: int | None = None,
    ffmpeg: str = "ffmpeg",
) -> FfmpegProducer:
    """A V4L2 camera (or any ffmpeg video input format) sampled at 2 fps."""
    binary = _ffmpeg(ffmpeg)
    if input_format == "v4l2" and not os.path.exists(device):
        raise SourceError(f"webcam {device}: no such device")
    in_args = ["-f", input_format]
    if width and height:
        in_args += ["-video_size", f"{width}x{height}"]
    if fps:
        in_args += ["-framerate", str(fps)]
    in_args += ["-i", device]
    w0, h0 = _probe_size(binary, in_args)
    w, h = capped_size(w0, h0, max_width, max_height)
    vf = f"fps={VIDEO_FPS:g}" + (f",scale={w}:{h}" if (w, h) != (w0, h0) else "")
    cmd = [
        binary,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *in_args,
        "-an",
        "-vf",
        vf,
        "-pix_fmt",
        "rgb24",
        "-f",
        "rawvideo",
        "pipe:1",
    ]
    return FfmpegProducer(cmd, kind="video", frame_bytes=w * h * 3, size=(w, h), what=f"webcam {device}")


def open_microphone(device: str = "default", *, backend: str = "alsa", ffmpeg: str = "ffmpeg") -> FfmpegProducer:
    """An ALSA/PulseAudio capture device as 16 kHz mono float32."""
    binary = _ffmpeg(ffmpeg)
    if backend == "alsa" and device.startswith("hw:") and not os.path.exists("/dev/snd"):
        raise SourceError(f"microphone {device}: no sound devices (/dev/snd missing)")
    cmd = [binary, "-nostdin", "-hide_banner", "-loglevel", "error", "-f", backend, "-i", device, "-vn",
           "-ac", "1", "-ar", str(AUDIO_RATE), "-af", "aresample=async=1", "-f", "f32le", "pipe:1"]  # fmt: skip
    p = FfmpegProducer(cmd, kind="audio", what=f"microphone {device}")
    # a missing device makes ffmpeg exit at once: report it now, as one line
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and p._proc.poll() is None:
        if select.select([p._proc.stdout], [], [], 0.05)[0]:  # data or EOF: give an exit a moment to show
            time.sleep(0.2)
            break
    if p._proc.poll() not in (None, 0):
        time.sleep(0.1)
        tail = p._stderr_tail[-1] if p._stderr_tail else f"exit code {p._proc.returncode}"
        raise SourceError(f"microphone {device} ({backend}): cannot open: {tail}")
    return p
