"""What every actor process does for itself: how many threads torch may use, and where it runs."""

from __future__ import annotations

import math
import os


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
