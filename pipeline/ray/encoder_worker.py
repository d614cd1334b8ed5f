"""`EncoderWorker`: preprocess + towers + compression of every stream's chunks, in the encoder actor;
only the compressed tokens leave it (`EncodedChunkResult`, tensors on the CPU)."""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.config import ModelSpec
from pipeline.messages import KeptLayout
from pipeline.ray.models import compression, load_omni, model_spec
from pipeline.ray.process import set_threads, where
from streams import AVChunk

if TYPE_CHECKING:  # the driver imports this module for the actor class; torch loads only in the actor
    from operators.chunk_encoder import StageTimes


@dataclass(frozen=True)
class EncodedChunkResult:
    """A compressed chunk (tensors on the CPU) and what each stage cost."""

    stream: str
    index: int
    compressed: Any  # operators.CompressedChunk
    times: StageTimes
    pid: int
    layout: KeptLayout | None = None  # what was kept, as a picture needs it (the model worker keeps the last)


def chunk_key(chunk: AVChunk) -> tuple[int, float, float]:
    """What tells one chunk of a stream from another: index, media start and capture time (a restarted
    source numbers its chunks from 0 again, captured later)."""
    return chunk.index, chunk.start, chunk.capture_time


class EncoderWorker:
    """Preprocess + encode + compress, one `ChunkEncoder` per stream; only compressed tokens leave.

    `encode` is idempotent. The driver sends a chunk again when a call failed without Ray knowing
    whether it ran; on an encoder that was only unreachable it had, and encoding it again would advance
    the compressor's state (the carried previous frame, a random generator, a frame window) a second
    time. So each stream's last `remember` results are kept and a chunk seen again gets its stored
    result. A chunk is sent again while the newer ones sent after it wait: at most `max_in_flight` in
    the queue and one more held by the pump, so `remember` = max_in_flight + 2 keeps every chunk that can
    come again (`pipeline.ray.actors.start_encoder` passes that; the default fits max_in_flight 2).
    """

    def __init__(self, spec: ModelSpec | Mapping[str, Any], *, model=None, num_cpus: float | None = None,
                 remember: int = 4) -> None:
        self.spec = model_spec(spec)
        self.compression = compression(self.spec)
        set_threads(num_cpus)
        self.model = model if model is not None else load_omni(self.spec, part="towers")
        self.encoders: dict[str, Any] = {}
        self.remember = remember
        self.recent: dict[str, OrderedDict[tuple, EncodedChunkResult]] = {}  # per stream, oldest first

    def encode(self, chunk: AVChunk) -> EncodedChunkResult:
        """The chunk compressed; a chunk among the stream's last `remember` gets its stored result."""
        recent = self.recent.setdefault(chunk.stream, OrderedDict())
        key = chunk_key(chunk)
        if key not in recent:
            recent[key] = self._encode(chunk)
            while len(recent) > self.remember:
                recent.popitem(last=False)
        return recent[key]

    def _encode(self, chunk: AVChunk) -> EncodedChunkResult:
        enc = self.encoders.get(chunk.stream)
        if enc is None:
            enc = self.encoders[chunk.stream] = self.compression.chunk_encoder(
                self.model, self.spec.min_pixels, self.spec.max_pixels)
        compressed = enc.process(chunk)
        compressed.tokens = compressed.tokens.detach().cpu()
        compressed.positions = compressed.positions.cpu()
        compressed.is_video = compressed.is_video.cpu()
        layout = kept_layout(chunk.stream, compressed, enc.last_grid_hw)
        return EncodedChunkResult(chunk.stream, chunk.index, compressed, enc.last_times, os.getpid(), layout)

    def remove(self, stream: str) -> None:
        self.encoders.pop(stream, None)
        self.recent.pop(stream, None)

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
