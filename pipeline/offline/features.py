"""Feature cache: the frozen towers run once per media file; training epochs read their outputs.

Each file is decoded by `streams` (the file source, as fast as it decodes) and cut into the same
2-second `AVChunk`s the live path sees; every chunk goes through `operators`' `Preprocessor` and
`Encoder` (a stream missing one modality in a chunk is filled exactly as `ChunkEncoder` fills it).
The per-chunk vision and audio tower outputs of a file are stored as `<key>/video` [G, n_p, D] and
`<key>/audio` [A, D] in sharded safetensors files, with the chunk structure in `index.json`.

Resumable: a shard is written (to a temporary name, then renamed) every `shard_size` files and
`index.json` is replaced atomically after it, so an interruption loses at most the files of the
shard being filled; a rerun skips every file the index holds. Files that cannot be decoded are
recorded as failed (with the reason), skipped and counted, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
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
from streams.errors import StreamError

log = logging.getLogger(__name__)
INDEX = "index.json"


def media_key(path: str | Path) -> str:
    """Cache key of a media file: a hash of its resolved path."""
    return hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20]


def encode_file(path: str | Path, preprocessor: Preprocessor, encoder: Encoder) -> ClipFeatures:
    """Decode a file chunk by chunk and run the towers on every chunk; raises StreamError/ValueError."""
    filler = ChunkEncoder(preprocessor, encoder, lambda *_: None)  # only its gap filling is used
    videos, audios, steps, n_audio = [], [], [], []
    grid_hw = None
    for chunk in read_chunks({"type": "file", "path": str(path), "realtime": False}, name=Path(path).stem):
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

    def __init__(self, folder: str | Path, shard_size: int = 32) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.shard_size = shard_size
        index = self.folder / INDEX
        data = json.loads(index.read_text()) if index.exists() else {}
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
                reason = " ".join(str(err).split()) or type(err).__name__
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
        tmp.write_text(json.dumps({"entries": self.entries, "failed": self.failed, "shards": self.n_shards}))
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
                   *, progress: bool = False) -> tuple[list[Sample], CacheSummary]:
    """Make sure every sample's media is cached; returns the samples whose media could be encoded."""
    samples = list(samples)
    summary = cache.build([s.media for s in samples], lambda p: encode_file(p, preprocessor, encoder),
                          progress=progress)
    return [s for s in samples if s.media in cache], summary


def training_examples(samples: Iterable[Sample], cache: FeatureCache, template: PromptTemplate, tokenizer,
                      *, with_answer: bool = True) -> list[Example]:
    """Laid-out examples (question = the sample's prompt, answer = its answer text) from cached features."""
    ids = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"]  # noqa: E731
    return [build_example(template, cache.get(s.media), ids(s.prompt()), ids(s.answer) if with_answer else None)
            for s in samples]


def dataset_with_features(dataset_cfg, cache_dir: str | Path, model, *, min_pixels: int | None = None,
                          max_pixels: int | None = None, progress: bool = True):
    """Read a dataset config's samples and cache their features; returns (samples, cache, summary line)."""
    from omnisift.data import load_dataset

    samples, data_summary = load_dataset(dataset_cfg.path, dataset_cfg.layout, dataset_cfg.base,
                                         limit=dataset_cfg.limit)
    cache = FeatureCache(cache_dir)
    pre = Preprocessor(model.processor.video_processor, model.device, min_pixels, max_pixels)
    samples, cache_summary = cache_features(samples, cache, pre, Encoder(model.thinker), progress=progress)
    line = f"dataset: {data_summary.line()}; {cache_summary.line()}"
    return samples, cache, line, len(cache_summary.failed) + data_summary.n_skipped
