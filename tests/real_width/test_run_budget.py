"""`omnisift run` of configs/rtsp.yaml at the real widths: it starts with a context budget that fits the model,
and the same config with a window the model cannot hold is refused in one line before any stream starts.

The config is rtsp.yaml with what this machine lacks replaced: its camera by a synthetic 1280x720 stream under
the same frame cap (no RTSP server runs here), its GPU reservations by CPUs, and fixed ports by free ones. The
model section, which decides the budget, is rtsp.yaml's own."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(args: list[str], ray_tmp: str, timeout: float = 500) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def rtsp_config_here(tmp_path, **model) -> str:
    config = yaml.safe_load(open("configs/rtsp.yaml"))
    config["streams"][0]["source"] = {"type": "synthetic", "width": 1280, "height": 720, "fps": 10,
                                      "duration": None, "realtime": True, "max_width": 1280, "max_height": 720}
    config["model"].update(model)
    config["resources"] = {"source": {"num_cpus": 0}, "encoder": {"num_cpus": 0.5}, "model": {"num_cpus": 0.5}}
    config.update(zmq={"pub": "tcp://127.0.0.1:*", "rep": "tcp://127.0.0.1:*"}, metrics={"port": 0},
                  ray={"num_cpus": 2}, watch=[])
    path = tmp_path / "rtsp-here.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_run_of_the_rtsp_config_starts_with_a_budget_inside_the_model(real_width_path, tmp_path, ray_tmp, target):
    config = rtsp_config_here(tmp_path, **target.load())
    out = run(["run", config, "--model", str(real_width_path), "--duration", "2", "--quiet-stats"], ray_tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("[door] context budget:"))
    worst = int(line.split("at most ")[1].split(" ")[0])
    assert worst <= 32768 and "of the model's 32768 tokens" in line
    assert "(195 kept per chunk, 364 per frame)" in line  # 720p capped at 640x480: 364 tokens, 25% of 778


def test_run_refuses_a_config_past_the_context_in_one_line(real_width_path, tmp_path, ray_tmp):
    config = rtsp_config_here(tmp_path, compressor="full", retention=None, path=str(real_width_path))
    out = run(["run", config], ray_tmp)
    assert out.returncode == 2
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert errors == [ln for ln in out.stderr.splitlines() if "context budget" in ln]
    assert len(errors) == 1 and "error: stream 'door': context budget of " in errors[0]
    assert "more than the model's 32768" in errors[0] and "lower window_seconds to " in errors[0]
