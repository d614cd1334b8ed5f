"""Message size limits hold at the socket: a message over `max_message_bytes` is never held in memory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from streams_checks import frame_times, free_port

from streams import State, open_source

SENDER = Path(__file__).parent / "zmq_sender.py"
LARGE = 40 << 20  # bytes per oversized message (the limit is 200 kB)


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def test_oversized_messages_are_stopped_at_the_socket_and_the_producer_continues():
    port = free_port()
    src = open_source(
        {"type": "zmq", "endpoint": f"tcp://127.0.0.1:{port}", "max_message_bytes": 200_000, "queue_size": 64}
    )
    reset_peak_rss()
    before = peak_rss_bytes()
    sender = subprocess.Popen(
        [sys.executable, str(SENDER), str(port), "3", str(LARGE)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sender.stdout.readline().strip() == "SENT"
        chunks = [src.get(timeout=15) for _ in range(2)]
        grown = peak_rss_bytes() - before
        assert src.state is State.RUNNING
        assert [c.start for c in chunks] == [0.0, 2.0]
        assert frame_times(chunks[1]) == pytest.approx([2.0, 2.5, 3.0, 3.5])
        assert grown < LARGE // 2, f"receiver peak memory grew by {grown / 2**20:.0f} MB"
        assert src.stats().peer_disconnects >= 3
    finally:
        sender.stdin.close()
        sender.wait(10)
        src.close()
