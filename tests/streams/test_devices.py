"""Webcam / microphone through the system ffmpeg binary (lavfi stands in for the hardware), and combined sources."""

from __future__ import annotations

import numpy as np
import pytest
import streams_media as media
from streams_checks import audio_segments, frame_times

from streams import SourceError, open_source, read_chunks


def test_missing_webcam_device_is_a_one_line_source_error():
    with pytest.raises(SourceError, match="/dev/video77: no such device") as e:
        open_source({"type": "webcam", "device": "/dev/video77"})
    assert "\n" not in str(e.value)


def test_missing_ffmpeg_binary_is_a_one_line_source_error():
    with pytest.raises(SourceError, match="not found on PATH"):
        open_source({"type": "microphone", "ffmpeg": "ffmpeg-that-does-not-exist"})


def test_missing_microphone_is_a_one_line_source_error():
    with pytest.raises(SourceError, match="microphone") as e:
        open_source({"type": "microphone", "backend": "alsa", "device": "hw:77,0"})
    assert "\n" not in str(e.value)


def test_webcam_path_delivers_2fps_frames_capped_in_size():
    src = open_source(
        {"type": "webcam", "input_format": "lavfi", "device": "testsrc=size=320x240:rate=30", "max_width": 160}
    )
    try:
        chunk = src.get(timeout=20)
    finally:
        src.close()
    assert chunk.frames.shape == (4, 120, 160, 3) and chunk.audio is None
    assert chunk.frames[1].mean() > 0 and not np.array_equal(chunk.frames[0], chunk.frames[3])  # testsrc moves


def test_combined_webcam_and_microphone_make_one_stream():
    src = open_source(
        {
            # lavfi's `realtime` filter paces the fake devices like hardware
            "type": "combined",
            "name": "desk",
            "video": {"type": "webcam", "input_format": "lavfi", "device": "testsrc=size=64x48:rate=10,realtime"},
            "audio": {
                "type": "microphone",
                "backend": "lavfi",
                "device": "sine=frequency=1000:sample_rate=44100,arealtime",
            },
        }
    )
    try:
        chunk = src.get(timeout=20)
    finally:
        src.close()
    assert chunk.stream == "desk" and chunk.frames.shape == (4, 48, 64, 3) and chunk.audio.shape == (32000,)
    spectrum = abs(np.fft.rfft(chunk.audio[16000:]))
    assert np.argmax(spectrum) * 16000 / 16000 == pytest.approx(1000, abs=2)


def test_combined_video_file_and_audio_file_align_on_media_time(clip_dir):
    v = media.make_clip(clip_dir / "cv.mp4", seconds=4.0, audio=False)
    a = media.make_clip(clip_dir / "ca.wav", seconds=4.0, video=False, acodec="pcm_s16le", audio_rate=22050)
    chunks = list(
        read_chunks(
            {"type": "combined", "video": {"type": "file", "path": str(v)}, "audio": {"type": "file", "path": str(a)}}
        )
    )
    assert len(chunks) == 2
    for c in chunks:
        assert frame_times(c) == pytest.approx([c.start + i / 2 for i in range(4)])
        assert audio_segments(c) == [int(c.start * 2) + i for i in range(4)]
