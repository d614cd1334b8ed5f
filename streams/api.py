"""Public entry points: config -> running `Source` -> chunks (sync and async)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

from .chunk import AVChunk
from .combined import CombinedProducer
from .config import (
    Backoff,
    CombinedSourceConfig,
    FileSourceConfig,
    MicrophoneSourceConfig,
    RtspSourceConfig,
    SourceConfig,
    SyntheticSourceConfig,
    WebcamSourceConfig,
    WorldSourceConfig,
    ZmqSourceConfig,
    load_source_config,
)
from .redact import redact_url
from .source import ProducerFactory, Source


def producer_factory(config: SourceConfig) -> ProducerFactory:
    """The factory that opens `config`'s media (called at start and on every reconnect)."""
    caps = {"max_width": config.max_width, "max_height": config.max_height}
    if isinstance(config, FileSourceConfig):
        from .decode import open_file

        return lambda: open_file(str(config.path), realtime=config.realtime, speed=config.speed, **caps)
    if isinstance(config, RtspSourceConfig):
        from .decode import open_rtsp

        return lambda: open_rtsp(config.resolved_url(), transport=config.transport,
                                 connect_timeout=config.connect_timeout, read_timeout=config.read_timeout, **caps)
    if isinstance(config, SyntheticSourceConfig):
        from .decode import open_synthetic, synthetic_graph

        graph = synthetic_graph(video=config.video, audio=config.audio, pattern=config.pattern, width=config.width,
                                height=config.height, fps=config.fps, frequency=config.frequency,
                                duration=config.duration)
        return lambda: open_synthetic(graph, realtime=config.realtime, **caps)
    if isinstance(config, WebcamSourceConfig):
        from .device import open_webcam

        return lambda: open_webcam(config.device, input_format=config.input_format, width=config.width,
                                   height=config.height, fps=config.fps, ffmpeg=config.ffmpeg, **caps)
    if isinstance(config, MicrophoneSourceConfig):
        from .device import open_microphone

        return lambda: open_microphone(config.device, backend=config.backend, ffmpeg=config.ffmpeg)
    if isinstance(config, ZmqSourceConfig):
        from .zmq_source import ZmqProducer

        return lambda: ZmqProducer(config.endpoint, bind=config.bind, video=config.video, audio=config.audio,
                                   max_message_bytes=config.max_message_bytes, idle_timeout=config.idle_timeout,
                                   **caps)
    if isinstance(config, WorldSourceConfig):
        from .decode import capped_size
        from .world import World, WorldProducer

        width, height = capped_size(config.width, config.height, config.max_width, config.max_height)
        world = World(config.seed, config.scenario, width=width, height=height, fps=config.fps,
                      duration=config.duration)  # one world: a reopened producer replays the same media
        return lambda: WorldProducer(world, realtime=config.realtime, speed=config.speed)
    if isinstance(config, CombinedSourceConfig):
        v = producer_factory(config.video.model_copy(update=caps) if any(caps.values()) else config.video)
        a = producer_factory(config.audio)
        return lambda: CombinedProducer(v(), a(), align=config.alignment)
    raise TypeError(f"unknown source config {type(config).__name__}")


def _describe(config: SourceConfig) -> str:
    if isinstance(config, FileSourceConfig):
        return f"file {str(config.path)!r}"
    if isinstance(config, RtspSourceConfig):
        return f"rtsp {redact_url(config.url)!r}"
    if isinstance(config, ZmqSourceConfig):
        return f"zmq {config.endpoint}"
    if isinstance(config, WorldSourceConfig):
        return f"world seed {config.seed} ({config.scenario})"
    return config.type


def open_source(
    config: Any, *, name: str | None = None, factory: ProducerFactory | None = None, start: bool = True
) -> Source:
    """Build (and by default start) a `Source` for a config mapping, config object or YAML path.

    factory: replaces the config's producer factory (tests inject blocking, failing or finite producers).
    Raises ConfigError for a bad config and SourceError if the media cannot be opened.
    """
    config = load_source_config(config)
    reconnect = None
    if isinstance(config, RtspSourceConfig):
        reconnect = config.reconnect
    elif isinstance(config, (WebcamSourceConfig, MicrophoneSourceConfig)) or (
        isinstance(config, CombinedSourceConfig) and config.live
    ):
        reconnect = Backoff(initial_delay=1.0, max_delay=10.0, max_attempts=None)
    src = Source(
        name or config.name or config.type,
        factory or producer_factory(config),
        live=config.live,
        queue_size=config.queue_size,
        drop_policy=config.policy,
        reconnect=reconnect,
        loop=getattr(config, "loop", False),
        describe=_describe(config),
    )
    if start:
        src.start()
    return src


def read_chunks(source: Any, *, name: str | None = None) -> Iterator[AVChunk]:
    """Chunks from a source config (mapping, config object or YAML path); closes the source when done."""
    src = open_source(source, name=name)
    try:
        yield from src
    finally:
        src.close()


async def aread_chunks(source: Any, *, name: str | None = None, poll: float = 0.25) -> AsyncIterator[AVChunk]:
    """Async form of `read_chunks`: waits in a worker thread, so the event loop stays free."""
    src = await asyncio.to_thread(open_source, source, name=name)
    try:
        while True:
            try:
                chunk = await asyncio.to_thread(src.get, poll)
            except TimeoutError:
                continue
            if chunk is None:
                return
            yield chunk
    finally:
        await asyncio.to_thread(src.close)
