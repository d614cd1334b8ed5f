"""A stream's recent media, as the driver reaches it: the dashboard's picture of the newest chunk and the
media of an alert clip.

The driver never holds frames: it holds the object refs of each stream's last `chunks_before + 1` chunks
in the context (`StreamState.recent`, filled by the appender), which keeps those chunks in Ray's object
store (about 3.8 MB per chunk at 640x480: BENCHMARKS.md) and nothing older. The picture fetches the
newest chunk and what the model worker says was kept of it (`ModelWorker.kept_layout`) and draws them
with `pipeline.viz` (the same drawing as `omnisift viz`) in a thread; a clip fetches the chunks, joins
them and hands them to the clip writer (`pipeline.serve.clips`).
"""

from __future__ import annotations

import asyncio
import io
import time

import numpy as np

from pipeline.messages import KeptLayout, WatchEvent
from pipeline.ray.state import StreamState
from pipeline.serve.requests import NotFound
from streams.chunk import AUDIO_RATE

JPEG_QUALITY = 85


async def frame_jpeg(st: StreamState, model) -> tuple[int, bytes]:
    """(chunk index, JPEG) of the stream's newest chunk in the context, kept cells and audio drawn over it;
    drawn once per chunk (the last picture is kept with the stream)."""
    if not st.recent:
        raise NotFound(f"stream {st.spec.name!r} has no chunk in the context yet")
    meta, ref = st.recent[-1]
    key = (meta.pid, meta.index, meta.capture_time)
    if st.picture is not None and st.picture[0] == key:
        return meta.index, st.picture[1]
    chunk, layout = await asyncio.gather(ref, model.kept_layout.remote(st.spec.name))
    if chunk.frames is None:
        raise NotFound(f"stream {st.spec.name!r} has no video")
    if layout is not None and layout.index != meta.index:
        layout = None  # a newer chunk is in already: the plain frame rather than another chunk's choice
    jpeg = await asyncio.to_thread(draw_jpeg, chunk.frames[0], layout)
    st.picture = (key, jpeg)
    return meta.index, jpeg


def draw_jpeg(frame: np.ndarray, layout: KeptLayout | None) -> bytes:
    """The picture of one frame [H, W, 3] with the chunk's first visual frame's kept cells and its audio."""
    from pipeline.viz import frame_picture

    cells = None if layout is None or layout.video is None else layout.video[0]
    audio = None if layout is None else layout.audio
    image, _ = frame_picture(frame, cells, audio)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)  # 4:4:4 keeps the 1-pixel borders green
    return buf.getvalue()


def clip_name(stream: str, index: int, now: float | None = None) -> str:
    """A clip's file name: unique across restarts of the pipeline (which number chunks from 0 again)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now if now is not None else time.time()))
    return f"{stream}-{stamp}-c{index:06d}.mp4"


async def clip_media(refs: list) -> tuple[np.ndarray | None, np.ndarray | None, list[int]]:
    """The chunks behind `refs` joined: frames [N, H, W, 3] at 2 fps, audio [S] at 16 kHz, their indices.
    A chunk whose frame size differs from the last one's (a source that changed resolution) is left out."""
    chunks = await asyncio.gather(*refs)
    last = chunks[-1]
    keep = [c for c in chunks if (c.frames is None) == (last.frames is None)
            and (c.frames is None or c.frames.shape[1:] == last.frames.shape[1:])]
    frames = None if last.frames is None else np.concatenate([c.frames for c in keep])
    audio = None
    if last.audio is not None:
        audio = np.concatenate([c.audio if c.audio is not None else np.zeros(round(c.duration * AUDIO_RATE), np.float32)
                                for c in keep])
    return frames, audio, [c.index for c in keep]


def sidecar(event: WatchEvent, st: StreamState, indices: list[int], threshold: float | None) -> dict:
    """The clip's JSON sidecar: the alert, and what the compressor kept of the alert's chunk."""
    last = st.last
    kept = None if last is None else {k: getattr(last, k) for k in
                                      ("video_before", "video_after", "audio_before", "audio_after")}
    return {"stream": event.stream, "question": event.question, "p_yes": event.p_yes, "threshold": threshold,
            "index": event.index, "media_time": event.media_time, "chunks": indices, "lag": event.lag,
            "watch_id": event.watch_id, "kept": kept, "time": time.time()}
