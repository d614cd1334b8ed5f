"""Actor processes start with at most two glibc malloc arenas, whatever number of threads allocate in them:
with one arena per thread (glibc's default, up to 8 per core), the freed memory each arena keeps made
the threaded model actor's RSS creep for hours in the day-long soak."""

from __future__ import annotations

import ctypes
import os
import re
import tempfile
import threading

from pipeline.config import ActorResources
from pipeline.ray.actors import actor_options


def arenas_after_threads(n_threads: int = 8) -> int:
    """Arenas in this process (glibc's `malloc_info`) after `n_threads` threads, all alive at once,
    each malloc'd 32 blocks of 64 KB (below the mmap threshold, so from the thread's arena)."""
    barrier = threading.Barrier(n_threads + 1)
    held: list[list[bytearray]] = []

    def allocate() -> None:
        held.append([bytearray(64 * 1024) for _ in range(32)])
        barrier.wait()  # every thread holds its blocks while the others allocate
        barrier.wait()

    threads = [threading.Thread(target=allocate) for _ in range(n_threads)]
    for t in threads:
        t.start()
    barrier.wait()
    libc = ctypes.CDLL("libc.so.6")
    libc.fopen.restype = ctypes.c_void_p
    with tempfile.NamedTemporaryFile(suffix=".xml") as f:
        fp = libc.fopen(f.name.encode(), b"w")
        libc.malloc_info(0, ctypes.c_void_p(fp))
        libc.fclose(ctypes.c_void_p(fp))
        xml = open(f.name).read()
    barrier.wait()
    for t in threads:
        t.join()
    return len(re.findall(r"<heap nr=", xml))


class Probe:
    def arenas(self) -> int:
        return arenas_after_threads()

    def env(self) -> str | None:
        return os.environ.get("MALLOC_ARENA_MAX")


def test_an_actor_started_with_the_pipelines_options_allocates_from_at_most_two_arenas(local_ray):
    opts = actor_options(ActorResources(num_cpus=0))
    actor = local_ray.remote(**opts)(Probe).remote()
    plain = local_ray.remote(num_cpus=0)(Probe).remote()  # glibc's default, for contrast
    try:
        assert local_ray.get(actor.env.remote(), timeout=120) == "2"
        assert local_ray.get(actor.arenas.remote(), timeout=60) <= 2
        assert local_ray.get(plain.arenas.remote(), timeout=120) > 2  # the test can tell the two apart
    finally:
        local_ray.kill(actor)
        local_ray.kill(plain)
