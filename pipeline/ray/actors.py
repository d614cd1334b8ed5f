"""Ray actors: the plain worker classes (`source_worker`, `encoder_worker`, `model_worker`), made remote
here with options from the config.

The source actor blocks in `next_chunk` (a thread of its own); encoder and model actors are threaded
(`max_concurrency`) so `where()`, questions and `cache_tokens()` answer while a chunk is being processed.
The encoder runs one call at a time (`max_concurrency=1`), which keeps each stream's chunks in order, unless
`model.encoder_batch.max_batch` > 1: then twice that many calls wait together in its batcher, which keeps
each stream's chunks in order among those waiting (`EncoderWorker`).
Actors are owned by the driver: when it exits, they go with it. `max_restarts` from the config restarts a
dead actor by running its constructor again; the driver's stream loops retry and carry on.
"""

from __future__ import annotations

import asyncio
from typing import Any

import ray

from pipeline.config import ActorResources, ModelSpec, PipelineConfig, StreamSpec
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


def start_source(spec: StreamSpec, config: PipelineConfig):
    bp = config.backpressure
    cls = ray.remote(**actor_options(config.resources.source, max_concurrency=2))(SourceWorker)
    return cls.remote(spec.name, spec.source, queue_size=bp.queue_size, drop_policy=bp.drop_policy)


def _placement(spread: bool) -> dict[str, Any]:
    """Replicas of one kind go to different nodes where they can ("SPREAD"; best effort, so a one-node
    cluster still takes them all); a single actor goes where Ray's default policy puts it."""
    return {"scheduling_strategy": "SPREAD"} if spread else {}


def start_encoder(config: PipelineConfig, model_spec: ModelSpec, *, spread: bool = False):
    res = config.resources.encoder
    max_batch = model_spec.encoder_batch.max_batch
    threads = 1 if max_batch == 1 else 2 * max_batch  # a batch running and the next one gathering
    cls = ray.remote(**actor_options(res, max_concurrency=threads, **_placement(spread)))(EncoderWorker)
    # every chunk a stream can send again (see EncoderWorker): in the queue, held by the pump, the one sent
    return cls.remote(model_spec, num_cpus=res.num_cpus, remember=config.backpressure.max_in_flight + 2)


def start_model(config: PipelineConfig, model_spec: ModelSpec, *, spread: bool = False):
    res = config.resources.model
    cls = ray.remote(**actor_options(res, max_concurrency=8, **_placement(spread)))(ModelWorker)
    return cls.remote(model_spec, num_cpus=res.num_cpus)


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
