"""The synthetic task's media: 4-second clips of coloured screens with noise, two loud bursts and one beep
whose pitch is the answer, written as real mp4 files (H.264 + AAC) with a JSONL of their samples."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from omnisift.data import Sample
from omnisift.ratios import Ratios
from omnisift.token_layout import AUDIO_TOKENS_PER_SECOND
from streams.chunk import AUDIO_RATE
from streams.mux import mux_audio

PITCHES = (300.0, 600.0, 1200.0, 2400.0)
NAMES = ("low", "medium", "high", "very high")
QUESTION = "What is the pitch of the beep?"
CLIP_SECONDS = 4
SIZE = 56
FPS = 4
BEEP_SECONDS = 0.08  # 2 audio tokens (25 per second)
BURST_SECONDS = 0.08  # distractors: loud noise bursts as short as the beep
N_BURSTS = 2
# The audio track ends one AAC frame early: the encoder's padding would otherwise make the decoder
# emit a third, 32 ms chunk after the two 2-second ones.
AUDIO_SAMPLES = CLIP_SECONDS * AUDIO_RATE - 1024
COLOURS = np.array([(220, 40, 40), (40, 200, 40), (40, 40, 220), (230, 220, 40), (240, 240, 240), (20, 20, 20)])
RATIOS = Ratios(rho_video=0.5, rho_audio=0.8)


@dataclass(frozen=True)
class ClipSpec:
    pitch: int  # index into PITCHES
    beep_start: float  # seconds
    colours: tuple[int, ...]  # per second
    bursts: tuple[float, ...]  # noise burst start times


def random_spec(rng: np.random.Generator) -> ClipSpec:
    latest = AUDIO_SAMPLES / AUDIO_RATE - BEEP_SECONDS - 0.1
    beep = float(rng.uniform(0.1, latest))
    bursts = []
    while len(bursts) < N_BURSTS:  # distractors never overlap the beep
        t = float(rng.uniform(0.1, latest))
        if abs(t - beep) > BEEP_SECONDS + BURST_SECONDS:
            bursts.append(t)
    bursts = tuple(bursts)
    return ClipSpec(int(rng.integers(len(PITCHES))), beep, tuple(int(c) for c in rng.integers(len(COLOURS),
                                                                                               size=CLIP_SECONDS)),
                    bursts)


def clip_audio(spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """[AUDIO_SAMPLES] float32: noise floor, short loud noise bursts, one beep."""
    audio = 0.01 * rng.standard_normal(AUDIO_SAMPLES)
    for t in spec.bursts:
        s, m = int(t * AUDIO_RATE), int(BURST_SECONDS * AUDIO_RATE)
        audio[s:s + m] += 0.3 * rng.standard_normal(len(audio[s:s + m]))
    s, m = int(spec.beep_start * AUDIO_RATE), int(BEEP_SECONDS * AUDIO_RATE)
    tt = np.arange(m) / AUDIO_RATE
    audio[s:s + m] += 0.8 * np.sin(2 * np.pi * PITCHES[spec.pitch] * tt) * np.hanning(m) ** 0.25
    return np.clip(audio, -1, 1).astype(np.float32)


def write_clip(path: Path, spec: ClipSpec, seed: int) -> Path:
    """An mp4 (H.264 + AAC) of the clip."""
    rng = np.random.default_rng(seed)
    audio = clip_audio(spec, rng)
    with av.open(str(path), "w") as container:
        vs = container.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = SIZE, SIZE, "yuv420p"
        aus = container.add_stream("aac", rate=AUDIO_RATE, layout="mono")
        for i in range(CLIP_SECONDS * FPS):
            frame = np.empty((SIZE, SIZE, 3), np.uint8)
            frame[:] = COLOURS[spec.colours[i // FPS]]
            for packet in vs.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in vs.encode():
            container.mux(packet)
        mux_audio(container, aus, audio)
    return path


def make_dataset(folder: Path, n: int, seed: int) -> list[Sample]:
    """Write `n` clips and their samples (also as `data.jsonl`, the training JSONL format)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    samples, lines = [], []
    for i in range(n):
        spec = random_spec(rng)
        path = folder / f"clip-{i:04d}.mp4"
        if not path.exists():
            write_clip(path, spec, seed * 100_003 + i)
        options = tuple(f"{name} ({int(p)} Hz)" for name, p in zip(NAMES, PITCHES, strict=True))
        sample = Sample(f"clip-{i:04d}", path, QUESTION, "ABCD"[spec.pitch], options,
                        meta={"beep_start": spec.beep_start})
        samples.append(sample)
        lines.append(json.dumps({"id": sample.id, "media": path.name, "question": QUESTION,
                                 "options": list(options), "answer": sample.answer, "beep_start": spec.beep_start}))
    (folder / "data.jsonl").write_text("\n".join(lines) + "\n")
    return samples


def beep_tokens(sample: Sample) -> tuple[float, float]:
    """The beep's span in audio-token units (25 per second)."""
    b0 = sample.meta["beep_start"] * AUDIO_TOKENS_PER_SECOND
    return b0, b0 + BEEP_SECONDS * AUDIO_TOKENS_PER_SECOND
