"""Alert clips without Ray: the MP4 decoded back with PyAV (duration, frames, audio), the sidecar, and the
folder kept under its byte budget."""

from __future__ import annotations

import json
import os
import time

import av
import numpy as np
import pytest

from pipeline.config import ClipsConfig
from pipeline.serve.clips import ClipJob, ClipWriter, write_mp4

pytestmark = pytest.mark.timeout(60)


def media(chunks: int, h: int = 120, w: int = 160) -> tuple[np.ndarray, np.ndarray]:
    frames = np.zeros((4 * chunks, h, w, 3), np.uint8)
    for i in range(len(frames)):
        frames[i, :, : (i + 1) * w // len(frames)] = (200, 40, 40)  # a red bar that grows
    t = np.arange(32000 * chunks) / 16000
    return frames, (0.4 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_a_clip_decodes_to_its_frames_and_audio_with_the_right_duration(tmp_path):
    frames, audio = media(3)
    seconds = write_mp4(tmp_path / "c.mp4", frames, audio)
    with av.open(str(tmp_path / "c.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264" and c.streams.audio[0].codec_context.name == "aac"
        decoded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        duration = float(c.duration / av.time_base)
    with av.open(str(tmp_path / "c.mp4")) as c:
        sound = np.concatenate([f.to_ndarray()[0] for f in c.decode(audio=0)])
    assert seconds == 6.0 and len(decoded) == 12 and abs(duration - 6.0) < 0.2
    assert decoded[-1].shape == (120, 160, 3) and abs(decoded[5][60, :, 0].astype(int) > 120).sum() in range(70, 90)
    assert abs(len(sound) - 96000) <= 2048
    rms = float(np.sqrt(np.mean(sound[4000:90000] ** 2)))
    assert abs(rms - 0.4 / np.sqrt(2)) < 0.03  # the tone came through


def test_odd_frame_sides_are_cropped_to_even_for_yuv420(tmp_path):
    frames, _ = media(1, h=121, w=161)
    write_mp4(tmp_path / "odd.mp4", frames, None)
    with av.open(str(tmp_path / "odd.mp4")) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (160, 120) and not c.streams.audio


def test_the_writer_adds_the_sidecar_and_reports_the_clip(tmp_path):
    done = []
    writer = ClipWriter(ClipsConfig(dir=str(tmp_path)), on_result=done.append)
    writer.start()
    frames, audio = media(2)
    assert writer.submit(ClipJob("door-1.mp4", frames, audio, {"stream": "door", "question": "Open?", "p_yes": 0.8}))
    writer.close()
    side = json.loads((tmp_path / "door-1.json").read_text())
    assert side == {"stream": "door", "question": "Open?", "p_yes": 0.8, "clip": "door-1.mp4", "seconds": 4.0}
    assert done[0].ok and done[0].bytes == (tmp_path / "door-1.mp4").stat().st_size
    assert writer.path("door-1.mp4") == tmp_path / "door-1.mp4" and writer.path("../x.mp4") is None
    assert not list(tmp_path.glob(".*.part"))


def test_past_max_bytes_the_oldest_clips_and_their_sidecars_go(tmp_path):
    writer = ClipWriter(ClipsConfig(dir=str(tmp_path), max_bytes=1 << 20))
    for i in range(6):
        (tmp_path / f"c{i}.mp4").write_bytes(b"\0" * 300_000)
        (tmp_path / f"c{i}.json").write_text("{}")
        os.utime(tmp_path / f"c{i}.mp4", (time.time() - 100 + i, time.time() - 100 + i))
    assert writer.enforce_budget() == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c3.json", "c3.mp4", "c4.json", "c4.mp4", "c5.json",
                                                          "c5.mp4"]


def test_a_full_queue_skips_the_clip_and_says_so(tmp_path):
    done = []
    writer = ClipWriter(ClipsConfig(dir=str(tmp_path), queue_size=1), on_result=done.append)  # not started
    frames, audio = media(1)
    assert writer.submit(ClipJob("a.mp4", frames, audio)) and not writer.submit(ClipJob("b.mp4", frames, audio))
    assert [(r.name, r.ok, r.error) for r in done] == [("b.mp4", False, "clip queue full: skipped")]
