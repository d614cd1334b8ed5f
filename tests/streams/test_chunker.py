"""The Chunker alone, fed hand-made events: jitter, gaps, jumps, wraps, stalls, flush."""

from __future__ import annotations

import numpy as np
import pytest

from streams import AudioSample, Chunker, Discontinuity, VideoSample


def frame(n: int) -> np.ndarray:
    return np.full((2, 2, 3), n, np.uint8)


def feed(chunker, *, until: float, fps: float = 10, t0: float = 0.0, vjitter=None, ajitter=None, block=0.1, skip=None):
    """Video at `fps` with value = frame index and audio blocks whose samples equal their start time."""
    out = []
    events = []
    n = int(round((until - t0) * fps))
    for i in range(n):
        t = t0 + i / fps
        if skip and skip[0] <= t < skip[1]:
            continue
        jt = vjitter(i) if vjitter else 0.0
        events.append((t + jt, VideoSample(t + jt, frame(int(round(t * fps)) % 256))))
    for j in range(int(round((until - t0) / block))):
        t = t0 + j * block
        if skip and skip[0] <= t < skip[1]:
            continue
        jt = ajitter(j) if ajitter else 0.0
        events.append((t + jt, AudioSample(t + jt, np.full(int(block * 16000), t, np.float32))))
    for _, e in sorted(events, key=lambda p: p[0]):
        out += chunker.push(e)
    return out


def shown(chunk) -> list[int]:
    return [int(f[0, 0, 0]) for f in chunk.frames]


def test_full_chunks_sample_video_at_2fps_and_audio_at_16k():
    out = feed(Chunker("s"), until=4.5)
    assert [c.start for c in out] == [0.0, 2.0]
    assert shown(out[1]) == [20, 25, 30, 35]
    assert out[1].audio[0] == pytest.approx(2.0) and out[1].audio[-1] == pytest.approx(3.9)


def test_timestamp_jitter_does_not_move_samples():
    rng = np.random.default_rng(0)
    out = feed(
        Chunker("s"), until=6.5, vjitter=lambda i: rng.uniform(-0.02, 0.02), ajitter=lambda j: rng.uniform(-0.02, 0.02)
    )
    assert [len(c.audio) for c in out] == [32000] * 3
    assert not any(c.flags.audio_filled for c in out)
    assert shown(out[2])[0] in (39, 40) and shown(out[2])[2] in (49, 50)


def test_gap_in_the_middle_is_filled_and_flagged():
    out = feed(Chunker("s"), until=8.5, skip=(2.6, 3.6))
    gap = out[1]
    assert gap.flags.audio_filled and gap.flags.gap_before and gap.flags.frames_repeated is False
    assert np.all(gap.audio[int(0.6 * 16000) : int(1.6 * 16000)] == 0)
    assert shown(gap) == [20, 25, 25, 25]  # 3.0 and 3.5 s show the last frame before the gap (2.5 s)
    assert not out[2].flags.audio_filled


def test_long_video_freeze_is_flagged_as_repeated():
    out = feed(Chunker("s", audio=False), until=8.5, skip=(2.1, 4.6))
    assert shown(out[1]) == [20, 20, 20, 20] and out[1].flags.frames_repeated


def test_forward_jump_beyond_max_fill_rebases_the_clock():
    c = Chunker("s", max_fill=3.0)
    out = feed(c, until=3.0)
    out += feed(c, until=105.0, t0=100.0)
    out += c.flush()
    assert [ch.start for ch in out] == [0.0, 2.0, 4.0, 6.0]  # 3 s + 5 s of media, no 97 s hole
    assert out[1].flags.gap_before and shown(out[1]) == [20, 25, 1000 % 256, 1005 % 256]
    assert c.stats.rebases == 2  # audio and video each absorbed the jump


def test_timestamp_wrap_continues_the_clock():
    c = Chunker("s")
    out = feed(c, until=95446.0, t0=95443.0)  # near the 33-bit 90 kHz wrap
    out += feed(c, until=3.0, t0=0.0)
    out += c.flush()
    assert [ch.start for ch in out] == [0.0, 2.0, 4.0]
    assert sum(len(ch.audio) for ch in out) == 6 * 16000


def test_stalled_audio_does_not_hold_back_video():
    c = Chunker("s", max_skew=2.0)
    out = []
    out += feed(c, until=1.0)
    for i in range(10, 70):  # video continues alone for 6 s
        out += c.push(VideoSample(i / 10, frame(i)))
    assert [ch.start for ch in out] == [0.0, 2.0]
    assert out[0].flags.audio_filled and np.all(out[0].audio[16000:] == 0)


def test_flush_emits_the_partial_last_chunk():
    c = Chunker("s")
    out = feed(c, until=3.0) + c.flush()
    assert len(out) == 2 and out[1].flags.partial
    assert len(out[1].audio) == 16000 and len(out[1].frames) == 2 and out[1].duration == 1.0


def test_reconnect_discontinuity_flags_the_next_chunk_and_skips_the_outage():
    c = Chunker("s")
    out = feed(c, until=3.0)
    out += c.push(Discontinuity(gap=True, wall_gap=4.5))
    out += feed(c, until=2.0, t0=0.0)  # the new connection's clock starts at 0 again
    assert [ch.start for ch in out] == [0.0, 2.0, 8.0]
    assert out[1].flags.audio_filled and not out[1].flags.gap_before
    assert out[2].flags.gap_before and shown(out[2]) == [0, 5, 10, 15]


def test_audio_only_chunker_needs_no_frames():
    c = Chunker("s", video=False)
    out = feed(c, until=4.0) + c.flush()
    assert len(out) == 2 and all(ch.frames is None and ch.flags.video_absent for ch in out)
