"""Fixtures for the streams tests: generated media (see media.py) and a loopback RTSP server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import streams_media as media  # beside this file, importable once the path is set
from streams_checks import free_port

SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def av_clip(clip_dir) -> Path:
    """6 s, 10 fps, 160x96 H.264 + AAC mp4 whose frames and tones encode their time."""
    return media.make_clip(clip_dir / "av.mp4", seconds=6.0)


def _have_gst_rtsp() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    r = subprocess.run(
        [
            SYSTEM_PYTHON,
            "-c",
            "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer",
        ],
        capture_output=True,
    )
    return r.returncode == 0


class RtspServer:
    """tests/streams/rtsp_server.py in a subprocess; stop() and start() simulate an outage."""

    def __init__(self, clip: Path, port: int) -> None:
        self.clip, self.port = clip, port
        self.url = f"rtsp://127.0.0.1:{port}/clip"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [SYSTEM_PYTHON, str(Path(__file__).parent / "rtsp_server.py"), str(self.port), str(self.clip)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if line != "READY":
            self.stop()
            raise RuntimeError(f"rtsp server failed to start: {line!r}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None


@pytest.fixture(scope="session")
def rtsp_clip(clip_dir) -> Path:
    # 40 s so a whole test (including a restart) never reaches the end; GOP of 1 s so a reconnect decodes fast
    return media.make_clip(clip_dir / "rtsp.mp4", seconds=40.0, fps=10, gop=10)


@pytest.fixture
def rtsp_server(rtsp_clip):
    if not _have_gst_rtsp():
        pytest.fail("GStreamer RTSP server missing: run `bash tests/run.sh`, which installs tests/system-packages.txt")
    server = RtspServer(rtsp_clip, free_port())
    server.start()
    yield server
    server.stop()
