"""Loading one part of a Qwen2.5-Omni thinker: the towers for an encoder, the language model for the model.

`from_pretrained` materialises the whole thinker before anything can be dropped: for the 7B that is the
language model's 15 GB on the encoder's host just to keep its 2.6 GB of towers. Here the thinker is built
on the meta device (no memory), only the wanted submodules are made real (without random init), and only
their tensors are read from the safetensors shards (memory-mapped, one tensor at a time). Checkpoint keys
are renamed with `transformers`' own conversion rules for the thinker, so the released layouts
(`thinker.model.*` and `thinker.model.language_model.*`) both load.

    towers    model.audio_tower, model.visual, compressor (the VGAS selector)
    language  model.language_model (embeddings, layers, norm), lm_head, compressor
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from omnisift.checkpoint import CheckpointError
from omnisift.device import cast_module
from omnisift.selector import VisionGuidedAudioSelector

PARTS: dict[str, tuple[str, ...]] = {
    "towers": ("model.audio_tower", "model.visual", "compressor"),
    "language": ("model.language_model", "lm_head", "compressor"),
}
_ALL = ("model.audio_tower", "model.visual", "model.language_model", "lm_head", "compressor")


def build_submodule(name: str, config) -> nn.Module:
    """A fresh `name` submodule of the thinker for `config` (a thinker config), weights uninitialised."""
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoder,
        Qwen2_5OmniThinkerTextModel,
        Qwen2_5OmniVisionEncoder,
    )

    text = config.text_config
    builders = {
        "model.audio_tower": lambda: Qwen2_5OmniAudioEncoder._from_config(config.audio_config),
        "model.visual": lambda: Qwen2_5OmniVisionEncoder._from_config(config.vision_config),
        "model.language_model": lambda: Qwen2_5OmniThinkerTextModel._from_config(text),
        "lm_head": lambda: nn.Linear(text.hidden_size, text.vocab_size, bias=False),
        "compressor": lambda: VisionGuidedAudioSelector(text.hidden_size),
    }
    return builders[name]()


def checkpoint_files(folder: Path) -> list[Path]:
    """The safetensors files of a model folder (the shards its index names, or every file)."""
    index = folder / "model.safetensors.index.json"
    if index.exists():
        return [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{folder}: no .safetensors weights")
    return files


def thinker_key(key: str) -> str | None:
    """The thinker module name of a checkpoint key (`transformers`' renames), None if not the thinker's."""
    from transformers.conversion_mapping import get_checkpoint_conversion_mapping

    if not key.startswith("thinker."):
        return None
    for rule in get_checkpoint_conversion_mapping("Qwen2_5OmniThinkerForConditionalGeneration"):
        for source, target in zip(rule.source_patterns, rule.target_patterns, strict=True):
            key = re.sub(source, target, key)
    return key


def part_tensors(folder: Path, prefixes: tuple[str, ...], device: torch.device,
                 dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """(thinker name, tensor) of every checkpoint tensor under `prefixes`, read one at a time."""
    for file in checkpoint_files(folder):
        with safe_open(str(file), framework="pt", device=str(device)) as f:
            for key in f.keys():
                name = thinker_key(key)
                if name is not None and name.startswith(tuple(p + "." for p in prefixes)):
                    tensor = f.get_tensor(key)
                    yield name, tensor.to(dtype) if tensor.is_floating_point() else tensor


def load_part(folder: str | Path, config, part: str, device: torch.device, dtype: torch.dtype,
              thinker_cls: type) -> tuple[nn.Module, bool]:
    """A `thinker_cls` whose `part` submodules are real and loaded from `folder` and whose other parts
    are None; and whether the checkpoint held a selector. `config` is the thinker config."""
    from transformers.initialization import no_init_weights

    keep = PARTS[part]
    with torch.device("meta"):
        thinker = thinker_cls(config)
    for name in _ALL:
        parent, _, attr = name.rpartition(".")
        owner = thinker.get_submodule(parent) if parent else thinker
        if name not in keep:
            setattr(owner, attr, None)
            continue
        with torch.device(device), no_init_weights():
            setattr(owner, attr, cast_module(build_submodule(name, config), dtype=dtype))
    # weights and persistent buffers only: computed buffers (rotary frequencies) keep what they were built
    # with, as in `from_pretrained`, even when an old checkpoint carries a copy of them
    targets = thinker.state_dict(keep_vars=True)
    loaded: set[str] = set()
    with torch.no_grad():
        for name, tensor in part_tensors(Path(folder), keep, device, dtype):
            if name in targets:  # one tensor in memory at a time besides the model
                targets[name].copy_(tensor)
                loaded.add(name)
    has_selector = any(k.startswith("compressor.") for k in loaded)
    expected = {k for k in thinker.state_dict() if has_selector or not k.startswith("compressor.")}
    missing = sorted(expected - loaded)
    if missing:
        raise CheckpointError(f"{folder}: the checkpoint lacks {len(missing)} weights of the {part} part "
                              f"(first: {missing[0]})")
    still_meta = [n for n, t in [*thinker.named_parameters(), *thinker.named_buffers()] if t.is_meta]
    if still_meta:
        raise RuntimeError(f"loading the {part} part left {still_meta[0]} unbuilt")
    return thinker, has_selector
