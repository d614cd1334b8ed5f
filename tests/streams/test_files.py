"""File sources: every chunk holds the frames and tones of its own time, whatever the container."""

from __future__ import annotations

import numpy as np
import pytest
import streams_media as media
from streams_checks import audio_segments, expected_segments, frame_times

from streams import SourceError, read_chunks


def _chunks(path, **kw):
    return list(read_chunks({"type": "file", "path": str(path), **kw}))


def test_mp4_chunks_hold_the_frames_and_tones_of_their_time(av_clip):
    chunks = _chunks(av_clip)
    assert [c.index for c in chunks] == [0, 1, 2]
    for c in chunks:
        assert c.frames.shape == (4, 96, 160, 3) and c.frames.dtype == np.uint8
        assert c.audio.shape == (32000,) and c.audio.dtype == np.float32
        assert frame_times(c) == pytest.approx([c.start + i / 2 for i in range(4)])
        assert audio_segments(c) == [s % 56 for s in expected_segments(c.start, 4)]
        assert c.flags == type(c.flags)()  # nothing filled, repeated or missing


@pytest.mark.parametrize(
    ("suffix", "vcodec", "acodec"),
    [("mkv", "libx264", "aac"), ("webm", "libvpx", "libopus"), ("mov", "libx264", "aac")],
)
def test_other_containers_decode_aligned(clip_dir, suffix, vcodec, acodec):
    path = media.make_clip(clip_dir / f"c.{suffix}", seconds=4.0, vcodec=vcodec, acodec=acodec, audio_rate=48000)
    chunks = _chunks(path)
    assert len(chunks) == 2
    for c in chunks:
        assert frame_times(c) == pytest.approx([c.start + i / 2 for i in range(4)])
        assert audio_segments(c) == expected_segments(c.start, 4)


def test_audio_only_file_has_no_frames(clip_dir):
    path = media.make_clip(clip_dir / "audio.m4a", seconds=5.0, video=False)
    chunks = _chunks(path)
    assert [c.audio.shape[0] for c in chunks[:2]] == [32000, 32000]
    assert 16000 <= chunks[2].audio.shape[0] <= 16000 + 400  # AAC pads its last frame (1024 samples at 44.1 kHz)
    assert all(c.frames is None and c.flags.video_absent for c in chunks)
    assert chunks[-1].flags.partial and not chunks[0].flags.partial
    assert audio_segments(chunks[1]) == expected_segments(2.0, 4)


def test_video_only_file_has_no_audio(clip_dir):
    path = media.make_clip(clip_dir / "video.mp4", seconds=5.0, audio=False)
    chunks = _chunks(path)
    assert [len(c.frames) for c in chunks] == [4, 4, 2]
    assert all(c.audio is None and c.flags.audio_absent for c in chunks)
    assert frame_times(chunks[2]) == pytest.approx([4.0, 4.5])
    assert chunks[-1].flags.partial


def test_audio_starting_late_is_filled_with_silence_and_stays_aligned(clip_dir):
    path = media.make_clip(clip_dir / "offset.mp4", seconds=6.0, audio_offset=0.75)
    first, second = _chunks(path)[:2]
    assert first.flags.audio_filled and not second.flags.audio_filled
    lead = first.audio[: int(0.7 * 16000)]
    assert np.abs(lead).max() < 0.05  # silence before the audio starts
    # the tone heard at 1.0-1.5 s is segment 2 (time 1.0 s), as in the file's own timeline
    assert audio_segments(first)[2:] == [2, 3]
    assert frame_times(first) == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert audio_segments(second) == expected_segments(2.0, 4)


def test_video_starting_late_repeats_its_first_frame(clip_dir):
    path = media.make_clip(
        clip_dir / "voffset.mp4", seconds=6.0, video_offset=0.8, frame_times=[i / 10 for i in range(52)]
    )
    first = _chunks(path)[0]
    assert first.flags.frames_repeated
    # slots at 0 and 0.5 s show the first frame (number 0), slot 1.0 s shows the frame shown at 1.0 s (made at 0.2 s)
    assert frame_times(first) == pytest.approx([0.0, 0.0, 0.2, 0.7])


