"""Property-based test of the Chunker over generated timestamp sequences: glitches, clock restarts, wraps, gaps.

Faults are isolated (each starts at least 2 s after the previous one ended): two faults closer than that, such
as a gap ending in a clock jump of about its own length, can be told apart for one modality and not the
other, and are outside what the Chunker promises.

Every input sample carries its true identity: frame `i` (true time i / fps) has the number i in its first
pixel, and the audio sample with true index n holds the value n + 1 (0 is inserted silence). Only the
*timestamps* are perturbed, so the checks below compare what a chunk holds with the true input timeline,
independently of how the Chunker works:

- every chunk but a final partial one has 4 frames and 32,000 samples;
- a chunk with no flag (audio_filled, frames_repeated, gap_before) holds real audio that is one contiguous
  run of the input, and each of its frames was captured at most HOLD seconds before (and never after) the
  audio at its slot;
- the input ends with 6 clean seconds, and the last two chunks completed while the input was still coming
  carry no flag (so no perturbation leaves the modalities out of step for good; the chunks `flush` completes
  at the end may be filled to a whole chunk, since jitter moves the end by a few samples);
- the number of chunks stays within what the input and the filled gaps can explain.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from streams import AudioSample, Chunker, VideoSample

SECONDS = 16.0  # true input length
PERTURB_UNTIL = 7.0  # perturbations start before this (true time): with a drop of up to 3 s, 10-16 s is clean
HOLD = 2.0  # seconds a frame may trail its slot's audio in an unflagged chunk (a frame held 1 s, plus a glitch)
TOL = 0.1  # seconds a frame may lead its slot's audio (timestamp jitter, slot rounding)


@dataclass(frozen=True)
class Perturbation:
    kind: str  # "glitch_video" | "glitch_audio" | "restart" | "drop"
    at: float  # true time
    amount: float  # glitch: stamp offset; restart: clock jump; drop: seconds of input lost

    @property
    def end(self) -> float:
        return self.at + (self.amount if self.kind == "drop" else 0.0)


@dataclass(frozen=True)
class Plan:
    fps: float
    block: int  # audio samples per block (16 kHz)
    t0: float  # producer clock at true time 0
    perturbations: tuple[Perturbation, ...]
    jitter: tuple[float, ...]  # per-event timestamp jitter, cycled


def glitch_offsets() -> st.SearchStrategy[float]:
    return st.one_of(st.floats(-50.0, -0.05), st.floats(0.05, 50.0))


def restart_jumps() -> st.SearchStrategy[float]:
    """Clock restarts and wraps: back by more than max_back, or forward by more than a jitter."""
    return st.one_of(st.floats(-1e5, -1.5), st.floats(0.6, 1e5), st.just(-95443.7))


@st.composite
def plans(draw) -> Plan:
    n = draw(st.integers(0, 3))
    starts = sorted(draw(st.lists(st.floats(1.0, PERTURB_UNTIL), min_size=n, max_size=n)))
    perturbations = []
    for at in starts:
        if perturbations and at < perturbations[-1].end + 2.0:  # isolated: one fault at a time
            continue
        kind = draw(st.sampled_from(["glitch_video", "glitch_audio", "restart", "drop"]))
        amount = {
            "glitch_video": glitch_offsets,
            "glitch_audio": glitch_offsets,
            "restart": restart_jumps,
            "drop": lambda: st.floats(0.2, 3.0),
        }[kind]()
        perturbations.append(Perturbation(kind, at, draw(amount)))
    return Plan(
        fps=draw(st.sampled_from([5.0, 10.0, 25.0, 30.0])),
        block=draw(st.sampled_from([160, 400, 1024, 1600, 4000])),
        t0=draw(st.sampled_from([0.0, 1000.0, 95_440.0, 1.7e9])),
        perturbations=tuple(perturbations),
        jitter=tuple(draw(st.lists(st.floats(-0.01, 0.01), min_size=1, max_size=7))),
    )


def glitched_index(plan: Plan, p: Perturbation, kind: str) -> int:
    """The one frame or audio block a glitch mis-stamps: the first at or after its time."""
    per_second = plan.fps if kind == "video" else 16000 / plan.block
    return math.ceil(p.at * per_second - 1e-9)


def stamp(plan: Plan, true_t: float, kind: str, i: int) -> float | None:
    """The producer's timestamp for a sample at `true_t`, or None if the sample is lost."""
    t = plan.t0 + true_t
    for p in plan.perturbations:
        if p.kind == "drop" and p.at <= true_t < p.at + p.amount:
            return None
        if p.kind == "restart" and true_t >= p.at:
            t += p.amount
    for p in plan.perturbations:
        if p.kind == f"glitch_{kind}" and i == glitched_index(plan, p, kind):
            t += p.amount
    return t + plan.jitter[i % len(plan.jitter)]


def frame_image(i: int) -> np.ndarray:
    img = np.zeros((2, 2, 3), np.uint8)
    img[0, 0] = (i & 255, (i >> 8) & 255, i >> 16)
    return img


def frame_number(img: np.ndarray) -> int:
    r, g, b = (int(v) for v in img[0, 0])
    return r | g << 8 | b << 16


def events(plan: Plan) -> list:
    out = []
    for i in range(int(SECONDS * plan.fps)):
        t = stamp(plan, i / plan.fps, "video", i)
        if t is not None:
            out.append((i / plan.fps, 1, VideoSample(t, frame_image(i))))
    for j, n in enumerate(range(0, int(SECONDS * 16000), plan.block)):
        t = stamp(plan, n / 16000, "audio", j)
        if t is not None:
            out.append((n / 16000, 0, AudioSample(t, np.arange(n + 1, n + plan.block + 1, dtype=np.float32))))
    return [e for _, _, e in sorted(out, key=lambda x: (x[0], x[1]))]


def flagged(chunk) -> bool:
    return chunk.flags.audio_filled or chunk.flags.frames_repeated or chunk.flags.gap_before


def check_unflagged(chunk, fps: float) -> None:
    audio = chunk.audio.astype(np.int64)
    assert audio.min() >= 1, f"chunk {chunk.index}: silence without audio_filled"
    assert np.all(np.diff(audio) == 1), f"chunk {chunk.index}: audio not one contiguous run of the input"
    for k, frame in enumerate(chunk.frames):
        f = frame_number(frame) / fps
        a = (audio[k * 8000] - 1) / 16000
        assert a - HOLD <= f <= a + TOL, f"chunk {chunk.index} slot {k}: frame at {f:.3f} s for audio at {a:.3f} s"


@settings(max_examples=300)
@given(plans())
def test_every_chunk_is_whole_and_true_to_its_input_or_flagged(plan):
    c = Chunker("s")
    live = []
    for e in events(plan):
        live += c.push(e)
    chunks = live + c.flush()
    full = [ch for ch in chunks if not ch.flags.partial]
    assert not any(ch.flags.partial for ch in chunks[:-1]), "only the last chunk may be partial"
    for ch in full:
        assert len(ch.audio) == 32000 and ch.frames.shape[0] == 4
        if not flagged(ch):
            check_unflagged(ch, plan.fps)
    assert len(live) >= 2 and not flagged(live[-1]) and not flagged(live[-2]), "the stream did not recover"
    assert len(chunks) <= (SECONDS + 10.0 * len(plan.perturbations)) / 2 + 2
