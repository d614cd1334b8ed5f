"""PyAV decoding: files, RTSP and lavfi test sources -> timestamped `VideoSample`/`AudioSample` events.

Video frames are converted to RGB lazily (only frames the Chunker samples at 2 fps are ever converted), resized
in the same swscale call when `max_width`/`max_height` cap the size (aspect kept, even dimensions). Audio is
resampled to 16 kHz mono float32 by PyAV's `AudioResampler`; its output timestamps come from the input's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator

import av
import numpy as np

from .chunk import AUDIO_RATE
from .errors import SourceError, one_line
from .events import AudioSample, Event, VideoSample
from .redact import redact_url

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_ERRORS = 50


def capped_size(width: int, height: int, max_width: int | None, max_height: int | None) -> tuple[int, int]:
    """The largest size within the caps that keeps the aspect ratio (even dimensions, never upscaled)."""
    scale = 1.0
    if max_width and width > max_width:
        scale = min(scale, max_width / width)
    if max_height and height > max_height:
        scale = min(scale, max_height / height)
    if scale >= 1.0:
        return width, height
    return max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2)


class AvProducer:
    """Decodes one PyAV container. Created (and the container opened) by the source's producer factory.

    open_container: returns an opened `av.container.InputContainer` (raises on failure).
    realtime/speed: sleep so that media time advances like wall time (times `speed`).
    """

    def __init__(
        self,
        open_container: Callable[[], av.container.InputContainer],
        *,
        what: str,
        realtime: bool = False,
        speed: float = 1.0,
        max_width: int | None = None,
        max_height: int | None = None,
        file_origin: bool = False,
    ) -> None:
        self.what = what
        try:
            self._container = open_container()
        except FileNotFoundError:
            raise SourceError(f"{what}: file not found") from None
        except av.error.FFmpegError as e:
            raise SourceError(f"{what}: cannot open: {one_line(e)}") from None
        c = self._container
        self._vstream = c.streams.video[0] if c.streams.video else None
        self._astream = c.streams.audio[0] if c.streams.audio else None
        if self._vstream is None and self._astream is None:
            c.close()
            raise SourceError(f"{what}: no audio or video stream")
        self.has_video = self._vstream is not None
        self.has_audio = self._astream is not None
        self.origin: float | None = 0.0 if file_origin else None
        if file_origin:
            starts = [
                float(s.start_time * s.time_base)
                for s in (self._vstream, self._astream)
                if s is not None and s.start_time is not None
            ]
            self.origin = max(0.0, min(starts)) if starts else 0.0
        for s in (self._vstream, self._astream):
            if s is not None:
                s.thread_type = "AUTO"
        self._realtime, self._speed = realtime, speed
        self._max_w, self._max_h = max_width, max_height
        self._stop = threading.Event()
        self.decode_errors = 0
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE) if self.has_audio else None
        self._pace_t0: float | None = None
        self._pace_wall = 0.0
        self._pending_video: list[av.VideoFrame] = []  # frames without pts, waiting for the next stamped one
        self._last_vt: float | None = None

    def close(self) -> None:
        """Ask the decoding loop to stop; the iterating thread closes the container."""
        self._stop.set()

    # -- iteration ----------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Event]:
        streams = [s for s in (self._vstream, self._astream) if s is not None]
        errors = 0
        try:
            demux = self._container.demux(streams)
            while not self._stop.is_set():
                try:
                    packet = next(demux)
                except StopIteration:
                    break
                except av.error.EOFError:
                    break
                except av.error.ExitError:
                    if self._stop.is_set():
                        break
                    raise SourceError(f"{self.what}: read timed out") from None
                except av.error.FFmpegError as e:
                    raise SourceError(f"{self.what}: read failed: {one_line(e)}") from None
                try:
                    frames = packet.decode()
                    errors = 0
                except av.error.FFmpegError as e:
                    errors += 1
                    self.decode_errors += 1
                    log.debug("%s: dropped undecodable packet: %s", self.what, one_line(e))
                    if errors > MAX_CONSECUTIVE_ERRORS:
                        raise SourceError(f"{self.what}: undecodable data ({one_line(e)})") from None
                    continue
                for frame in frames:
                    yield from self._frame_events(frame)
            if not self._stop.is_set():
                yield from self._flush()
        finally:
            try:
                self._container.close()
            except Exception:
                log.debug("%s: closing the container failed", self.what, exc_info=True)

    def _flush(self) -> Iterator[Event]:
        for s in (self._vstream, self._astream):
            if s is None:
                continue
            try:
                for frame in s.codec_context.decode(None):
                    yield from self._frame_events(frame)
            except av.error.FFmpegError:
                self.decode_errors += 1
        if self._resampler is not None:
            for out in self._resampler.resample(None):
                yield from self._audio_events(out)

    def _frame_events(self, frame) -> Iterator[Event]:
        if isinstance(frame, av.VideoFrame):
            yield from self._video_events(frame)
        else:
            try:
                outs = self._resampler.resample(frame)
            except (av.error.FFmpegError, ValueError) as e:  # a layout/rate change mid-stream: start over
                log.debug("%s: audio format changed (%s); new resampler", self.what, one_line(e))
                self._resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
                outs = self._resampler.resample(frame)
            for out in outs:
                yield from self._audio_events(out)

    def _video_events(self, frame: av.VideoFrame) -> Iterator[Event]:
        t = frame.time
        if t is None:
            if self._last_vt is not None:
                t = self._last_vt + self._frame_interval()
            else:
                self._pending_video.append(frame)
                return
        for i, f in enumerate(self._pending_video):  # stamp frames that came before the first pts
            ft = t - (len(self._pending_video) - i) * self._frame_interval()
            yield self._pace(VideoSample(ft, self._converter(f)))
        self._pending_video = []
        self._last_vt = t
        yield self._pace(VideoSample(t, self._converter(frame)))

    def _frame_interval(self) -> float:
        rate = self._vstream.average_rate or self._vstream.guessed_rate
        return float(1 / rate) if rate else 0.04

    def _audio_events(self, out: av.AudioFrame) -> Iterator[Event]:
        t = out.time
        if t is None:
            return
        x = out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
        if len(x):
            yield self._pace(AudioSample(t, x))

    def _converter(self, frame: av.VideoFrame) -> Callable[[], np.ndarray]:
        w, h = capped_size(frame.width, frame.height, self._max_w, self._max_h)

        def convert() -> np.ndarray:
            return frame.to_ndarray(format="rgb24", width=w, height=h)

        return convert

    def _pace(self, e: Event) -> Event:
        e_wall = time.time()
        if self._realtime:
            if self._pace_t0 is None:
                self._pace_t0, self._pace_wall = e.t, time.monotonic()
            due = self._pace_wall + (e.t - self._pace_t0) / self._speed
            delay = due - time.monotonic()
            if delay > 5.0:  # a timestamp jump: re-anchor instead of sleeping through it
                self._pace_t0, self._pace_wall = e.t, time.monotonic()
            elif delay > 0:
                self._stop.wait(delay)
            e_wall = time.time()
        if isinstance(e, VideoSample):
            e.wall = e_wall
            return e
        return AudioSample(e.t, e.samples, e_wall)


def open_file(path: str, **kw) -> AvProducer:
    """Producer for a media file (any container FFmpeg reads)."""
    import os

    if not os.path.exists(path):
        raise SourceError(f"file {path!r}: not found")
    # only the file protocol: a playlist or concat list inside the file cannot make FFmpeg open a URL
    return AvProducer(lambda: av.open(path, metadata_errors="ignore", options={"protocol_whitelist": "file"}),
                      what=f"file {path!r}", file_origin=True, **kw)


def open_rtsp(url: str, *, transport: str, connect_timeout: float, read_timeout: float, **kw) -> AvProducer:
    """Producer for an RTSP URL (credentials already in `url`; only the redacted form is ever printed)."""
    options = {"rtsp_transport": transport, "fflags": "+genpts"}
    return AvProducer(
        lambda: av.open(url, options=options, timeout=(connect_timeout, read_timeout), metadata_errors="ignore"),
        what=f"rtsp {redact_url(url)!r}",
        **kw,
    )


def synthetic_graph(
    *,
    video: bool,
    audio: bool,
    pattern: str,
    width: int,
    height: int,
    fps: float,
    frequency: float,
    duration: float | None,
) -> str:
    """A lavfi filtergraph with outputs out0 (video) and/or out1 (audio)."""
    parts = []
    dur = f":duration={duration}" if duration is not None else ""
    if video:
        parts.append(f"{pattern}=size={width}x{height}:rate={fps}{dur}[out0]")
    if audio:
        parts.append(f"sine=frequency={frequency}:sample_rate={AUDIO_RATE}{dur}[out{1 if video else 0}]")
    return ";".join(parts)


def open_synthetic(graph: str, **kw) -> AvProducer:
    """Producer for a lavfi graph, e.g. from `synthetic_graph` (works with PyAV's wheels alone)."""
    p = AvProducer(lambda: av.open(graph, format="lavfi"), what="synthetic", **kw)
    p.origin = 0.0
    return p
