"""`omnisift run CONFIG --duration S` and `omnisift demo` in a subprocess: output, clean stop, no
process left behind; bad configs exit 2 with one line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def _ray_processes(marker: str = "") -> dict[int, str]:
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    pids = {}
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if marker in args and "pytest" not in args:  # Ray's processes name their session dir
            pids[int(pid)] = args[:160]
    return pids


def _run(args, timeout=150, **env):
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_run_prints_answers_alerts_and_lag_then_stops_and_leaves_nothing(tiny_model_path, tmp_path, ray_tmp):
    import ray

    assert not ray.is_initialized()
    before = _ray_processes(ray_tmp)
    config = {
        "streams": [{"name": "cam", "source": {"type": "synthetic", "width": 160, "height": 120, "fps": 10,
                                                "duration": None, "realtime": True}}],
        "model": {"path": str(tiny_model_path), "max_new_tokens": 3},
        "ask_every": 2.0, "question": "What is on screen?",
        "watch": [{"question": "Is it loud?", "every": 2.0, "threshold": 0.0}],
        "zmq": {"pub": "tcp://127.0.0.1:*", "rep": "tcp://127.0.0.1:*"}, "metrics": {"port": 0},
        "http": {"port": 0}, "history": {"path": str(tmp_path / "history.sqlite3")}, "clips": {"dir": str(tmp_path)},
        "ray": {"num_cpus": 2},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    out = _run(["run", str(path), "--duration", "7"], RAY_TMPDIR=ray_tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert any(ln.startswith("[cam] chunk") and "lag" in ln and "dropped" in ln for ln in lines), out.stdout
    assert any(ln.startswith("[cam] ALERT p(yes)=") and "lag" in ln for ln in lines), out.stdout
    assert any(ln.startswith("[cam] A: ") and "lag" in ln for ln in lines), out.stdout
    assert lines[-2].startswith("[cam] stopped:") and " dropped, 0 lost, " in lines[-2], lines[-2]
    assert lines[-1].startswith(f"saved: event history {tmp_path / 'history.sqlite3'}; "), lines[-1]
    assert any(ln.startswith("rep: tcp://127.0.0.1:") for ln in lines)
    assert any(ln.startswith("dashboard: http://127.0.0.1:") for ln in lines), out.stdout
    deadline = time.monotonic() + 15
    assert any(Path(ray_tmp).iterdir()), "the run did not use RAY_TMPDIR; the check below would see nothing"
    while set(_ray_processes(ray_tmp)) - set(before) and time.monotonic() < deadline:
        time.sleep(0.5)
    left = {pid: args for pid, args in _ray_processes(ray_tmp).items() if pid not in before}
    assert not left, f"Ray processes left behind: {left}"


@pytest.mark.parametrize(("config", "words"), [
    ({"streams": [{"name": "a", "source": {"type": "vhs"}}]}, "'vhs'"),
    ({"streams": [], "modle": {}}, "unknown field 'modle'"),
])
def test_run_with_a_bad_config_exits_2_with_one_line(tmp_path, config, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    out = _run(["run", str(path), "--duration", "1"], timeout=60)
    assert out.returncode == 2
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and words in errors[0], out.stderr


@pytest.mark.parametrize(("model", "words"), [
    ({"compressor": "stvp", "compressor_options": {"carry_previous_frame": "no"}},
     "the encoder/model actors did not start: compressor 'stvp' option carry_previous_frame must be bool, "
     "got str 'no'"),
    ({"compressor": "nope"}, "the encoder/model actors did not start: unknown compressor 'nope'; choose one of"),
])
def test_run_whose_actors_refuse_the_model_config_exits_2_with_their_reason(tiny_model_path, tmp_path, model, words):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"streams": [], "model": {"path": str(tiny_model_path), **model},
                                    "zmq": {"pub": None, "rep": None}, "metrics": {"port": None}}))
    out = _run(["run", str(path), "--duration", "1"], timeout=120)
    assert out.returncode == 2
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: {words}"), out.stderr
    assert "Traceback" not in out.stderr


def test_ask_without_a_running_pipeline_times_out_with_one_line(tmp_path):
    from tests.ray_pipeline.conftest import free_port

    out = _run(["ask", "hello?", "--endpoint", f"tcp://127.0.0.1:{free_port()}", "--timeout", "0.5"], timeout=60)
    assert out.returncode == 2 and "error: no reply from" in out.stderr


@pytest.mark.parametrize(("args", "says"), [
    (["hello?", "--endpoint", "garbage"], "error: endpoint 'garbage': Invalid argument"),
    # 70,000 characters and {"question": "", "stream": null, "timeout": 0.5} around them (48 bytes)
    (["x" * 70_000], "error: request of 70048 bytes is too large: a pipeline takes at most 65536"),
])
def test_ask_with_a_bad_endpoint_or_a_huge_question_is_one_line(capsys, args, says):
    from pipeline.cli import main

    assert main(["ask", *args, "--timeout", "0.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(says) and err.count("\n") == 1, err


def test_run_without_streams_and_without_http_is_refused_before_ray_starts(tmp_path, capsys):
    import ray

    from pipeline.cli import main

    path = tmp_path / "empty.yaml"
    path.write_text(yaml.safe_dump({"streams": [], "http": {"port": None}}))
    assert main(["run", str(path), "--duration", "1"]) == 2
    assert capsys.readouterr().err.splitlines() == [  # the command's first line, then the one error line
        f"omnisift run {path}: checking the config, then starting Ray, the actors and the model (about 20 s before "
        "the first chunk)",
        f"error: {path}: no streams, and no HTTP API (http.port) to add them while running: list at least one under "
        "'streams'"]
    assert not ray.is_initialized()


def test_demo_runs_the_ray_pipeline_on_the_tiny_model_and_stops(tmp_path, ray_tmp):
    """The README's main command: local Ray, a synthetic live stream, the tiny model with its banner, the
    dashboard's URL. Its first line says what it does before anything else (Ray's two misleading warnings
    are gone); while it runs, `omnisift ask` with no endpoint finds it and the dashboard's API says the model
    is the tiny one; when it has stopped, its last lines say stopped (not running) and what was saved."""
    import json
    import urllib.request

    runtime = tmp_path / "runtime"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp, "OMNISIFT_RUNTIME_DIR": str(runtime)}
    errors = tmp_path / "stderr.txt"
    with open(errors, "w") as err_file:
        proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", "--duration", "6", "--every", "2",
                                 "--model", "no-such-org/no-such-model", "--http-port", "0",
                                 "--data", str(tmp_path / "data")],
                                stdout=subprocess.PIPE, stderr=err_file, text=True, env=env)
        try:
            lines = []
            for line in proc.stdout:  # bounded: the demo stops after --duration (and the test's timeout)
                lines.append(line.rstrip("\n"))
                if line.startswith("dashboard: "):
                    break
            asked = subprocess.run([sys.executable, "-m", "pipeline.cli", "ask", "What is on screen?"],
                                   capture_output=True, text=True, timeout=60, env=env)
            api = next(ln.split()[1] for ln in lines if ln.startswith("http: "))
            with urllib.request.urlopen(api + "api/streams", timeout=30) as reply:
                streams = json.loads(reply.read())
            lines += proc.communicate(timeout=120)[0].splitlines()
        finally:
            proc.kill()
            proc.wait()
    stderr = errors.read_text()
    assert proc.returncode == 0, stderr[-3000:]
    assert stderr.startswith("omnisift demo: starting local Ray"), stderr[:500]
    assert "SIGTERM handler is not set" not in stderr and "Token authentication is enabled" not in stderr, stderr
    out = "\n".join(lines)
    assert "TINY RANDOM model" in out
    assert asked.returncode == 0 and asked.stderr.startswith("[demo] media "), asked.stderr
    assert streams["model_is_tiny"] is True
    assert any(ln.startswith("[demo] chunk") and "kept video" in ln and "lag" in ln for ln in lines), out
    assert any(ln.startswith("[demo] A: ") for ln in lines), out
    assert any(ln.startswith("dashboard: http://127.0.0.1:") for ln in lines), out
    assert lines[-2].startswith("[demo] stopped: ") and "running" not in lines[-2], out
    assert lines[-1].startswith(f"saved: event history {tmp_path}/data/history.sqlite3; "), out
    assert lines[-1].endswith(f" in {tmp_path}/data/clips"), out
    assert (tmp_path / "data" / "history.sqlite3").is_file()
    assert not list(runtime.glob("*.json")), "the demo left its runtime file behind"


def test_demo_without_ray_runs_the_session_in_process():
    out = _run(["demo", "--no-ray", "--duration", "5", "--every", "2", "--model", "no-such-org/no-such-model"])
    assert out.returncode == 0, out.stderr[-3000:]
    assert "TINY RANDOM model" in out.stdout
    assert sum(ln.startswith("chunk ") for ln in out.stdout.splitlines()) >= 2
    assert any(ln.startswith("A: ") for ln in out.stdout.splitlines())
