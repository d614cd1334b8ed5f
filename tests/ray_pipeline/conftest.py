"""Fixtures for the Ray pipeline tests: the tiny model, generated media, a loopback RTSP server, local Ray.

Ray is started per module (small `num_cpus`, no dashboard) and shut down after it, so the two-node
`ray.cluster_utils.Cluster` test can run its own cluster. Every end-to-end wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import zmq

from tests.pipeline.media import write_clip

SYSTEM_PYTHON = "/usr/bin/python3"
RTSP_SERVER = Path(__file__).parents[1] / "streams" / "rtsp_server.py"


@pytest.fixture(scope="session")
def media_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-media")


@pytest.fixture(scope="session")
def av_file(media_dir) -> Path:
    """8 s, 160x120 H.264 + AAC: four chunks."""
    return write_clip(media_dir / "av.mp4", seconds=8.0)


@pytest.fixture(scope="module")
def local_ray():
    import ray

    from pipeline.ray.local import start_local_ray

    if ray.is_initialized():
        ray.shutdown()
    start_local_ray(num_cpus=2, include_dashboard=False, namespace="omnisift-tests", log_to_driver=False,
             configure_logging=False)
    yield ray
    ray.shutdown()


def pipeline_config(model_path, streams, **extra) -> dict:
    """A pipeline config for tests: tiny model, loopback ZeroMQ, metrics and HTTP on free ports; no history
    and no clips unless a test gives them a folder. The model runs on the CPU in float32 whatever `--device`
    says: these tests check the Ray system around the model, whose numbers the `target` tests check."""
    cfg = {
        "streams": streams,
        "model": {"path": str(model_path), "max_new_tokens": 4, "window_seconds": 60, "device": "cpu",
                  "dtype": "float32"},
        "zmq": {"pub": "tcp://127.0.0.1:*", "rep": "tcp://127.0.0.1:*"},
        "metrics": {"port": 0},
        "http": {"port": 0},
        "history": {"path": None},
        "clips": {"dir": None},
        "resources": {"source": {"num_cpus": 0}, "encoder": {"num_cpus": 0.5}, "model": {"num_cpus": 0.5}},
    }
    for key, value in extra.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) and isinstance(cfg.get(key), dict) else value
    return cfg


def synthetic(width: int = 160, height: int = 120, **kw) -> dict:
    """An endless synthetic live source (real time), small frames."""
    return {"type": "synthetic", "pattern": "testsrc2", "width": width, "height": height, "fps": 10,
            "duration": None, "realtime": True, **kw}


async def next_matching(agen, pred, timeout: float):
    """The first item of an async iterator that satisfies `pred`, within `timeout` seconds."""
    async def scan():
        async for item in agen:
            if pred(item):
                return item
        raise AssertionError("iterator ended before a matching item")

    return await asyncio.wait_for(scan(), timeout)


async def assert_actor_ends(actor, timeout: float = 30.0) -> None:
    """Fail unless calls to `actor` raise RayActorError within `timeout` seconds. `ray.kill` is
    asynchronous, so a call made just after it may still be served; poll until the actor is gone."""
    import ray

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            await asyncio.wait_for(actor.where.remote(), max(0.1, end - time.monotonic()))
        except ray.exceptions.RayActorError:
            return
        except TimeoutError:
            break
        await asyncio.sleep(0.2)
    raise AssertionError(f"the actor still answers {timeout:.0f} s after it was ended")


def _have_gst_rtsp() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                       capture_output=True)
    return r.returncode == 0


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rtsp_url(tmp_path_factory):
    """rtsp://127.0.0.1:PORT/clip serving a 40 s clip in real time (tests/streams/rtsp_server.py)."""
    if not _have_gst_rtsp():
        pytest.fail("GStreamer RTSP server missing: run `bash tests/run.sh`, which installs tests/system-packages.txt")
    clip = write_clip(tmp_path_factory.mktemp("rtsp") / "clip.mp4", seconds=40.0, fps=10)
    port = free_port()
    proc = subprocess.Popen([SYSTEM_PYTHON, str(RTSP_SERVER), str(port), str(clip)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline().strip()
        if line != "READY":
            raise RuntimeError(f"rtsp server failed to start: {line!r}")
        yield f"rtsp://127.0.0.1:{port}/clip"
    finally:
        proc.kill()
        proc.wait(5)


def wait_until(pred, timeout: float, step: float = 0.1) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step)
    return pred()


def raw_request(endpoint: str, parts: list[bytes], timeout: float = 20.0) -> dict:
    """Send `parts` as one multipart message from a REQ socket; the reply, parsed."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    try:
        sock.connect(endpoint)
        sock.send_multipart(parts)
        assert sock.poll(int(timeout * 1000)), "no reply"
        return json.loads(sock.recv())
    finally:
        sock.close(0)
        ctx.term()


async def until(pred, timeout: float = 30.0, step: float = 0.05) -> None:
    """Wait until `pred()` holds, polling every `step` seconds; AssertionError after `timeout`."""
    for _ in range(int(timeout / step)):
        if pred():
            return
        await asyncio.sleep(step)
    raise AssertionError("condition not reached")
