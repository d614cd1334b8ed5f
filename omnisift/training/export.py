"""A trained language model and selector written as a model folder (`save_pretrained` layout).

The folder is the base model's folder with the trained tensors replaced: every file that is not weights
(config, generation config, tokenizer, processor, chat template) is copied, and every safetensors shard is
rewritten with the same keys, shapes and dtypes, so the towers (and a talker, if any) stay bit for bit the
base's. The selector goes in under `thinker.compressor.` (the OmniSIFT-7B layout), so the folder loads with
`omnisift.load_model(folder)`, `OmniSession.from_pretrained(folder)` and `omnisift infer --model folder`.

Keys: the trained tensors come keyed as in `TrainableCore` (`language_model.*`, `lm_head.*`,
`compressor.*`) and map to Qwen2.5-Omni's checkpoint keys (`thinker.model.*`, `thinker.lm_head.*`,
`thinker.compressor.*`). LoRA is merged first (`W + alpha/r * B @ A`), so the folder loads without `peft`;
the adapter itself is also written, to `adapter/`, for reference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from omnisift.checkpoint import INDEX_NAME, PREFIX, CheckpointError
from omnisift.training.trainable import LoraSettings, is_trained

_KEY_MAP = (("language_model.", "thinker.model."), ("lm_head.", "thinker.lm_head."), ("compressor.", PREFIX))
_LORA_BASE = ".base_layer."


def checkpoint_key(core_key: str) -> str:
    """`TrainableCore` key -> Qwen2.5-Omni checkpoint key (e.g. `language_model.norm.weight` ->
    `thinker.model.norm.weight`)."""
    for ours, theirs in _KEY_MAP:
        if core_key.startswith(ours):
            return theirs + core_key[len(ours):]
    raise CheckpointError(f"{core_key}: not a key of the language model, LM head or selector")


def merge_lora(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A `TrainableCore` state with LoRA layers -> the plain layers' state: `W + scaling * B @ A` (in
    float32, then the base weight's dtype); the adapters' own keys are dropped."""
    merged = {}
    for key, value in state.items():
        if ".lora_" in key:
            continue
        if _LORA_BASE not in key:
            merged[key] = value
            continue
        prefix, _, name = key.partition(_LORA_BASE)  # "...q_proj", "weight" | "bias"
        if name == "weight":
            a = state[f"{prefix}.lora_A.default.weight"].float()  # [r, in]
            b = state[f"{prefix}.lora_B.default.weight"].float()  # [out, r]
            value = (value.float() + scaling * (b @ a)).to(value.dtype)
        merged[f"{prefix}.{name}"] = value
    return merged


def resolve_folder(model: str | Path, local_files_only: bool = False) -> Path:
    """A local folder for a model: the path itself, or the hub cache's snapshot of a hub id."""
    if Path(model).is_dir():
        return Path(model)
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(str(model), local_files_only=local_files_only))


def export_pretrained(core_state: dict[str, torch.Tensor], mode: str, base: str | Path, out: str | Path, *,
                      lora: LoraSettings | None = None, local_files_only: bool = False) -> Path:
    """Write the model folder `out`: `base`'s files with the tensors `mode` trained replaced (see module)."""
    base, out = resolve_folder(base, local_files_only), Path(out)
    if mode == "lora":
        if lora is None:
            raise ValueError("export of a LoRA run needs its LoraSettings (for the merge scale)")
        _write_adapter({k: v for k, v in core_state.items() if ".lora_" in k}, lora, out / "adapter")
        trained_keys = {k for k in core_state if is_trained(k, "lora")}
        targets = {k.partition(".lora_")[0] for k in trained_keys if ".lora_" in k}
        merged = merge_lora(core_state, lora.scaling)
        trained = {k: v for k, v in merged.items() if k.startswith("compressor.") or k.rpartition(".")[0] in targets}
    else:
        trained = {k: v for k, v in core_state.items() if is_trained(k, mode)}
    new = {checkpoint_key(k): v.detach().cpu().contiguous() for k, v in trained.items()}
    out.mkdir(parents=True, exist_ok=True)
    for item in base.iterdir():
        if item.is_file() and not item.name.endswith(".safetensors") and item.name != INDEX_NAME:
            shutil.copy2(item, out / item.name)
    _rewrite_weights(base, out, new)
    return out


def _shards(base: Path) -> dict[str, list[str]]:
    """File name -> its keys, for a single-file or an indexed (sharded) checkpoint."""
    index = base / INDEX_NAME
    if index.exists():
        files: dict[str, list[str]] = {}
        for key, name in json.loads(index.read_text())["weight_map"].items():
            files.setdefault(name, []).append(key)
        return files
    from safetensors import safe_open

    single = base / "model.safetensors"
    if not single.exists():
        raise CheckpointError(f"{base}: no model.safetensors and no {INDEX_NAME}")
    with safe_open(str(single), framework="pt") as f:
        return {single.name: list(f.keys())}


def _rewrite_weights(base: Path, out: Path, new: dict[str, torch.Tensor]) -> None:
    """Every shard of `base` rewritten into `out` with `new`'s tensors (cast to the base tensor's dtype);
    keys `base` lacks (a selector new to this model) go into the shard that holds the LM head."""
    shards = _shards(base)
    owner = {key: name for name, keys in shards.items() for key in keys}
    extra = sorted(k for k in new if k not in owner)
    missing = [k for k in extra if not k.startswith(PREFIX)]
    if missing:
        raise CheckpointError(f"{base}: checkpoint has no tensor {missing[0]} to replace ({len(missing)} missing)")
    home = owner.get("thinker.lm_head.weight", sorted(shards)[-1])
    for name in sorted(shards):
        tensors = load_file(str(base / name))
        for key in shards[name]:
            if key in new:
                tensors[key] = new[key].to(tensors[key].dtype)
        if name == home:
            tensors.update({k: new[k] for k in extra})
        save_file(tensors, str(out / name), metadata={"format": "pt"})
    index = base / INDEX_NAME
    if index.exists():
        data = json.loads(index.read_text())
        data["weight_map"].update({k: home for k in extra})
        (out / INDEX_NAME).write_text(json.dumps(data, indent=2))


def _write_adapter(lora_state: dict[str, torch.Tensor], settings: LoraSettings, folder: Path) -> None:
    """The LoRA matrices (keys relative to `thinker.model.language_model`) and their `peft` config."""
    from peft import LoraConfig

    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k.removeprefix("language_model."): v.detach().cpu().contiguous() for k, v in lora_state.items()}
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
               target_modules=list(settings.targets), bias="none").save_pretrained(str(folder))
