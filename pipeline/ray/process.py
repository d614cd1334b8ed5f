"""What every actor process does for itself: how many threads torch may use, and where it runs; and the
environment it starts with (`actor_env`)."""

from __future__ import annotations

import math
import os

# glibc's malloc gives each thread that allocates an arena of its own (up to 8 per core) and keeps the memory
# freed in each. A threaded actor (Ray's call threads, torch's, PyAV's) then creeps up for hours: in the
# day-long soak (BENCHMARKS.md "A day of media") the model actor gained 12.3 MB (+1.5%) between 2.4 and 24
# media hours, and malloc_trim handed 15-18 MB back; with two arenas it gained +0.16% over 1.2-12 hours.
# glibc reads this once, as the process starts, so it is set in the actor's environment (`actor_options`);
# a value the driver has wins.
MALLOC_ARENAS = "2"


def actor_env() -> dict[str, str]:
    """Environment variables every actor process starts with."""
    return {"MALLOC_ARENA_MAX": os.environ.get("MALLOC_ARENA_MAX", MALLOC_ARENAS)}


def set_threads(num_cpus: float | None) -> None:
    """Let torch use as many threads as the CPUs the actor reserved (all of them when it reserved none)."""
    if num_cpus:
        import torch

        torch.set_num_threads(max(1, math.ceil(num_cpus)))


def where() -> dict:
    """Node id and pid of the process this runs in (the Ray node when inside Ray)."""
    node = None
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 - outside Ray, or Ray not answering: no node id
        pass
    return {"node_id": node, "pid": os.getpid()}
