"""What every actor process does for itself: how many threads torch may use, and where it runs; and the
environment it starts with (`actor_env`)."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import threading
import time
from collections.abc import Callable

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


class HeapTrim:
    """Hands the heap glibc keeps free back to the system (`malloc_trim(0)`), at most once every `every`
    seconds, called by an actor after each piece of work.

    Two arenas bound how many heaps there are, not how much each keeps: freed tensor memory between live
    blocks stays in the process until a trim. In the day-long soak the encoder's RSS rose +1.06% in steps
    over 15 media hours and a trim at the end took it below its warm-up figure, so the growth was kept free
    memory, not memory in use. A trim holds the allocator for a few milliseconds (measured here: 5 ms in a
    500 MB process with nothing to give back, 54 ms handing back 760 MB); once a minute, that is nothing.
    Where libc has no `malloc_trim` (not glibc) it does nothing."""

    def __init__(self, every: float = 60.0, *, clock: Callable[[], float] = time.monotonic,
                 trim: Callable[[], object] | None = None) -> None:
        self.every = every
        self.clock = clock
        self.trim = trim if trim is not None else malloc_trim
        self.trims = 0
        self._last = clock()
        self._lock = threading.Lock()

    def after_work(self) -> bool:
        """Trim if `every` seconds have passed since the last trim; True if it trimmed."""
        if self.trim is None:
            return False
        with self._lock:
            now = self.clock()
            if now - self._last < self.every:
                return False
            self._last = now
            self.trims += 1
        self.trim()
        return True


def _libc_malloc_trim() -> Callable[[], object] | None:
    """glibc's `malloc_trim(0)` as a call, None where the C library has none."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_size_t]
    return lambda: fn(0)


malloc_trim = _libc_malloc_trim()  # hands the free heap back now (HeapTrim, benchmarks); None without glibc


def set_threads(num_cpus: float | None) -> None:
    """Let torch use as many threads as the CPUs the actor reserved (all of them when it reserved none)."""
    if num_cpus:
        import torch

        torch.set_num_threads(max(1, math.ceil(num_cpus)))


def where() -> dict:
    """Node id and pid of the process this runs in (the Ray node when inside Ray), the GPUs Ray gave it
    (`ray.get_gpu_ids()`, empty outside Ray or without any) and its CUDA_VISIBLE_DEVICES (None if unset)."""
    node, gpus = None, []
    try:
        import ray

        if ray.is_initialized():
            node = ray.get_runtime_context().get_node_id()
            gpus = [str(g) for g in ray.get_gpu_ids()]
    except Exception:  # noqa: BLE001 - outside Ray, or Ray not answering: no node id
        pass
    return {"node_id": node, "pid": os.getpid(), "gpus": gpus,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}
