"""One out-of-line timestamp in one modality must not shift the alignment of the chunks after it.

Input: 10 fps video whose frame `n` is filled with the value n, and 100 ms audio blocks whose samples all
equal the block's true start time, so the expected content of every chunk is known without the Chunker.
"""

from __future__ import annotations

import numpy as np
import pytest

from streams import AudioSample, Chunker, VideoSample

BLOCK = 1600  # samples per 100 ms audio block


def events(until: float, *, video_glitch: dict[int, float] | None = None, audio_glitch: dict[int, float] | None = None):
    """Video frames and audio blocks for [0, until) in time order; `*_glitch` maps index -> stamp offset (s)."""
    out = []
    for i in range(int(round(until * 10))):
        t = i / 10
        vt = t + (video_glitch or {}).get(i, 0.0)
        at = t + (audio_glitch or {}).get(i, 0.0)
        out.append(VideoSample(vt, np.full((2, 2, 3), i, np.uint8)))
        out.append(AudioSample(at, np.full(BLOCK, t, np.float32)))
    return out


def run(evts) -> list:
    c = Chunker("s")
    chunks = []
    for e in evts:
        chunks += c.push(e)
    return chunks


def shown(chunk) -> list[int]:
    return [int(f[0, 0, 0]) for f in chunk.frames]


def block_times(chunk) -> list[float]:
    """The value of each 100 ms block of the chunk's audio (its true start time; 0 for silence)."""
    return [float(chunk.audio[k * BLOCK]) for k in range(20)]


def expected_blocks(start: float) -> list[float]:
    return [float(np.float32(start + k / 10)) for k in range(20)]


@pytest.mark.parametrize("offset", [5.0, -5.0, 3.0, 9.0])
def test_one_video_frame_stamped_off_does_not_shift_later_chunks(offset):
    chunks = run(events(10.5, video_glitch={30: offset}))
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert shown(chunks[1]) == [20, 25, 29, 35]  # the mis-stamped frame 30 is dropped; 2.9 s holds
    for c in chunks[2:]:
        assert shown(c) == [int(c.start * 10) + 5 * k for k in range(4)]
    for c in chunks:
        assert block_times(c) == expected_blocks(c.start)
        assert not c.flags.audio_filled


@pytest.mark.parametrize("offset", [5.0, -5.0, 3.0, 9.0])
def test_one_audio_block_stamped_off_does_not_shift_later_chunks(offset):
    chunks = run(events(10.5, audio_glitch={30: offset}))
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0, 6.0, 8.0]
    for c in chunks:
        assert block_times(c) == expected_blocks(c.start)  # the mis-stamped block sits where it belongs
        assert shown(c) == [int(c.start * 10) + 5 * k for k in range(4)]
        assert not c.flags.audio_filled and not c.flags.frames_repeated
    assert [c.flags.gap_before for c in chunks] == [False, True, False, False, False]


@pytest.mark.parametrize("modality", ["video", "audio"])
def test_a_30_second_glitch_is_still_absorbed(modality):
    glitch = {"video_glitch" if modality == "video" else "audio_glitch": {30: 30.0}}
    chunks = run(events(10.5, **glitch))
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0, 6.0, 8.0]
    for c in chunks[2:]:
        assert block_times(c) == expected_blocks(c.start)
        assert shown(c) == [int(c.start * 10) + 5 * k for k in range(4)]


def test_a_real_five_second_gap_is_still_filled_and_flagged():
    evts = [e for e in events(12.5) if not 3.0 <= e.t < 8.0]
    chunks = run(evts)
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    assert chunks[1].flags.audio_filled and block_times(chunks[1])[:10] == expected_blocks(2.0)[:10]
    assert block_times(chunks[2]) == [0.0] * 20 and shown(chunks[2]) == [29] * 4
    assert block_times(chunks[4]) == expected_blocks(8.0) and shown(chunks[4]) == [80, 85, 90, 95]


def interleave(video: list[VideoSample], audio: list[AudioSample]) -> list:
    out = []
    for v, a in zip(video, audio, strict=False):
        out += [a, v]
    return out


