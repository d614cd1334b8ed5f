"""Alert clips: the media of an alert's chunk and the chunks before it, as MP4 (H.264 + AAC, PyAV) with a
JSON sidecar beside it (stream, media time, question, p_yes, what was kept).

The frames are the ones the model saw: 2 per second, at the chunk's decoded size (cropped to even
sides for yuv420p); the audio is the chunk's 16 kHz mono. A `ClipWriter` encodes in a thread of its own
from a bounded queue (a clip that finds it full is skipped and reported), writes to a temporary name and
renames, so a clip that exists is whole; after each clip the oldest clips go until the folder holds at
most `max_bytes`.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from pipeline.config import ClipsConfig
from streams.chunk import AUDIO_RATE
from streams.errors import one_line
from streams.mux import mux_audio

log = logging.getLogger(__name__)

VIDEO_FPS = 2  # the frames a chunk carries per second
CLIP_NAME = r"^[A-Za-z0-9_.-]+\.(mp4|json)$"


@dataclass(frozen=True)
class ClipJob:
    """One clip to write: `frames` [N, H, W, 3] uint8 at 2 fps (None: audio only), `audio` [S] float32 at
    16 kHz (None: video only), and the sidecar's fields."""

    name: str  # file name, `<name>` ends in .mp4; the sidecar is `<name without .mp4>.json`
    frames: np.ndarray | None
    audio: np.ndarray | None
    sidecar: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClipResult:
    name: str
    ok: bool
    bytes: int = 0
    seconds: float = 0.0
    error: str = ""
    sidecar: dict = field(default_factory=dict)


def write_mp4(path: Path, frames: np.ndarray | None, audio: np.ndarray | None) -> float:
    """Encode `frames` (2 fps) and `audio` (16 kHz mono) into an MP4 at `path`; returns its seconds."""
    with av.open(str(path), "w", format="mp4") as out:
        vs = aus = None
        if frames is not None:
            frames = frames[:, : frames.shape[1] // 2 * 2, : frames.shape[2] // 2 * 2]
            vs = out.add_stream("libx264", rate=VIDEO_FPS)
            vs.height, vs.width = frames.shape[1:3]
            vs.pix_fmt = "yuv420p"
        if audio is not None:
            aus = out.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        if vs is not None:
            for i, f in enumerate(frames):
                frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
                frame.pts = i
                out.mux(vs.encode(frame))
            out.mux(vs.encode())
        if aus is not None:
            mux_audio(out, aus, audio)
    seconds = [len(frames) / VIDEO_FPS if frames is not None else 0.0,
               len(audio) / AUDIO_RATE if audio is not None else 0.0]
    return max(seconds)


class ClipWriter:
    """A thread that writes `ClipJob`s into `spec.dir` and keeps the folder under `spec.max_bytes`."""

    def __init__(self, spec: ClipsConfig, *, on_result: Callable[[ClipResult], None] | None = None) -> None:
        if spec.dir is None:
            raise ValueError("clips.dir is not set")
        self.spec = spec
        self.dir = Path(spec.dir)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise OSError(f"clips.dir {str(self.dir)!r}: {e}") from None
        self.on_result = on_result or (lambda r: None)
        self.written = self.failed = self.skipped = self.deleted = 0
        self.pending: set[str] = set()  # named by an alert, not written (or failed) yet
        self._queue: queue.Queue = queue.Queue(spec.queue_size)
        self._thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def expect(self, name: str) -> None:
        """An alert named this clip: until it is written or fails, it is `pending` (HTTP 202, not 404)."""
        self.pending.add(name)

    def forget(self, name: str) -> None:
        self.pending.discard(name)

    def submit(self, job: ClipJob) -> bool:
        """Queue a clip without waiting; False (reported as skipped) if the queue is full."""
        try:
            self._queue.put_nowait(job)
            self.pending.add(job.name)
            return True
        except queue.Full:
            self.skipped += 1
            self.pending.discard(job.name)
            self.on_result(ClipResult(job.name, False, error="clip queue full: skipped", sidecar=job.sidecar))
            return False

    def close(self, timeout: float = 30.0) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            pass
        self._thread.join(timeout)

    def path(self, name: str) -> Path | None:
        """The file `name` (a clip or its sidecar) in the folder, None if there is none or the name is bad."""
        if not re.match(CLIP_NAME, name) or name.startswith("."):
            return None
        p = self.dir / name
        return p if p.is_file() else None

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            result = self.write(job)
            self.pending.discard(job.name)
            self.enforce_budget()
            self.on_result(result)

    def write(self, job: ClipJob) -> ClipResult:
        """Write one clip and its sidecar (to temporary names, then renamed)."""
        mp4 = self.dir / job.name
        tmp = mp4.with_name(f".{job.name}.part")
        try:
            seconds = write_mp4(tmp, job.frames, job.audio)
            tmp.replace(mp4)
            sidecar = {**job.sidecar, "clip": job.name, "seconds": seconds}
            mp4.with_suffix(".json").write_text(json.dumps(sidecar, indent=1, allow_nan=False, default=str))
        except Exception as e:  # noqa: BLE001 - an encoder or disk error loses this clip only
            tmp.unlink(missing_ok=True)
            self.failed += 1
            log.error("clip %s not written: %s", job.name, e)
            return ClipResult(job.name, False, error=one_line(e),
                              sidecar=job.sidecar)
        self.written += 1
        return ClipResult(job.name, True, mp4.stat().st_size, seconds, sidecar=sidecar)

    def enforce_budget(self) -> int:
        """Delete the oldest clips (and sidecars) until the folder holds at most `max_bytes`; how many went."""
        clips = sorted(self.dir.glob("*.mp4"), key=lambda p: p.stat().st_mtime)
        sizes = {p: p.stat().st_size + _size(p.with_suffix(".json")) for p in clips}
        total, gone = sum(sizes.values()), 0
        for p in clips[:-1]:  # the newest clip stays, whatever its size
            if total <= self.spec.max_bytes:
                break
            p.unlink(missing_ok=True)
            p.with_suffix(".json").unlink(missing_ok=True)
            total -= sizes[p]
            gone += 1
        self.deleted += gone
        return gone

    def stats(self) -> dict:
        return {"dir": str(self.dir), "written": self.written, "failed": self.failed, "skipped": self.skipped,
                "deleted": self.deleted}


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0
