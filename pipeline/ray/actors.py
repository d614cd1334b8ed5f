"""Ray actors: the plain worker classes (`source_worker`, `encoder_worker`, `model_worker`), made remote
here with options from the config.

The source actor blocks in `next_chunk` (a thread of its own); encoder and model actors are threaded
(`max_concurrency`) so `where()`, questions and `cache_tokens()` answer while a chunk is being processed.
The encoder runs one call at a time (`max_concurrency=1`), which keeps each stream's chunks in order, unless
`model.encoder_batch.max_batch` > 1: then twice that many calls wait together in its batcher, which keeps
each stream's chunks in order among those waiting (`EncoderWorker`).
Actors are owned by the driver: when it exits, they go with it. `max_restarts` from the config restarts a
dead actor by running its constructor again; the driver's stream loops retry and carry on.
GPUs: `pipeline.ray.placement` decides what each encoder and model replica asks for and which bundle of
the placement group `reserve` makes it goes to (model replica i with its encoders on GPU i).
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from pipeline.config import ActorResources, ModelConfig, PipelineConfig, StreamConfig
from pipeline.ray.encoder_worker import EncoderWorker
from pipeline.ray.model_worker import ModelWorker
from pipeline.ray.process import actor_env
from pipeline.ray.source_worker import SourceWorker


def actor_options(res: ActorResources, **extra: Any) -> dict[str, Any]:
    """`ray.remote` options for one actor from its resources entry."""
    opts: dict[str, Any] = {"num_cpus": res.num_cpus, "max_restarts": res.max_restarts}
    if res.num_gpus:
        opts["num_gpus"] = res.num_gpus
    if res.resources:
        opts["resources"] = dict(res.resources)
    opts["runtime_env"] = {"env_vars": actor_env()}  # glibc's arenas: see pipeline.ray.process
    opts.update(extra)
    return opts


def reserve(bundles: list[dict[str, float]], *, spread: bool, timeout: float):
    """A placement group of `bundles` (None when there are none), ready; TimeoutError after `timeout`
    seconds (a node fits no bundle), the group removed."""
    if not bundles:
        return None
    from ray.util.placement_group import placement_group, remove_placement_group

    group = placement_group(bundles, strategy="SPREAD" if spread else "PACK")
    try:
        ray.get(group.ready(), timeout=timeout)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(group)
        raise TimeoutError(f"no node had room for the GPU bundles {bundles} within {timeout:g}s") from None
    except BaseException:
        remove_placement_group(group)
        raise
    return group


def release(group) -> None:
    """Give a placement group's resources back (nothing without one, or without a running Ray)."""
    if group is not None and ray.is_initialized():
        from ray.util.placement_group import remove_placement_group

        try:
            remove_placement_group(group)
        except Exception:  # noqa: BLE001 - already gone with its job
            pass


def start_source(spec: StreamConfig, config: PipelineConfig):
    bp = config.backpressure
    cls = ray.remote(**actor_options(config.resources.source, max_concurrency=2))(SourceWorker)
    return cls.remote(spec.name, spec.source, queue_size=bp.queue_size, drop_policy=bp.drop_policy)


def _placement(spread: bool, group=None, bundle: int | None = None) -> dict[str, Any]:
    """In bundle `bundle` of placement group `group` when given; else replicas of one kind go to different
    nodes where they can ("SPREAD"; best effort, so a one-node cluster still takes them all) and a single
    actor goes where Ray's default policy puts it."""
    if group is not None and bundle is not None:
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        return {"scheduling_strategy": PlacementGroupSchedulingStrategy(group, placement_group_bundle_index=bundle)}
    return {"scheduling_strategy": "SPREAD"} if spread else {}


def start_encoder(config: PipelineConfig, model_spec: ModelConfig, *, spread: bool = False,
                  resources: ActorResources | None = None, group=None, bundle: int | None = None):
    """An encoder replica with `resources` (default: the config's entry) in `bundle` of `group` if given."""
    res = resources or config.resources.encoder
    max_batch = model_spec.encoder_batch.max_batch
    threads = 1 if max_batch == 1 else 2 * max_batch  # a batch running and the next one gathering
    cls = ray.remote(**actor_options(res, max_concurrency=threads, **_placement(spread, group, bundle)))(EncoderWorker)
    # every chunk a stream can send again (see EncoderWorker): in the queue, held by the pump, the one sent
    return cls.remote(model_spec, num_cpus=res.num_cpus, num_gpus=res.num_gpus,
                      remember=config.backpressure.max_in_flight + 2)


def start_model(config: PipelineConfig, model_spec: ModelConfig, *, spread: bool = False,
                resources: ActorResources | None = None, group=None, bundle: int | None = None):
    """A model replica with `resources` (default: the config's entry) in `bundle` of `group` if given."""
    res = resources or config.resources.model
    cls = ray.remote(**actor_options(res, max_concurrency=8, **_placement(spread, group, bundle)))(ModelWorker)
    return cls.remote(model_spec, num_cpus=res.num_cpus, num_gpus=res.num_gpus)


def kill(actor) -> None:
    """End an actor for good (no restart). Without a running Ray there is no actor to end (and `ray.kill`
    would start a local Ray instance to find out)."""
    if actor is not None and ray.is_initialized():
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass


async def close_source(source, timeout: float = 5.0) -> dict | None:  # noqa: ASYNC109 - a bound on a dead actor
    """Close a source actor's source (the device or connection goes back at once), then end the actor.
    One that does not answer within `timeout` seconds, or is already gone, is ended all the same.
    Returns the source's final counters (`streams.SourceStats` as a dict), None if it did not answer."""
    final = None
    try:
        final = await asyncio.wait_for(source.close.remote(), timeout)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - dead or hung: ended below anyway
        pass
    kill(source)
    return final
