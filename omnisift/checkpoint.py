"""Selector checkpoints: safetensors only, in the public OmniSIFT-7B key layout.

A checkpoint may be a single `.safetensors` file, a folder holding one, or a sharded checkpoint with a
`model.safetensors.index.json`. Keys may carry the `thinker.compressor.` prefix (as inside the
OmniSIFT-7B model checkpoint) or none (a standalone selector file). Nothing is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from omnisift.selector import VisionGuidedAudioSelector

PREFIX = "thinker.compressor."
_ALT_PREFIXES = (PREFIX, "compressor.", "model.compressor.")
INDEX_NAME = "model.safetensors.index.json"


class CheckpointError(ValueError):
    """A selector checkpoint is missing, malformed, or does not match the selector's layout."""


def _strip(key: str) -> str | None:
    """The selector-relative name of a checkpoint key, or None if the key is not the selector's."""
    for prefix in _ALT_PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key if "." in key and key.split(".")[0] in _SUBMODULES else None


_SUBMODULES = {"v_proj", "a_proj", "v_norm", "a_norm", "post_attn_norm", "cross_attn", "score_head"}


def _files(path: Path) -> list[Path]:
    """The safetensors files that may hold selector weights."""
    if path.is_file():
        if path.suffix != ".safetensors":
            raise CheckpointError(f"{path}: not a .safetensors file (selector checkpoints are safetensors only)")
        return [path]
    if not path.is_dir():
        raise CheckpointError(f"{path}: no such selector checkpoint")
    index = path / INDEX_NAME
    if index.exists():
        weight_map = json.loads(index.read_text())["weight_map"]
        names = sorted({f for k, f in weight_map.items() if _strip(k) is not None})
        return [path / name for name in names]
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{path}: folder holds no .safetensors file")
    return files


def read_selector_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Selector weights from a checkpoint, keyed without prefix."""
    state: dict[str, torch.Tensor] = {}
    for file in _files(Path(path)):
        with safe_open(str(file), framework="pt") as f:
            for key in f.keys():
                name = _strip(key)
                if name is not None:
                    state[name] = f.get_tensor(key)
    if not state:
        raise CheckpointError(f"{path}: no selector weights found (expected keys under '{PREFIX}')")
    return state


def selector_from_state(state: dict[str, torch.Tensor], source: str = "state dict") -> VisionGuidedAudioSelector:
    """Build a selector whose `d_model` and hidden width are read from the weights, and load them."""
    if "v_proj.weight" not in state:
        raise CheckpointError(f"{source}: missing selector key(s): v_proj.weight")
    shape = tuple(state["v_proj.weight"].shape)
    if len(shape) != 2 or shape[0] % 8:  # [hidden, d_model], hidden split over 8 heads
        raise CheckpointError(f"{source}: mis-shaped selector weights: v_proj.weight {shape} is not [8k, d_model]")
    hidden, d_model = shape
    selector = VisionGuidedAudioSelector(d_model=d_model, hidden_dim=hidden)
    expected = selector.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: selector keys do not match; missing: {missing or 'none'}; unexpected: {unexpected or 'none'}"
        )
    misshaped = [f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}" for k, v in expected.items()
                 if state[k].shape != v.shape]
    if misshaped:
        raise CheckpointError(f"{source}: mis-shaped selector weights: {'; '.join(misshaped)}")
    selector.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    return selector


def load_selector(path: str | Path) -> VisionGuidedAudioSelector:
    """Load a VGAS selector from a safetensors file, folder or sharded checkpoint."""
    return selector_from_state(read_selector_state(path), source=str(path))


def save_selector(selector: VisionGuidedAudioSelector, path: str | Path, *, prefix: str = PREFIX) -> Path:
    """Write the selector as one safetensors file under the official key names; returns the file."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / "selector.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {prefix + k: v.detach().contiguous().cpu() for k, v in selector.state_dict().items()}
    save_file(tensors, str(path), metadata={"format": "pt", "d_model": str(selector.d_model)})
    return path
