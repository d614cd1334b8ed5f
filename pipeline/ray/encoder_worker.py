"""`EncoderWorker`: preprocess + towers + compression of every stream's chunks, in the encoder actor;
only the compressed tokens leave it (`CompressedChunkReply`, tensors on the CPU)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config import ModelConfig
from pipeline.messages import KeptLayout
from pipeline.ray.batching import BatchStats, MicroBatcher
from pipeline.ray.models import compression, load_omni, model_spec
from pipeline.ray.placement import bound_gpu_memory
from pipeline.ray.process import HeapTrim, set_threads, where
from streams import AVChunk

if TYPE_CHECKING:  # the driver imports this module for the actor class; torch loads only in the actor
    from operators.chunk_encoder import StageTimes


@dataclass(frozen=True)
class CompressedChunkReply:
    """What the encoder actor replies for one chunk: the compressed chunk (tensors on the CPU) and what each
    stage cost. (`operators.EncodedChunk` is the chunk before compression: the towers' outputs.)"""

    stream: str
    index: int
    compressed: Any  # operators.CompressedChunk
    times: StageTimes
    pid: int
    layout: KeptLayout | None = None  # what was kept, as a picture needs it (the model worker keeps the last)
    batch: int = 1  # chunks (this one included) in the tower forward that encoded it


def chunk_key(chunk: AVChunk) -> tuple[int, float, float]:
    """What tells one chunk of a stream from another: index, media start and capture time (a restarted
    source numbers its chunks from 0 again, captured later)."""
    return chunk.index, chunk.start, chunk.capture_time


class EncoderWorker:
    """Preprocess + encode + compress, one `ChunkEncoder` per stream; only compressed tokens leave.

    Concurrent `encode` calls (the actor is threaded when `model.encoder_batch.max_batch` > 1) are
    gathered by a `MicroBatcher` into batches of at most `max_batch` chunks, one per stream, that go
    through one forward of each tower (`operators.encode_many`) and are then compressed each with its
    stream's own state. A stream's chunks run one batch after another, the earliest capture first; one
    that reaches the actor after a later chunk of its stream was encoded (Ray does not order a threaded
    actor's calls; the pump sends them in order, so this is rare) is compressed as after a gap
    (`Compressor.carrying`), never wrongly. `max_batch: 1` is one chunk at a time, one call at a time.
    `stats()` counts the batches and their sizes.

    `encode` is idempotent. The driver sends a chunk again when a call failed without Ray knowing
    whether it ran; on an encoder that was only unreachable it had, and encoding it again would advance
    the compressor's state (the carried previous frame, a random generator, a frame window) a second
    time. So each stream's last `remember` results are kept and a chunk seen again gets its stored
    result. A chunk is sent again while the newer ones sent after it wait: at most `max_in_flight` in
    the queue and one more held by the pump, so `remember` = max_in_flight + 2 keeps every chunk that can
    come again (`pipeline.ray.actors.start_encoder` passes that; the default fits max_in_flight 2). The
    store is read and written only by the batch that runs (one at a time), so a chunk sent again while
    its first call is still waiting is encoded once: the two never share a batch (one per stream) and
    the later batch finds the stored result.
    """

    def __init__(self, spec: ModelConfig | Mapping[str, Any], *, model=None, num_cpus: float | None = None,
                 num_gpus: float | None = None,
                 remember: int = 4) -> None:
        self.spec = model_spec(spec)
        self.compression = compression(self.spec)
        set_threads(num_cpus)
        bound_gpu_memory(num_gpus, self.spec.device)  # its share of the card, before anything is allocated
        self.model = model if model is not None else load_omni(self.spec, part="towers")
        self.encoders: dict[str, Any] = {}
        self.remember = remember
        self.recent: dict[str, OrderedDict[tuple, CompressedChunkReply]] = {}  # per stream, oldest first
        batch = self.spec.encoder_batch
        self.batcher = MicroBatcher(self._encode_batch, max_batch=batch.max_batch,
                                    max_wait=batch.max_wait_ms / 1000, order=lambda c: (c.capture_time, c.index))
        self.heap = HeapTrim()

    def encode(self, chunk: AVChunk) -> CompressedChunkReply:
        """The chunk compressed; a chunk among the stream's last `remember` gets its stored result."""
        return self.batcher.submit(chunk, chunk.stream)

    def _encode_batch(self, chunks: list[AVChunk]) -> list[CompressedChunkReply | Exception]:
        """One batch (at most one chunk per stream): stored results for chunks seen before, the others
        through `encode_many` and stored; a chunk's exception in its place."""
        from operators import encode_many

        results: list[CompressedChunkReply | Exception | None] = [None] * len(chunks)
        todo = []
        for i, chunk in enumerate(chunks):
            stored = self.recent.get(chunk.stream, {}).get(chunk_key(chunk))
            if stored is not None:
                results[i] = stored
            else:
                todo.append(i)
        encs = [self._encoder(chunks[i].stream) for i in todo]
        outputs = encode_many(list(zip(encs, [chunks[i] for i in todo], strict=True)))
        for i, enc, out in zip(todo, encs, outputs, strict=True):
            try:
                results[i] = out if isinstance(out, Exception) else self._store(chunks[i], enc, out, len(todo))
            except Exception as e:  # noqa: BLE001 - this chunk's failure, returned to its caller
                results[i] = e
        self.heap.after_work()
        return results

    def _encoder(self, stream: str):
        enc = self.encoders.get(stream)
        if enc is None:
            enc = self.encoders[stream] = self.compression.chunk_encoder(
                self.model, self.spec.min_pixels, self.spec.max_pixels)
        return enc

    def _store(self, chunk: AVChunk, enc: Any, compressed: Any, batch: int) -> CompressedChunkReply:
        """The result of a chunk `enc` (its stream's ChunkEncoder) just compressed in a forward of `batch`
        chunks, tensors moved to the CPU, kept among its stream's last `remember`."""
        compressed.tokens = compressed.tokens.detach().cpu()
        compressed.positions = compressed.positions.cpu()
        compressed.is_video = compressed.is_video.cpu()
        layout = kept_layout(chunk.stream, compressed, enc.last_grid_hw)
        result = CompressedChunkReply(chunk.stream, chunk.index, compressed, enc.last_times, os.getpid(), layout, batch)
        recent = self.recent.setdefault(chunk.stream, OrderedDict())
        recent[chunk_key(chunk)] = result
        while len(recent) > self.remember:
            recent.popitem(last=False)
        return result

    def stats(self) -> BatchStats:
        """The batches encoded so far: how many, how many chunks, the largest, those of two or more."""
        return self.batcher.stats()

    def remove(self, stream: str) -> None:
        self.encoders.pop(stream, None)
        self.recent.pop(stream, None)
        self.batcher.forget(stream)

    def where(self) -> dict:
        return where()


def kept_layout(stream: str, compressed: Any, grid_hw: tuple[int, int] | None) -> KeptLayout:
    """The kept cells and audio tokens of a compressed chunk, read from the kept tokens' positions by the
    same functions `omnisift viz` draws with: [2, rows, cols] and [audio_before] bool, a few KB."""
    from omnisift.token_layout import GRID_STEPS_PER_CHUNK
    from pipeline.viz import kept_audio, kept_cells

    video = None if grid_hw is None else kept_cells(compressed, GRID_STEPS_PER_CHUNK, *grid_hw)
    audio = kept_audio(compressed, compressed.audio_before) if compressed.audio_before else None
    return KeptLayout(stream, compressed.index, video, audio)
