"""Live ingestion: files, RTSP, webcams, microphones, synthetic patterns and ZeroMQ producers, cut into
aligned 2-second audio-video chunks (`AVChunk`). Knows nothing of models.

    from streams import read_chunks
    for chunk in read_chunks({"type": "synthetic", "duration": 6}):
        print(chunk.index, chunk.start, chunk.frames.shape, chunk.audio.shape, chunk.flags)

The names below load their module when first used, so `import streams.chunk` (the chunk's media constants,
which `omnisift` shares) costs numpy only, not PyAV, pyzmq and pydantic.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    ".api": ("aread_chunks", "open_source", "producer_factory", "read_chunks"),
    ".chunk": ("AUDIO_RATE", "CHUNK_SECONDS", "FRAMES_PER_CHUNK", "SAMPLES_PER_CHUNK", "VIDEO_FPS", "AVChunk",
               "ChunkFlags"),
    ".chunker": ("Chunker",),
    ".config": ("Backoff", "SourceConfig", "load_source_config"),
    ".errors": ("ConfigError", "SourceError", "StreamError"),
    ".events": ("AudioSample", "Discontinuity", "VideoSample"),
    ".source": ("Source", "SourceStats", "State"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_HOME_OF)


def __getattr__(name: str) -> Any:
    if name not in _HOME_OF:
        raise AttributeError(f"module 'streams' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME_OF[name], __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
