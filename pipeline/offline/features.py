"""Feature cache: the frozen towers run once per media file; training epochs read their outputs.

Each file is decoded by `streams` (the file source, as fast as it decodes) and cut into the same
2-second `AVChunk`s the live path sees; every chunk goes through `operators`' `Preprocessor` and
`Encoder` (a stream missing one modality in a chunk is filled exactly as `ChunkEncoder` fills it).
The per-chunk vision and audio tower outputs of a file are stored as `<key>/video` [G, n_p, D] and
`<key>/audio` [A, D] in sharded safetensors files, with the chunk structure in `index.json`.

A frames cap (`max_frames`, the video processor's in Qwen2.5-Omni) applies to whole chunks: media longer
than `max_frames / 4` chunks keep `max_frames // 4` chunks spread evenly over it (the chunk indices
`floor(i * n / k)`, the rule transformers' `sample_frames` applies to single frames), each with its own
audio. Qwen's reference spreads single frames and keeps the whole audio track instead; the chunk is the
unit of the streaming path, so it is the unit here.

The encoding settings (pixel bounds, frames cap) are recorded in `index.json`; a cache built with other
settings is refused, since its features would not be what the config asks for.

Resumable: a shard is written (to a temporary name, then renamed) every `shard_size` files and
`index.json` is replaced atomically after it, so an interruption loses at most the files of the
shard being filled; a rerun skips every file the index holds. Files that cannot be decoded are
recorded as failed (with the reason), skipped and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnisift.data import Sample
from omnisift.training import ClipFeatures, Example, PromptTemplate, build_example
from operators import Encoder, Preprocessor
from operators.chunk_encoder import ChunkEncoder
from streams import read_chunks
from streams.chunk import CHUNK_SECONDS, FRAMES_PER_CHUNK
from streams.errors import StreamError, one_line

log = logging.getLogger(__name__)
INDEX = "index.json"


def media_key(path: str | Path) -> str:
    """Cache key of a media file: a hash of its resolved path."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20]