def audio_blocks(until: float) -> list[AudioSample]:
    return [AudioSample(i / 10, np.full(BLOCK, i / 10, np.float32)) for i in range(int(round(until * 10)))]


def test_a_first_frame_far_after_the_audio_start_starts_with_the_audio():
    video = [VideoSample(600.0 + i / 10, np.full((2, 2, 3), i, np.uint8)) for i in range(45)]
    c = Chunker("s")
    chunks = [ch for e in interleave(video, audio_blocks(4.5)) for ch in c.push(e)]
    assert [ch.start for ch in chunks] == [0.0, 2.0]  # not 300 chunks of one frozen frame
    assert shown(chunks[0]) == [0, 5, 10, 15] and shown(chunks[1]) == [20, 25, 30, 35]
    assert chunks[0].flags.gap_before and c.stats.rebases == 1


def test_a_stray_first_frame_is_dropped_once_the_next_frame_shows_the_clock():
    video = [VideoSample(600.0, np.full((2, 2, 3), 99, np.uint8))]
    video += [VideoSample(i / 10, np.full((2, 2, 3), i, np.uint8)) for i in range(45)]
    c = Chunker("s")
    chunks = [ch for e in interleave(video, audio_blocks(4.6)) for ch in c.push(e)]
    assert [ch.start for ch in chunks] == [0.0, 2.0]
    assert shown(chunks[0]) == [0, 5, 10, 15] and c.stats.glitches == 1


@pytest.mark.timeout(10)
def test_timestamps_that_are_not_finite_or_huge_are_refused_and_counted():
    frame, block = np.zeros((2, 2, 3), np.uint8), np.zeros(BLOCK, np.float32)
    bad = [VideoSample(float("nan"), frame), AudioSample(float("inf"), block),
           VideoSample(-1e308, frame), AudioSample(1e300, block)]
    evts = events(4.5)
    c = Chunker("s")
    chunks = [ch for e in bad[:2] + evts[:20] + bad[2:] + evts[20:] for ch in c.push(e)]
    assert [ch.start for ch in chunks] == [0.0, 2.0]
    for ch in chunks:
        assert block_times(ch) == expected_blocks(ch.start) and shown(ch) == [
            int(ch.start * 10) + 5 * k for k in range(4)
        ]
    assert c.stats.bad_times == 4


def test_a_single_modality_that_never_advances_does_not_grow_the_pending_list():
    c = Chunker("s")
    for _ in range(2000):
        c.push(VideoSample(0.0, np.zeros((2, 2, 3), np.uint8)))
    assert len(c._pending) < 1000


def test_a_clock_jump_at_the_fill_limit_is_taken_the_same_way_by_audio_and_video():
    # 5 fps video and 100 ms audio; from true time 1.0 on the producer's clock reads 10 s ahead, exactly the
    # largest jump that is filled: audio measures it from its end, video must too, or they part for good
    evts = []
    for i in range(int(8 * 5)):
        t = i / 5
        evts.append((t, 1, VideoSample(t + (10.0 if t >= 1.0 else 0.0), np.full((2, 2, 3), i, np.uint8))))
    for j in range(80):
        t = j / 10
        evts.append((t, 0, AudioSample(t + (10.0 if t >= 1.0 else 0.0), np.full(BLOCK, t, np.float32))))
    chunks = run([e for _, _, e in sorted(evts, key=lambda x: (x[0], x[1]))])
    assert [c.start for c in chunks][-2:] == [14.0, 16.0]
    for c in chunks[-2:]:
        for k, frame in enumerate(c.frames):
            audio_t = float(c.audio[k * 8000])
            assert audio_t - 0.2 <= int(frame[0, 0, 0]) / 5 <= audio_t + 1e-6


@pytest.mark.parametrize("offset", [0.5, 0.3, -0.5])
def test_an_audio_block_stamped_off_by_less_than_a_gap_is_placed_where_it_belongs(offset):
    chunks = run(events(6.5, audio_glitch={15: offset}))
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0]
    for c in chunks:
        assert block_times(c) == expected_blocks(c.start) and not c.flags.audio_filled
