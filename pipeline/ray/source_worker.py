"""`SourceWorker`: one stream's `streams.Source`, stepped by the source actor (`next_chunk`)."""

from __future__ import annotations

import os
import time
from dataclasses import asdict

from pipeline.messages import ChunkKind, ChunkMeta
from pipeline.ray.process import HeapTrim, where
from streams import AVChunk, load_source_config, open_source


class SourceWorker:
    """One stream's source. `next_chunk(timeout)` is the actor's single step."""

    def __init__(self, name: str, source: dict, *, queue_size: int | None = None, drop_policy: str | None = None,
                 factory=None) -> None:
        overrides = {"name": name}
        if queue_size is not None:
            overrides["queue_size"] = queue_size
        config = load_source_config({**source, **overrides})
        if drop_policy is not None and config.live:
            config = config.model_copy(update={"drop_policy": drop_policy})
        self.name = name
        self.source = open_source(config, name=name, factory=factory)
        self.heap = HeapTrim()

    def next_chunk(self, timeout: float = 0.5) -> tuple[ChunkMeta, AVChunk | None]:
        """The next chunk (meta, chunk); ("idle", None) after `timeout`; ("end", None) at end of stream.
        Raises the source's error if it failed."""
        try:
            chunk = self.source.get(timeout)
        except TimeoutError:
            return self._meta(ChunkKind.IDLE), None
        if chunk is None:
            return self._meta(ChunkKind.END), None
        self.heap.after_work()
        return self._meta(ChunkKind.CHUNK, chunk), chunk

    def _meta(self, kind: ChunkKind, chunk: AVChunk | None = None) -> ChunkMeta:
        s = self.source.stats()
        extra = {}
        if chunk is not None:
            extra = dict(index=chunk.index, start=chunk.start, duration=chunk.duration,
                         capture_time=chunk.capture_time or time.time(), gap_before=chunk.flags.gap_before)
        return ChunkMeta(kind, self.name, dropped=s.chunks_dropped, reconnects=s.reconnects,
                         queue_depth=s.queue_depth, state=s.state, pid=os.getpid(),
                         refused={k: n for k, n in s.refused.items() if n}, **extra)

    def stats(self) -> dict:
        return asdict(self.source.stats())

    def where(self) -> dict:
        return where()

    def close(self) -> dict:
        """Close the source; its final counters (`streams.SourceStats` as a dict)."""
        self.source.close()
        return self.stats()
