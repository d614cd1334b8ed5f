"""A local run listens on loopback only: every listening socket of `omnisift run` and of every process it
starts (Ray's GCS, raylet, agents and workers, the pipeline's ZeroMQ, metrics and HTTP) is on 127.0.0.1,
read from the kernel's socket table (psutil). `ray.allow_remote: true` puts Ray back on the node's network
address. Before `pipeline.ray.local`, GCS, raylet, driver and workers listened on `::` (every interface)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import yaml

from streams.net import host_is_loopback

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

REPO = Path(__file__).parents[2]


def listening(root: int) -> list[tuple[str, str, int]]:
    """(process name, address, port) of every listening TCP socket of `root` and its descendants."""
    try:
        top = psutil.Process(root)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []
    found = []
    for p in procs:
        try:
            name = p.name()
            conns = p.net_connections(kind="tcp")
        except psutil.Error:
            continue  # ended while we looked
        found += [(name, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN]
    return found


def config_file(tmp_path: Path, model_path: Path, **ray) -> Path:
    config = {
        "streams": [{"name": "cam", "source": {"type": "synthetic", "width": 160, "height": 120, "fps": 10,
                                                "duration": None, "realtime": True}}],
        "model": {"path": str(model_path), "max_new_tokens": 2},
        "zmq": {"pub": "tcp://127.0.0.1:*", "rep": "tcp://127.0.0.1:*"}, "metrics": {"port": 0},
        "http": {"port": 0}, "ray": {"num_cpus": 2, **ray},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def sockets_of_a_running_pipeline(config: Path, ray_tmp: str) -> list[tuple[str, str, int]]:
    """Start `omnisift run`, wait for its first chunk (every actor is up), list the sockets, stop it."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(config), "--duration", "120"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=REPO)
    seen = []
    try:
        deadline = time.monotonic() + 180
        for line in proc.stdout:
            seen.append(line)
            if line.startswith("[cam] chunk") or time.monotonic() > deadline:
                break
        assert any(ln.startswith("[cam] chunk") for ln in seen), "".join(seen)[-3000:]
        time.sleep(1.0)  # the workers' servers are up before their first call; this is for the agents
        return listening(proc.pid)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_a_local_run_listens_on_loopback_only(tiny_model_path, tmp_path, ray_tmp):
    sockets = sockets_of_a_running_pipeline(config_file(tmp_path, tiny_model_path), ray_tmp)
    names = {name for name, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, sockets  # Ray's own servers are among what was read
    assert len(sockets) >= 8, sockets  # and the pipeline's: REP, PUB, metrics, HTTP, plus workers
    beyond = [s for s in sockets if not host_is_loopback(s[1])]
    assert not beyond, f"listening beyond loopback: {beyond}"


def test_allow_remote_puts_ray_on_the_nodes_network_address(ray_tmp):
    """With the cluster switch left on, GCS listens on every interface (0.0.0.0 or ::), which is not
    loopback on any machine, one with loopback alone included: no skip needed."""
    code = ("import json, os; from pipeline.ray.local import start_local_ray; "
            "from tests.ray_pipeline.test_ray_exposure import listening; "
            "start_local_ray(num_cpus=1, allow_remote=True, include_dashboard=False); "
            "print(json.dumps([ip for name, ip, _ in listening(os.getpid()) if name == 'gcs_server']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=REPO,
                         env={**os.environ, "RAY_TMPDIR": ray_tmp}, check=True)
    gcs = json.loads(out.stdout.strip().splitlines()[-1])
    assert gcs and not any(host_is_loopback(ip) for ip in gcs), out.stdout
