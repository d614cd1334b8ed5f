"""The whole per-chunk path, AVChunk -> CompressedChunk: preprocess, encode, compress.

This is what an encoder actor runs on the GPU; the live session runs it in-process. `encode_many` runs
the chunks of several streams through one forward of each tower, each compressed with its own stream's
state afterwards. It fixes the
stream's modalities on the first chunk and fills a missing modality inside an audio-video stream (a
gap in video holds the last frame, a gap in audio is silence), so the token layout never changes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from operators.chunks import CompressedChunk, EncodedChunk, PreprocessedChunk
from operators.compress import Compressor
from operators.encode import Encoder
from operators.preprocess import Preprocessor
from streams.chunk import AUDIO_RATE, VIDEO_FPS, AVChunk


@dataclass(frozen=True)
class Modalities:
    """Which modalities a stream carries, fixed by its first chunk."""

    video: bool
    audio: bool


@dataclass(frozen=True)
class StageTimes:
    """Seconds one chunk spent in each stage."""

    preprocess: float
    encode: float
    compress: float


class ChunkEncoder:
    """Preprocess + encode + compress for one stream. `make_compressor(tokens_per_frame, has_audio)` builds
    the compressor once the frame size and the stream's modalities are known (a retention target counts
    the tokens the stream has: without audio, video alone makes up the target)."""

    def __init__(self, preprocessor: Preprocessor, encoder: Encoder,
                 make_compressor: Callable[[int, bool], Compressor]) -> None:
        self.preprocessor = preprocessor
        self.encoder = encoder
        self.make_compressor = make_compressor
        self.reset()

    def reset(self) -> None:
        """A new stream: modalities, held frame and compressor state are forgotten."""
        self.modalities: Modalities | None = None
        self.compressor: Compressor | None = None
        self.last_frames: np.ndarray | None = None
        self.last_times: StageTimes | None = None
        self.last_grid_hw: tuple[int, int] | None = None  # merged-token grid of the last chunk's frames

    def inputs(self, chunk: AVChunk) -> tuple[np.ndarray | None, np.ndarray | None]:
        """The chunk's frames [F, H, W, 3] and audio [S] for this stream's modalities."""
        if self.modalities is None:
            self.modalities = Modalities(chunk.frames is not None, chunk.audio is not None)
        frames, audio = chunk.frames, chunk.audio
        if not self.modalities.video:
            return None, audio
        if frames is None:
            if self.last_frames is None:
                raise ValueError(f"chunk {chunk.index} of {chunk.stream!r} has no frames and none came before")
            frames = np.repeat(self.last_frames[-1:], max(1, round(chunk.duration * VIDEO_FPS)), axis=0)
        self.last_frames = frames
        if not self.modalities.audio:
            return frames, None
        if audio is None:
            audio = np.zeros(round(len(frames) / VIDEO_FPS * AUDIO_RATE), dtype=np.float32)
        return frames, audio

    def process(self, chunk: AVChunk) -> CompressedChunk:
        result = encode_many([(self, chunk)])[0]
        if isinstance(result, BaseException):
            raise result
        return result

    def prepare(self, chunk: AVChunk) -> tuple[PreprocessedChunk, float]:
        """The chunk's tower inputs (this stream's modalities, a gap filled) and the seconds it took."""
        frames, audio = self.inputs(chunk)
        t0 = time.perf_counter()
        return self.preprocessor.process(chunk.index, frames, audio), time.perf_counter() - t0

    def finish(self, encoded: EncodedChunk, preprocess: float, encode: float) -> CompressedChunk:
        """The chunk compressed with this stream's carried state; `last_times` gets the three stages'
        seconds (`encode`: the tower forward the chunk was part of)."""
        t0 = time.perf_counter()
        if self.compressor is None:
            tokens_per_frame = 0 if encoded.video is None else encoded.video.shape[1]
            self.compressor = self.make_compressor(tokens_per_frame, self.modalities.audio)
        compressed = self.compressor.process(encoded)
        self.last_grid_hw = encoded.grid_hw
        self.last_times = StageTimes(preprocess, encode, time.perf_counter() - t0)
        return compressed


def encode_many(items: Sequence[tuple[ChunkEncoder, AVChunk]]) -> list[CompressedChunk | Exception]:
    """Chunks of several streams, each with its stream's `ChunkEncoder`: preprocessed one by one, encoded
    in one forward of each tower (`Encoder.process_many`; the encoders share one model), then compressed
    one by one with each stream's own carried state, in the order given. A stream must appear at most
    once (its chunks carry state from one to the next).

    Returns each chunk's compressed tokens, or the exception its own preprocessing or compression raised,
    which reaches only that chunk. When the batched tower forward fails, each chunk is encoded alone, so a
    chunk that breaks the towers fails by itself."""
    streams = [enc for enc, _ in items]
    if len(set(map(id, streams))) != len(streams):
        raise ValueError("encode_many takes at most one chunk per stream (ChunkEncoder)")
    results: list[CompressedChunk | Exception | None] = [None] * len(items)
    ready: list[tuple[int, PreprocessedChunk, float]] = []
    for i, (enc, chunk) in enumerate(items):
        try:
            ready.append((i, *enc.prepare(chunk)))
        except Exception as e:  # noqa: BLE001 - this chunk's failure, returned to its caller
            results[i] = e
    for group, encoded, seconds in _encode_together(streams[0].encoder if streams else None, ready, results):
        for (i, _, preprocess), enc_chunk in zip(group, encoded, strict=True):
            try:
                results[i] = streams[i].finish(enc_chunk, preprocess, seconds)
            except Exception as e:  # noqa: BLE001 - this chunk's failure, returned to its caller
                results[i] = e
    return results


def _encode_together(encoder: Encoder | None, ready: list[tuple[int, PreprocessedChunk, float]],
                     results: list) -> list[tuple[list, list[EncodedChunk], float]]:
    """The towers over `ready` in one forward: [(the items, their EncodedChunks, seconds)]. After a failed
    batched forward, one forward per item; an item whose own forward fails gets its exception in
    `results` instead."""
    if not ready:
        return []
    try:
        return [_towers(encoder, ready)]
    except Exception as e:  # noqa: BLE001 - find the chunk that broke it: each alone
        if len(ready) == 1:
            results[ready[0][0]] = e
            return []
    alone = []
    for item in ready:
        try:
            alone.append(_towers(encoder, [item]))
        except Exception as e:  # noqa: BLE001 - this chunk's failure, returned to its caller
            results[item[0]] = e
    return alone


def _towers(encoder: Encoder, group: list[tuple[int, PreprocessedChunk, float]]
            ) -> tuple[list, list[EncodedChunk], float]:
    """One forward of each tower over the group's chunks, and its seconds."""
    t0 = time.perf_counter()
    encoded = encoder.process_many([pre for _, pre, _ in group])
    return group, encoded, time.perf_counter() - t0
