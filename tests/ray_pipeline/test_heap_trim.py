"""Actors hand the heap glibc keeps free back to the system once a minute (`HeapTrim`): in the day-long
soak the encoder's RSS rose in steps that a trim at the end took back, which a trim as it runs avoids."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from pipeline.ray.process import HeapTrim


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_trim_runs_at_most_once_every_interval_whatever_the_calls():
    clock, trims = FakeClock(), []
    heap = HeapTrim(every=60.0, clock=clock, trim=lambda: trims.append(clock.now))
    for t in range(0, 301, 2):  # a call after every 2-second chunk for 5 minutes
        clock.now = float(t)
        heap.after_work()
    assert trims == [60.0, 120.0, 180.0, 240.0, 300.0]
    assert heap.trims == 5


def test_without_malloc_trim_nothing_is_called():
    heap = HeapTrim(every=0.0)
    heap.trim = None  # what a C library without malloc_trim gives
    assert heap.after_work() is False


def test_a_trim_gives_freed_heap_back_to_the_system():
    """200 MB malloc'd in 100 KB blocks (below the mmap threshold: from the heap), the last one kept so the
    heap cannot shrink from its top, the rest freed: RSS stays up until the trim, then falls by at least
    150 MB (read from /proc, not from the allocator)."""
    code = textwrap.dedent("""
        import ctypes, os
        from pipeline.ray.process import HeapTrim
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc.restype = ctypes.c_void_p
        libc.free.argtypes = [ctypes.c_void_p]
        def rss_mb():
            return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        blocks = [libc.malloc(100_000) for _ in range(2000)]
        for b in blocks:
            ctypes.memset(b, 1, 100_000)
        for b in blocks[:-1]:
            libc.free(b)
        before = rss_mb()
        trimmed = HeapTrim(every=0.0).after_work()
        print(before, rss_mb(), trimmed)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         check=True, cwd=Path(__file__).parents[2])
    before, after, trimmed = out.stdout.split()
    assert trimmed == "True"
    assert float(before) - float(after) > 150
