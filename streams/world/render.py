"""The world's pixels and samples at any media time, from its `Timeline` (nothing is stored).

Video: the background colour filled, then each object on screen drawn (square, circle or triangle, one
lane per object, so objects never overlap). Audio: 16 kHz mono float32 in blocks of `BLOCK_SAMPLES`:
a low noise floor (drawn per block from the seed, so any block can be made alone), beeps (sine with
10 ms fades), the alarm (880 / 660 Hz alternating every 0.25 s) and words spoken by espeak-ng, each word
synthesized once per process and kept in memory.
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np

from ..chunk import AUDIO_RATE
from ..errors import SourceError
from .timeline import LANES, PITCHES, WORD_SECONDS, Sound, Timeline

RGB = {
    "black": (16, 16, 16), "blue": (30, 60, 200), "green": (30, 150, 60), "gray": (128, 128, 128),
    "red": (230, 30, 30), "yellow": (240, 220, 30), "white": (250, 250, 250),
}
BLOCK_SAMPLES = AUDIO_RATE // 2  # 0.5 s
NOISE = 0.01  # noise floor amplitude (std)
BEEP_LEVEL, ALARM_LEVEL, WORD_LEVEL = 0.5, 0.35, 0.6
ALARM_TONES = (880.0, 660.0)
ALARM_PERIOD = 0.25  # seconds per tone
FADE = 0.01  # seconds


def frame(timeline: Timeline, t: float, width: int, height: int) -> np.ndarray:
    """[height, width, 3] uint8 RGB: the screen at media time `t` (seconds)."""
    out = np.empty((height, width, 3), np.uint8)
    out[:] = RGB[timeline.background_at(t)]
    size = max(4, int(min(height / LANES, width / 4) * 0.8))
    for obj in timeline.objects_at(t):
        cx = int(round(obj.x(t) * width))
        cy = int(round((obj.lane + 0.5) * height / LANES))
        x0, y0 = cx - size // 2, cy - size // 2
        ys, xs = np.mgrid[0:size, 0:size]
        if obj.shape == "square":
            mask = np.ones((size, size), bool)
        elif obj.shape == "circle":
            c = (size - 1) / 2
            mask = (xs - c) ** 2 + (ys - c) ** 2 <= (size / 2) ** 2
        else:  # triangle pointing up: the half-width grows from 0 at the top row to size/2 at the bottom
            mask = np.abs(xs - (size - 1) / 2) <= (ys + 1) / 2
        sy, sx = slice(max(y0, 0), min(y0 + size, height)), slice(max(x0, 0), min(x0 + size, width))
        m = mask[sy.start - y0:sy.stop - y0, sx.start - x0:sx.stop - x0]
        out[sy, sx][m] = RGB[obj.colour]
    return out


def audio_block(timeline: Timeline, k: int) -> np.ndarray:
    """[BLOCK_SAMPLES] float32 in [-1, 1]: samples k * BLOCK_SAMPLES ... (k + 1) * BLOCK_SAMPLES - 1."""
    rng = np.random.default_rng([timeline.seed, 3, k])
    out = NOISE * rng.standard_normal(BLOCK_SAMPLES)
    s0 = k * BLOCK_SAMPLES
    for sound in timeline.sounds_between(s0 / AUDIO_RATE, (s0 + BLOCK_SAMPLES) / AUDIO_RATE):
        _add(out, s0, sound)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def _add(out: np.ndarray, s0: int, sound: Sound) -> None:
    a, b = int(round(sound.t * AUDIO_RATE)), int(round(sound.end * AUDIO_RATE))
    lo, hi = max(a, s0), min(b, s0 + len(out))
    if hi <= lo:
        return
    n = np.arange(lo, hi)
    if sound.kind == "word":
        speech = spoken(sound.value)
        n = n[n - a < len(speech)]
        out[n - s0] += WORD_LEVEL * speech[n - a]
        return
    t = n / AUDIO_RATE
    if sound.kind == "beep":
        wave = BEEP_LEVEL * np.sin(2 * np.pi * PITCHES[sound.value] * t)
    else:
        tone = np.where(((t - sound.t) // ALARM_PERIOD) % 2 == 0, *ALARM_TONES)
        wave = ALARM_LEVEL * np.sin(2 * np.pi * tone * t)
    fade = np.clip(np.minimum(n - a, b - n) / (FADE * AUDIO_RATE), 0.0, 1.0)
    out[n - s0] += wave * fade


@functools.cache
def spoken(word: str) -> np.ndarray:
    """[N] float32 at 16 kHz, peak 1, at most WORD_SECONDS: `word` said by espeak-ng (once per process)."""
    import av

    exe = shutil.which("espeak-ng")
    if exe is None:
        raise SourceError("world: espeak-ng is not installed (it speaks the world's words)")
    wav = subprocess.run([exe, "--stdout", "-s", "190", word], capture_output=True, check=True, timeout=30).stdout
    resampler = av.AudioResampler(format="flt", layout="mono", rate=AUDIO_RATE)
    pieces = []
    with av.open(io.BytesIO(wav), format="wav") as container:
        for f in container.decode(audio=0):
            pieces += [o.to_ndarray().reshape(-1) for o in resampler.resample(f)]
    pieces += [o.to_ndarray().reshape(-1) for o in resampler.resample(None)]
    x = np.concatenate(pieces).astype(np.float32)
    loud = np.nonzero(np.abs(x) > 0.02 * np.abs(x).max())[0]
    x = x[loud[0]:loud[-1] + 1][: int(WORD_SECONDS * AUDIO_RATE)]
    fade = np.minimum(1.0, np.arange(len(x))[::-1] / (FADE * AUDIO_RATE))  # no click where a long word is cut
    return (x / np.abs(x).max() * fade).astype(np.float32)
