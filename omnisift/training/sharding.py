"""FSDP for the release recipe: the language model's weights, gradients and optimizer state sharded across
workers (PyTorch FSDP2, `fully_shard`; NCCL on GPUs, gloo on CPUs).

Each decoder layer is one unit (gathered for its own forward and backward, freed after); the
`TrainableCore` is the root unit and holds the rest (embeddings, final norm, LM head, selector), so every
use of a sharded weight happens inside the root's forward. The towers are not in the core: they stay
whole, frozen and unused on every worker (training reads their cached outputs). With `precision="bf16"`
the gathered weights are cast to bf16 for compute and gradients are reduced in float32 (the sharded
master weights and the optimizer stay float32).
"""

from __future__ import annotations

import torch

from omnisift.training.trainable import TrainableCore


def shard_core(core: TrainableCore, precision: str = "auto") -> TrainableCore:
    """Apply `fully_shard` to every decoder layer, then to the core (in place; returns the core).
    Needs an initialised process group."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    bf16 = precision == "bf16" or (precision == "auto" and torch.cuda.is_available())
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if bf16 \
        else MixedPrecisionPolicy()
    for layer in core.language_model.layers:
        fully_shard(layer, mp_policy=policy)
    fully_shard(core, mp_policy=policy)
    return core


def is_sharded(module: torch.nn.Module) -> bool:
    """Whether any of the module's parameters is a sharded DTensor."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in module.parameters())


def full_state(core: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The core's whole state dict on the CPU: gathered from every worker when sharded (a collective: every
    rank must call it; rank 0 gets the tensors, the others an empty dict), else its own state dict."""
    if not is_sharded(core):
        return {k: v.detach().cpu() for k, v in core.state_dict().items()}
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(core, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