def test_variable_frame_rate_is_sampled_by_timestamp(clip_dir):
    # irregular frame times: bursts and pauses; each frame's bars carry round(t * 10)
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.03, 0.45, size=40))
    times = [0.0] + [float(round(t, 3)) for t in times if t < 6.0]
    path = media.make_clip(clip_dir / "vfr.mkv", seconds=6.0, frame_times=times, audio=False)
    chunks = _chunks(path)
    for c in chunks:
        for i, shown in enumerate(frame_times(c)):
            slot = c.start + i / 2
            expected = max(t for t in times if t <= slot + 1e-6)  # the frame on screen at the slot's time
            assert shown == pytest.approx(round(expected * 10) / 10), (c.index, i)


def test_truncated_file_yields_the_chunks_before_the_cut(clip_dir, av_clip):
    data = av_clip.read_bytes()
    cut = clip_dir / "truncated.mkv"
    full = media.make_clip(clip_dir / "full.mkv", seconds=6.0)
    cut.write_bytes(full.read_bytes()[: len(full.read_bytes()) * 2 // 3])
    chunks = _chunks(cut)
    assert 1 <= len(chunks) <= 3
    assert frame_times(chunks[0]) == pytest.approx([0.0, 0.5, 1.0, 1.5])
    assert audio_segments(chunks[0]) == [0, 1, 2, 3]
    assert len(data) > 0


def test_corrupt_bytes_in_the_middle_are_skipped(clip_dir):
    full = media.make_clip(clip_dir / "corrupt.mkv", seconds=6.0)
    data = bytearray(full.read_bytes())
    rng = np.random.default_rng(1)
    mid = len(data) // 2
    data[mid : mid + 3000] = rng.integers(0, 256, 3000, dtype=np.uint8).tobytes()
    bad = clip_dir / "corrupt2.mkv"
    bad.write_bytes(bytes(data))
    chunks = _chunks(bad)
    assert len(chunks) >= 2
    assert frame_times(chunks[0]) == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_garbage_file_is_a_one_line_source_error(tmp_path):
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.default_rng(2).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(SourceError) as e:
        _chunks(bad)
    assert "\n" not in str(e.value) and "garbage.mp4" in str(e.value)


def test_missing_file_is_a_one_line_source_error(tmp_path):
    with pytest.raises(SourceError, match="not found") as e:
        _chunks(tmp_path / "nope.mp4")
    assert "\n" not in str(e.value)


def test_max_width_caps_the_decoded_size_keeping_aspect(av_clip):
    c = _chunks(av_clip, max_width=80)[0]
    assert c.frames.shape[1:] == (48, 80, 3)
    assert frame_times(c) == pytest.approx([0.0, 0.5, 1.0, 1.5])


def test_loop_continues_the_media_clock(av_clip):
    from streams import open_source

    src = open_source({"type": "file", "path": str(av_clip), "loop": True})
    try:
        chunks = [src.get(timeout=10) for _ in range(5)]
    finally:
        src.close()
    assert [c.start for c in chunks] == [0.0, 2.0, 4.0, 6.0, 8.0]
    assert frame_times(chunks[3]) == pytest.approx([0.0, 0.5, 1.0, 1.5])  # second pass starts the clip again
    assert audio_segments(chunks[4]) == [4, 5, 6, 7]


def test_realtime_file_is_paced_by_timestamps(clip_dir):
    import time

    path = media.make_clip(clip_dir / "paced.mp4", seconds=2.0, width=64, height=48)
    t0 = time.monotonic()
    chunks = _chunks(path, realtime=True, speed=2.0)
    elapsed = time.monotonic() - t0
    assert chunks[0].duration == 2.0
    assert all(c.flags.partial and c.duration < 0.05 for c in chunks[1:])  # at most AAC's padding left over
    assert elapsed >= 0.9  # 2 s of media at twice real time takes at least 1 s (less a frame); no upper bound:
    # a loaded machine may take longer, and that is not what this tests
