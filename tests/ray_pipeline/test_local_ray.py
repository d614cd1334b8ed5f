"""`start_local_ray` starts a Ray of its own even where `ray start` left its address behind (a cluster of the
same machine, or a stale file): `ray.init()` without an address would join that one instead."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

SCRIPT = """
from pipeline.ray.local import start_local_ray
import ray
start_local_ray(num_cpus=1, include_dashboard=False, log_to_driver=False)
print("GCS", ray.get_runtime_context().gcs_address)
ray.shutdown()
"""


def test_a_local_ray_ignores_the_address_ray_start_left_behind(ray_tmp):
    # what `ray start` writes for later `ray.init()` calls to join; here it names a port nothing listens on
    Path(ray_tmp, "ray").mkdir()
    Path(ray_tmp, "ray", "ray_current_cluster").write_text("127.0.0.1:1")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"RAY_TMPDIR": ray_tmp}
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=100)
    assert out.returncode == 0, out.stderr[-2000:]
    gcs = next(ln for ln in out.stdout.splitlines() if ln.startswith("GCS "))
    assert gcs.startswith("GCS 127.0.0.1:") and gcs != "GCS 127.0.0.1:1"
