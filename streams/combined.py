"""One stream from a video source and a separate audio source (camera + microphone).

Each sub-producer runs in its own thread; only video events are taken from the video source and only audio
events from the audio source, merged into one event stream for one Chunker. With align="wall" each
sub-source's timestamps are mapped onto the wall clock at its first sample, so two independent live clocks
share one media clock; with align="media" timestamps are used as they are (two files made together).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from .events import AudioSample, Discontinuity, Event, VideoSample


class CombinedProducer:
    def __init__(self, video, audio, *, align: str = "media") -> None:
        self._subs = {"video": video, "audio": audio}
        self.has_video, self.has_audio = video.has_video, audio.has_audio
        self.origin = None if align == "wall" else 0.0
        self._align = align
        self._q: queue.Queue = queue.Queue(maxsize=256)
        self._stop = threading.Event()
        self.decode_errors = 0

    def close(self) -> None:
        self._stop.set()
        for p in self._subs.values():
            p.close()

    def _pump(self, kind: str) -> None:
        want = VideoSample if kind == "video" else AudioSample
        shift = None
        try:
            for e in self._subs[kind]:
                if self._stop.is_set():
                    break
                if not isinstance(e, want):
                    continue
                if self._align == "wall":
                    if shift is None:
                        shift = e.wall - e.t
                    e = (
                        VideoSample(e.t + shift, e.image, e.wall)
                        if kind == "video"
                        else AudioSample(e.t + shift, e.samples, e.wall)
                    )
                while not self._stop.is_set():
                    try:
                        self._q.put((kind, e), timeout=0.1)
                        break
                    except queue.Full:
                        continue
            self._q.put((kind, None))
        except BaseException as err:  # noqa: BLE001 - handed to the consuming thread
            self._q.put((kind, err))

    def __iter__(self) -> Iterator[Event]:
        threads = [threading.Thread(target=self._pump, args=(k,), daemon=True) for k in self._subs]
        for t in threads:
            t.start()
        done = set()
        try:
            while len(done) < 2 and not self._stop.is_set():
                try:
                    kind, e = self._q.get(timeout=0.1)
                except queue.Empty:
                    continue
                if e is None:
                    done.add(kind)
                elif isinstance(e, BaseException):
                    raise e
                elif not isinstance(e, Discontinuity):
                    yield e
        finally:
            self.close()
            self.decode_errors = sum(getattr(p, "decode_errors", 0) for p in self._subs.values())