def spread_chunks(n_chunks: int, max_frames: int | None) -> set[int] | None:
    """Indices of the chunks kept under a frames cap (None: all of them)."""
    if max_frames is None or n_chunks * FRAMES_PER_CHUNK <= max_frames:
        return None
    k = max(1, max_frames // FRAMES_PER_CHUNK)
    return {i * n_chunks // k for i in range(k)}


def chunk_count(path: str | Path) -> int:
    """Chunks in a media file: from the container's duration, else by decoding it once. (Decoding may
    add a tail chunk of a few ms of codec padding past the duration; a frames cap never selects it.)"""
    import av

    with av.open(str(path)) as container:
        seconds = None if container.duration is None else container.duration / av.time_base
    if seconds:
        return max(1, math.ceil(seconds / CHUNK_SECONDS - 1e-6))
    return sum(1 for _ in read_chunks({"type": "file", "path": str(path), "realtime": False}))


def encode_file(path: str | Path, preprocessor: Preprocessor, encoder: Encoder,
                max_frames: int | None = None) -> ClipFeatures:
    """Decode a file chunk by chunk and run the towers on every chunk (or, under `max_frames`, on the chunks
    `spread_chunks` keeps); raises StreamError/ValueError."""
    filler = ChunkEncoder(preprocessor, encoder, lambda *_: None)  # only its gap filling is used
    videos, audios, steps, n_audio = [], [], [], []
    grid_hw = None
    keep = None if max_frames is None else spread_chunks(chunk_count(path), max_frames)
    for chunk in read_chunks({"type": "file", "path": str(path), "realtime": False}, name=Path(path).stem):
        if keep is not None and chunk.index not in keep:
            continue
        frames, audio = filler.inputs(chunk)
        if frames is None:
            raise ValueError(f"{Path(path).name}: no video stream (a video file is needed)")
        encoded = encoder.process(preprocessor.process(chunk.index, frames, audio))
        videos.append(encoded.video.cpu())
        grid_hw = encoded.grid_hw
        steps.append(encoded.video.shape[0])
        if encoded.audio is not None:
            audios.append(encoded.audio.cpu())
        n_audio.append(0 if encoded.audio is None else encoded.audio.shape[0])
    if not videos:
        raise ValueError(f"{Path(path).name}: no decodable audio or video")
    return ClipFeatures(torch.cat(videos), torch.cat(audios) if audios else None, steps, n_audio, grid_hw)


@dataclass
class CacheSummary:
    """What one `build` did."""

    encoded: int = 0
    reused: int = 0
    failed: dict[str, str] = field(default_factory=dict)

    def line(self) -> str:
        return f"feature cache: {self.encoded} encoded, {self.reused} reused, {len(self.failed)} failed"


class FeatureCache:
    """Sharded safetensors of per-chunk tower outputs, keyed by media file."""

    def __init__(self, folder: str | Path, shard_size: int = 32, settings: dict | None = None) -> None:
        """`settings`: how the features are encoded (pixel bounds, frames cap); a cache recorded with other
        settings raises ValueError (a cache from before settings were recorded is taken as it is)."""
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        index = self.folder / INDEX
        data = json.loads(index.read_text()) if index.exists() else {}
        recorded = data.get("settings")
        if settings is not None and recorded is not None and recorded != settings:
            raise ValueError(f"{self.folder}: feature cache built with {recorded}, not {settings}; "
                             "use another cache_dir")
        self.settings = recorded if settings is None else settings
        self.entries: dict[str, dict] = data.get("entries", {})
        self.failed: dict[str, str] = data.get("failed", {})
        self.n_shards: int = data.get("shards", 0)
        self._pending: dict[str, torch.Tensor] = {}
        self._pending_entries: dict[str, dict] = {}

    def __contains__(self, media: str | Path) -> bool:
        return media_key(media) in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def build(self, media: Iterable[str | Path], encode: Callable[[Path], ClipFeatures], *,
              progress: bool = False) -> CacheSummary:
        """Encode every file not in the cache yet; failures are recorded, skipped and counted."""
        from tqdm import tqdm

        summary = CacheSummary()
        unique = list(dict.fromkeys(str(m) for m in media))
        for path in tqdm(unique, desc="feature cache", unit="file", disable=not progress):
            key = media_key(path)
            if key in self.entries or key in self._pending_entries:
                summary.reused += 1
                continue
            if key in self.failed:
                summary.failed[path] = self.failed[key]
                continue
            try:
                features = encode(Path(path))
            except (StreamError, ValueError, OSError) as err:
                reason = one_line(err)
                log.warning("feature cache: skipping %s: %s", path, reason)
                self.failed[key] = reason
                summary.failed[path] = reason
                continue
            self._add(key, path, features)
            summary.encoded += 1
            if len(self._pending_entries) >= self.shard_size:
                self.flush()
        self.flush()
        return summary

    def _add(self, key: str, path: str, f: ClipFeatures) -> None:
        self._pending[f"{key}/video"] = f.video.contiguous()
        if f.audio is not None:
            self._pending[f"{key}/audio"] = f.audio.contiguous()
        self._pending_entries[key] = {"path": path, "chunk_steps": f.chunk_steps, "chunk_audio": f.chunk_audio,
                                      "grid_hw": list(f.grid_hw)}

    def flush(self) -> None:
        """Write the pending files as one shard, then the index (both atomically)."""
        if self._pending_entries:
            name = f"shard-{self.n_shards:05d}.safetensors"
            tmp = self.folder / (name + ".tmp")
            save_file(self._pending, str(tmp))
            os.replace(tmp, self.folder / name)
            for entry in self._pending_entries.values():
                entry["shard"] = name
            self.entries.update(self._pending_entries)
            self.n_shards += 1
            self._pending, self._pending_entries = {}, {}
        tmp = self.folder / (INDEX + ".tmp")
        tmp.write_text(json.dumps({"entries": self.entries, "failed": self.failed, "shards": self.n_shards,
                                   "settings": self.settings}))
        os.replace(tmp, self.folder / INDEX)

    def get(self, media: str | Path) -> ClipFeatures:
        """The cached features of a file (KeyError if it is not cached)."""
        key = media_key(media)
        entry = self.entries[key]
        with safe_open(str(self.folder / entry["shard"]), framework="pt") as f:
            video = f.get_tensor(f"{key}/video")
            audio = f.get_tensor(f"{key}/audio") if f"{key}/audio" in f.keys() else None
        return ClipFeatures(video, audio, entry["chunk_steps"], entry["chunk_audio"], tuple(entry["grid_hw"]))


def cache_features(samples: Iterable[Sample], cache: FeatureCache, preprocessor: Preprocessor, encoder: Encoder,
                   *, progress: bool = False, max_frames: int | None = None) -> tuple[list[Sample], CacheSummary]:
    """Make sure every sample's media is cached; returns the samples whose media could be encoded."""
    samples = list(samples)
    summary = cache.build([s.media for s in samples],
                          lambda p: encode_file(p, preprocessor, encoder, max_frames), progress=progress)
    return [s for s in samples if s.media in cache], summary


def training_examples(samples: Iterable[Sample], cache: FeatureCache, template: PromptTemplate, tokenizer,
                      *, with_answer: bool = True) -> list[Example]:
    """Laid-out examples (question = the sample's prompt, answer = its answer text) from cached features."""
    ids = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    return [build_example(template, cache.get(s.media), ids(s.prompt()), ids(s.answer) if with_answer else None)
            for s in samples]


def encoding_settings(min_pixels: int | None, max_pixels: int | None, max_frames: int | None) -> dict:
    """What a feature cache records about how its features were made."""
    return {"min_pixels": min_pixels, "max_pixels": max_pixels, "max_frames": max_frames}


def dataset_with_features(dataset_cfg, cache_dir: str | Path, model, *, min_pixels: int | None = None,
                          max_pixels: int | None = None, max_frames: int | None = None, progress: bool = True):
    """Read a dataset config's samples and cache their features; returns (samples, cache, summary line)."""
    from omnisift.data import load_dataset

    samples, data_summary = load_dataset(dataset_cfg.path, dataset_cfg.layout, dataset_cfg.base,
                                         limit=dataset_cfg.limit)
    cache = FeatureCache(cache_dir, settings=encoding_settings(min_pixels, max_pixels, max_frames))
    pre = Preprocessor(model.processor.video_processor, model.device, min_pixels, max_pixels)
    samples, cache_summary = cache_features(samples, cache, pre, Encoder(model.thinker), progress=progress,
                                            max_frames=max_frames)
    line = f"dataset: {data_summary.line()}; {cache_summary.line()}"
    return samples, cache, line, len(cache_summary.failed) + data_summary.n_skipped
