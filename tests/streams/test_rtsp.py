"""A real RTSP server on loopback (GStreamer, see rtsp_server.py) streaming a self-timestamping clip."""

from __future__ import annotations

import time

import pytest
from streams_checks import audio_segments, frame_times, wait_for

from streams import open_source

pytestmark = [pytest.mark.rtsp, pytest.mark.slow]


def _config(url, transport="tcp", **kw):
    return {
        "type": "rtsp",
        "url": url,
        "transport": transport,
        "connect_timeout": 5.0,
        "read_timeout": 2.0,
        "queue_size": 32,
        "reconnect": {"initial_delay": 0.3, "max_delay": 2.0, "jitter": 0.1},
        **kw,
    }


def assert_aligned(chunk):
    """Frames and tones in a chunk show one consistent timeline, 0.5 s per slot (within one 10 fps frame)."""
    ft = frame_times(chunk)
    segs = audio_segments(chunk)
    base = ft[0]
    for i, t in enumerate(ft):
        assert t == pytest.approx(base + i / 2, abs=0.11), (chunk.index, ft)
    for i, s in enumerate(segs):
        assert s == (round(base * 2) + i) % 56, (chunk.index, ft, segs)


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_every_chunk_holds_its_own_frames_and_tones(rtsp_server, transport):
    src = open_source(_config(rtsp_server.url, transport))
    try:
        chunks = [src.get(timeout=10) for _ in range(3)]
    finally:
        src.close()
    for c in chunks:
        assert c.frames.shape == (4, 96, 160, 3) and c.audio.shape == (32000,)
        assert_aligned(c)
        # the stream clock is the clip's clock: chunk start == time shown by its first frame
        assert frame_times(c)[0] == pytest.approx(c.start, abs=0.11)


def test_server_restart_mid_stream_is_flagged_and_ingestion_resumes(rtsp_server):
    src = open_source(_config(rtsp_server.url))
    try:
        before = [src.get(timeout=10) for _ in range(2)]
        rtsp_server.stop()
        time.sleep(1.0)
        rtsp_server.start()
        assert wait_for(lambda: src.stats().reconnects >= 1, 20)
        after = []
        deadline = time.monotonic() + 20
        while len([c for c in after if not c.flags.gap_before]) < 2 and time.monotonic() < deadline:
            after.append(src.get(timeout=10))
    finally:
        src.close()
    for c in before:
        assert_aligned(c)
    gaps = [c for c in after if c.flags.gap_before]
    assert len(gaps) == 1
    resumed = after[after.index(gaps[0]) :]
    assert resumed[0].start >= before[-1].start + 4.0  # the outage is on the clock, not papered over
    for c in resumed:
        assert_aligned(c)  # the new session restarted the clip; chunks are aligned to it again
    assert src.stats().reconnects == 1


def test_unreachable_rtsp_server_is_a_one_line_source_error():
    from streams_checks import free_port

    from streams import SourceError

    with pytest.raises(SourceError) as e:
        open_source(_config(f"rtsp://user:pw@127.0.0.1:{free_port()}/none", connect_timeout=1.0))
    assert "\n" not in str(e.value) and "pw" not in str(e.value)
