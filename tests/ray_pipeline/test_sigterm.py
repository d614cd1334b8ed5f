"""SIGTERM (what `docker stop` sends through the image's init) stops `omnisift run` the clean way: streams
closed with their `closed` events in the history, the history checkpointed into its file, Ray and every
process it started gone, exit code 0."""

from __future__ import annotations

import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import psutil
import pytest
import yaml

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


def _lines(stream) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def _wait_for_line(q: queue.Queue, prefix: str, timeout: float) -> str:
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        try:
            line = q.get(timeout=left)
        except queue.Empty:
            break
        if line is None:
            raise AssertionError(f"the run ended before printing a line starting {prefix!r}")
        if line.startswith(prefix):
            return line
    raise AssertionError(f"no line starting {prefix!r} within {timeout:g}s")


def test_sigterm_closes_streams_checkpoints_the_history_and_leaves_no_process(tiny_model_path, tmp_path, ray_tmp):
    history = tmp_path / "history.sqlite3"
    config = {
        "streams": [{"name": "cam", "source": {"type": "synthetic", "width": 160, "height": 120, "fps": 10,
                                                "duration": None, "realtime": True}}],
        "model": {"path": str(tiny_model_path), "max_new_tokens": 3},
        "zmq": {"pub": "tcp://127.0.0.1:*", "rep": "tcp://127.0.0.1:*"}, "metrics": {"port": 0},
        "http": {"port": 0}, "history": {"path": str(history)}, "clips": {"dir": None}, "ray": {"num_cpus": 2},
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "RAY_TMPDIR": ray_tmp}
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "run", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        _wait_for_line(_lines(proc.stdout), "[cam] chunk", 150)
        started = psutil.Process(proc.pid).children(recursive=True)  # Ray's GCS, raylet, workers, actors
        assert len(started) >= 3, [p.name() for p in started]
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(90)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert rc == 0, err[-3000:]
    assert "SIGTERM: stopping" in err and "Traceback" not in err, err[-3000:]
    _, alive = psutil.wait_procs(started, timeout=30)  # Ray's processes end after the driver's shutdown
    assert not alive, f"processes of the run left behind: {[p.name() for p in alive]}"
    wal = history.with_name(history.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the history was not checkpointed"
    states = [row[0] for row in sqlite3.connect(history).execute(
        "SELECT state FROM events WHERE kind = 'stream' AND stream = 'cam' ORDER BY id")]
    assert states[0] == "running" and states[-1] == "closed", states
