"""`World`: one seed's monitoring world (its event log, frames and audio), as a live producer or an mp4."""

from __future__ import annotations

import bisect
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from ..chunk import AUDIO_RATE
from ..events import AudioSample, Event, VideoSample
from ..mux import mux_audio
from .render import BLOCK_SAMPLES, audio_block
from .render import frame as render_frame
from .timeline import Timeline, WorldEvent


class World:
    """A synthetic monitoring world: the same seed and scenario always give the same media and log.

    width, height: frame size in pixels (even, for H.264); fps: frames per second the producer emits
    (the Chunker samples 2 per second); duration: seconds, or None for a world without end.
    """

    def __init__(self, seed: int = 0, scenario: str = "standard", *, width: int = 224, height: int = 224,
                 fps: float = 2.0, duration: float | None = None) -> None:
        for field, value in (("width", width), ("height", height)):
            if not (isinstance(value, int) and value >= 32 and value % 2 == 0):
                raise ValueError(f"world: field '{field}' has bad value {value!r}: an even number of pixels >= 32")
        if not fps > 0:
            raise ValueError(f"world: field 'fps' has bad value {fps!r}: must be > 0")
        if duration is not None and not duration > 0:
            raise ValueError(f"world: field 'duration' has bad value {duration!r}: must be > 0 or None")
        self.timeline = Timeline(seed, scenario)
        self.seed, self.scenario = seed, scenario
        self.width, self.height, self.fps, self.duration = width, height, fps, duration

    @classmethod
    def from_config(cls, config) -> World:
        """The world of a `streams.config.WorldSourceConfig`."""
        return cls(config.seed, config.scenario, width=config.width, height=config.height, fps=config.fps,
                   duration=config.duration)

    def events(self, until: float, since: float = 0.0) -> list[WorldEvent]:
        """The ground truth: every event with `since <= t <= until` (media seconds), in time order."""
        if self.duration is not None:
            until = min(until, math.nextafter(self.duration, 0.0))
        self.timeline.extend(until)
        ev = self.timeline.events
        lo = bisect.bisect_left(ev, since, key=lambda e: e.t)
        hi = bisect.bisect_right(ev, until, key=lambda e: e.t)
        return ev[lo:hi]

    def frame(self, t: float) -> np.ndarray:
        """[height, width, 3] uint8 RGB at media time `t` (seconds)."""
        return render_frame(self.timeline, t, self.width, self.height)

    def audio(self, start: float, seconds: float) -> np.ndarray:
        """[round(seconds * 16000)] float32 mono from media time `start` (both in seconds)."""
        a, n = int(round(start * AUDIO_RATE)), int(round(seconds * AUDIO_RATE))
        k0, k1 = a // BLOCK_SAMPLES, (a + n + BLOCK_SAMPLES - 1) // BLOCK_SAMPLES
        blocks = np.concatenate([audio_block(self.timeline, k) for k in range(k0, max(k1, k0 + 1))])
        off = a - k0 * BLOCK_SAMPLES
        return blocks[off:off + n]

    def samples(self) -> Iterator[Event]:
        """The media as producer events in time order, per 0.5 s block: its frames, then its audio."""
        block_s = BLOCK_SAMPLES / AUDIO_RATE
        k, f = 0, 0
        while self.duration is None or k * block_s < self.duration:
            end = (k + 1) * block_s if self.duration is None else min((k + 1) * block_s, self.duration)
            while f / self.fps < end:
                t = f / self.fps
                yield VideoSample(t, lambda t=t: self.frame(t))
                f += 1
            audio = audio_block(self.timeline, k)
            yield AudioSample(k * block_s, audio[: int(round((end - k * block_s) * AUDIO_RATE))])
            k += 1

    def write_mp4(self, path: str | Path, seconds: float | None = None, *, log: bool = True) -> Path:
        """Write `seconds` (default: the whole finite world) as H.264 + AAC; with `log`, the event log
        beside it as `<path>.events.jsonl` (one {"t", "kind", "value"} per line)."""
        import av

        seconds = seconds if seconds is not None else self.duration
        if seconds is None:
            raise ValueError("world: an endless world needs `seconds` to be written")
        path = Path(path)
        with av.open(str(path), "w") as container:
            vs = container.add_stream("libx264", rate=round(self.fps))
            vs.width, vs.height, vs.pix_fmt = self.width, self.height, "yuv420p"
            aus = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
            for i in range(int(math.ceil(seconds * round(self.fps)))):
                for packet in vs.encode(av.VideoFrame.from_ndarray(self.frame(i / round(self.fps)), format="rgb24")):
                    container.mux(packet)
            for packet in vs.encode():
                container.mux(packet)
            mux_audio(container, aus, self.audio(0.0, seconds))
        if log:
            lines = [json.dumps({"t": e.t, "kind": e.kind, "value": e.value}) for e in self.events(seconds)]
            Path(f"{path}.events.jsonl").write_text("\n".join(lines) + "\n")
        return path


class WorldProducer:
    """A `streams.source.Producer` over a `World`: unpaced (as fast as it is read) or paced like a live
    feed (`realtime`, `speed` times media speed). `clock` and `wait(seconds) -> stopped` are injectable so
    tests control time; by default `time.monotonic` and the producer's stop event."""

    has_video = True
    has_audio = True
    origin = 0.0
    decode_errors = 0

    def __init__(self, world: World, *, realtime: bool = False, speed: float = 1.0,
                 clock: Callable[[], float] = time.monotonic, wait: Callable[[float], bool] | None = None) -> None:
        self.world = world
        self._realtime, self._speed = realtime, speed
        self._stop = threading.Event()
        self._clock = clock
        self._wait = wait or self._stop.wait
        self._t0: float | None = None

    def close(self) -> None:
        self._stop.set()

    def __iter__(self) -> Iterator[Event]:
        for event in self.world.samples():
            if self._stop.is_set():
                return
            if self._realtime:
                if self._t0 is None:
                    self._t0 = self._clock()
                delay = self._t0 + event.t / self._speed - self._clock()
                if delay > 0 and self._wait(delay):
                    return
            wall = time.time()
            if isinstance(event, VideoSample):
                event.wall = wall
                yield event
            else:
                yield AudioSample(event.t, event.samples, wall)
