"""Live ingestion: files, RTSP, webcams, microphones, synthetic patterns and ZeroMQ producers, cut into
aligned 2-second audio-video chunks (`AVChunk`). Knows nothing of models.

    from streams import read_chunks
    for chunk in read_chunks({"type": "synthetic", "duration": 6}):
        print(chunk.index, chunk.start, chunk.frames.shape, chunk.audio.shape, chunk.flags)
"""

from .api import aread_chunks, open_source, producer_factory, read_chunks
from .chunk import AUDIO_RATE, CHUNK_SECONDS, FRAMES_PER_CHUNK, SAMPLES_PER_CHUNK, VIDEO_FPS, AVChunk, ChunkFlags
from .chunker import Chunker
from .config import SourceConfig, load_source_config
from .errors import ConfigError, SourceError, StreamError
from .events import AudioSample, Discontinuity, VideoSample
from .source import Backoff, Source, SourceStats, State

__all__ = [
    "AUDIO_RATE",
    "CHUNK_SECONDS",
    "FRAMES_PER_CHUNK",
    "SAMPLES_PER_CHUNK",
    "VIDEO_FPS",
    "AVChunk",
    "AudioSample",
    "Backoff",
    "ChunkFlags",
    "Chunker",
    "ConfigError",
    "Discontinuity",
    "Source",
    "SourceConfig",
    "SourceError",
    "SourceStats",
    "State",
    "StreamError",
    "VideoSample",
    "aread_chunks",
    "load_source_config",
    "open_source",
    "producer_factory",
    "read_chunks",
]
