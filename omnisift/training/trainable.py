"""What trains: the selector alone, or the language model with it (full fine-tune, or LoRA through `peft`).

The towers are always frozen: training reads their cached outputs, so they are not even run. `TrainableCore`
gathers the modules the compressed forward uses (language model, LM head, selector) into one module whose
`forward` is that compressed forward, so a sharding wrapper (FSDP) has one root whose forward covers every
use of their weights. Its state-dict keys (`language_model.*`, `lm_head.*`, `compressor.*`) are what the
export maps to the checkpoint's keys (`omnisift.training.export`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from omnisift.ratios import Ratios
from omnisift.training.forward import ForwardResult, compressed_forward
from omnisift.training.layout import Batch

TRAINABLE = ("selector", "full", "lora")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on the language model's linear layers. These values are this project's choice (the OmniSIFT
    release fine-tunes the whole language model; it has no LoRA setting to copy)."""

    rank: int = 16
    alpha: float = 32.0
    dropout: float = 0.05
    targets: tuple[str, ...] = field(
        default=("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"))

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


def apply_lora(thinker, settings: LoraSettings) -> None:
    """Insert LoRA adapters (named `default`) into `thinker.model.language_model` in place, with `peft`."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=settings.rank, lora_alpha=settings.alpha, lora_dropout=settings.dropout,
                        target_modules=list(settings.targets), bias="none")
    inject_adapter_in_model(config, thinker.model.language_model)


def set_trainable(thinker, mode: str) -> list[nn.Parameter]:
    """Freeze everything, then make `mode`'s parameters trainable and return them.

    selector: the VGAS selector. full: the selector, the language model (embeddings included) and the LM
    head. lora: the selector and the LoRA matrices (`apply_lora` first)."""
    if mode not in TRAINABLE:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE)}, got {mode!r}")
    thinker.requires_grad_(False)
    thinker.compressor.requires_grad_(True)
    if mode == "full":
        thinker.model.language_model.requires_grad_(True)
        thinker.lm_head.requires_grad_(True)
    elif mode == "lora":
        lora = [p for n, p in thinker.model.language_model.named_parameters() if ".lora_" in n]
        if not lora:
            raise ValueError("trainable 'lora': the language model has no LoRA adapters (apply_lora first)")
        for p in lora:
            p.requires_grad_(True)
    return [p for p in thinker.parameters() if p.requires_grad]


class TrainableCore(nn.Module):
    """The language model, LM head and selector of a thinker (the same module objects, not copies), with
    the compressed forward as `forward`. The thinker itself is held outside the module tree."""

    def __init__(self, thinker) -> None:
        super().__init__()
        self.language_model = thinker.model.language_model
        self.lm_head = thinker.lm_head
        self.compressor = thinker.compressor
        self._thinker = (thinker,)  # a tuple: not registered, so the towers stay outside this module

    @property
    def thinker(self):
        return self._thinker[0]

    def forward(self, batch: Batch, ratios: Ratios | None, gate: str = "embedding",
                selector: nn.Module | None = None) -> ForwardResult:
        return compressed_forward(self.thinker, batch, ratios, selector, gate)

    def trained_state(self, mode: str) -> dict[str, torch.Tensor]:
        """The tensors `mode` trains, keyed as in this module's state dict (local tensors: use
        `omnisift.training.sharding.full_state` under FSDP)."""
        state = self.state_dict()
        return {k: v for k, v in state.items() if is_trained(k, mode)}


def is_trained(key: str, mode: str) -> bool:
    """Whether a `TrainableCore` state-dict key is trained in `mode`."""
    if key.startswith("compressor."):
        return True
    if mode == "full":
        return True
    return mode == "lora" and ".lora_" in key
