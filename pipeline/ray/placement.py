"""Where the encoder and model actors go on the Ray cluster's GPUs, decided before any actor starts.

The default split, when the cluster has GPUs and the config leaves `resources.model.num_gpus` and
`resources.encoder.num_gpus` unset (and `model.device` is not the CPU): each model replica takes
`MODEL_SHARE` (0.75) of a GPU of its own and each encoder `ENCODER_SHARE` (0.25) of a model replica's GPU,
so `model.replicas: auto` gives one model replica per GPU with its encoder beside it. Without GPUs nothing
asks for one. A `num_gpus` the config gives (0 included) is taken as given.

Whenever model replicas ask for GPUs, one placement-group bundle per model replica holds its GPU(s) (and the
CPUs and custom resources of the actors in it): model replica i goes to bundle i, encoder j to bundle
j % models. So two model replicas never share a GPU, whatever the fractions, and each encoder lands on a
model replica's GPU instead of wherever Ray's packing puts it. A config that cannot be placed is refused at
once in one line naming what it asks and what the cluster has (`PlacementError`), instead of Ray waiting for
resources that will never come: more GPUs asked than the cluster has, more model replicas than GPUs (two
model replicas on one GPU), or more asked of one GPU than it holds.

Each actor then bounds its share of the card: `bound_gpu_memory` sets
`torch.cuda.set_per_process_memory_fraction(num_gpus)`, so a model actor's peak cannot starve the encoder
beside it. Plain functions and data, no Ray: `pipeline.ray.stream` applies the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from pipeline.config import ActorResources, ModelConfig, ResourcesConfig
from pipeline.ray.sharding import resolve_replicas

MODEL_SHARE = 0.75  # of a GPU, per model replica, by default
ENCODER_SHARE = 0.25  # of a model replica's GPU, per encoder replica, by default


class PlacementError(ValueError):
    """The actors a config asks for cannot be placed on this Ray cluster (one line)."""


@dataclass(frozen=True)
class Placement:
    """How many replicas of each kind, what each asks for, and the placement-group bundles (one per model
    replica; none when the model replicas ask for no GPU)."""

    models: int
    encoders: int
    model: ActorResources
    encoder: ActorResources
    bundles: list[dict[str, float]] = field(default_factory=list)

    def model_bundle(self, i: int) -> int | None:
        return i if self.bundles else None

    def encoder_bundle(self, j: int) -> int | None:
        return j % self.models if self.bundles else None

    def describe(self) -> str:
        """One line: what the actors ask for."""
        return (f"{self.models} model x {_gpus(self.model.num_gpus)} GPU, "
                f"{self.encoders} encoder x {_gpus(self.encoder.num_gpus)} GPU")


def _gpus(value: float | None) -> str:
    return f"{value or 0:g}"


def uses_gpus_by_default(spec: ModelConfig, cluster_gpus: float) -> bool:
    """Whether unset `num_gpus` default to the split: the cluster has a GPU and the model is not put on
    the CPU by the config."""
    return cluster_gpus >= 1 and not (spec.device or "").startswith("cpu")


def plan_placement(spec: ModelConfig, resources: ResourcesConfig, cluster: Mapping[str, float]) -> Placement:
    """The placement of the encoder and model replicas on a cluster with `cluster` resources (Ray's
    `cluster_resources()`); PlacementError when it cannot be placed."""
    gpus = float(cluster.get("GPU", 0.0))
    models = resolve_replicas(spec.replicas, gpus)
    encoders = resolve_replicas(spec.encoder_replicas, gpus, default=models)
    default = uses_gpus_by_default(spec, gpus)
    model = _with_gpus(resources.model, MODEL_SHARE if default else 0.0)
    encoder = _with_gpus(resources.encoder, ENCODER_SHARE if default else 0.0)
    plan = Placement(models, encoders, model, encoder)
    asked = models * model.num_gpus + encoders * encoder.num_gpus
    if asked > gpus + 1e-9:
        raise PlacementError(f"the actors ask for {asked:g} GPU ({plan.describe()}); the Ray cluster has "
                             f"{gpus:g}: set resources.model/encoder.num_gpus (0 runs on the CPU) or add GPUs")
    if not model.num_gpus:
        return plan
    if models > gpus:
        raise PlacementError(f"{models} model replicas would share {gpus:g} GPU (two model replicas on one GPU "
                             f"is refused: each holds its own weights and KV cache); give model.replicas at "
                             f"most {int(gpus)} or auto")
    bundles = [_bundle(model, [encoder] * sum(1 for j in range(encoders) if j % models == i))
               for i in range(models)]
    whole = sum(b["GPU"] for b in bundles)
    if whole > gpus:
        crowded = max(range(models), key=lambda i: bundles[i]["GPU"])
        raise PlacementError(f"model replica {crowded} and its encoders ask for "
                             f"{model.num_gpus + (encoders // models) * encoder.num_gpus:g} GPU of one card "
                             f"({plan.describe()}), {whole:g} GPUs in all; the Ray cluster has {gpus:g}")
    return Placement(models, encoders, model, encoder, bundles)


def _with_gpus(res: ActorResources, default: float) -> ActorResources:
    return res if res.num_gpus is not None else res.model_copy(update={"num_gpus": default})


def _bundle(model: ActorResources, encoders: list[ActorResources]) -> dict[str, float]:
    """One model replica's bundle: whole GPUs for it and its encoders' shares, their CPUs and custom resources."""
    members = [model, *encoders]
    bundle = {"GPU": float(math.ceil(sum(m.num_gpus for m in members) - 1e-9))}
    cpus = sum(m.num_cpus for m in members)
    if cpus:
        bundle["CPU"] = cpus
    for m in members:
        for name, amount in m.resources.items():
            bundle[name] = bundle.get(name, 0.0) + amount
    return bundle


def bound_gpu_memory(num_gpus: float | None, device: str | None = None) -> float | None:
    """Limit this process's CUDA allocations to its `num_gpus` share of the card (a fraction below 1);
    returns the fraction set, None when there is nothing to bound (no CUDA, no share, a whole card)."""
    if not num_gpus or num_gpus >= 1:
        return None
    import torch

    if not torch.cuda.is_available() or (device or "").startswith("cpu"):
        return None
    index = torch.device(device).index if device and device.startswith("cuda") else None
    torch.cuda.set_per_process_memory_fraction(num_gpus, index)
    return num_gpus
