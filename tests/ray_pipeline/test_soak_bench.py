"""The soak benchmark's measuring parts: resident memory read from /proc, and growth after the warm-up."""

from __future__ import annotations

import subprocess
import sys

from benchmarks.soak import PROCESSES, Sample, growth, rss_mb


def test_rss_of_a_process_rises_by_what_it_allocates_and_touches():
    code = ("import sys; sys.stdout.write('ready\\n'); sys.stdout.flush(); sys.stdin.readline(); "
            "block = bytearray(300 * 2**20); sys.stdout.write('held\\n'); sys.stdout.flush(); sys.stdin.readline()")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline() == "ready\n"
        before = rss_mb(proc.pid)
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.stdout.readline() == "held\n"
        after = rss_mb(proc.pid)  # bytearray zero-fills its 300 MB, so every page is resident
        proc.stdin.write("\n")
        proc.stdin.flush()
    finally:
        proc.wait(10)
    assert 5.0 < before < 100.0 and 290.0 < after - before < 330.0
    assert rss_mb(proc.pid) == 0.0  # gone


def _sample(seconds: float, mb: float) -> Sample:
    return Sample(seconds, 0, 0, None, 0.0, dict.fromkeys(PROCESSES, mb))


def test_growth_counts_from_the_first_sample_after_the_warm_up_to_the_last():
    samples = [_sample(0, 100.0), _sample(600, 400.0), _sample(900, 410.0), _sample(4500, 420.0)]
    # warm-up 300 s: from 400 MB at 600 s to 420 MB at 4500 s, i.e. 20 MB in 3900 s
    for mb, per_hour in growth(samples, 300.0).values():
        assert mb == 20.0 and abs(per_hour - 20.0 * 3600 / 3900) < 1e-9
    assert growth(samples, 1000.0) == {}  # a single sample after the warm-up says nothing
