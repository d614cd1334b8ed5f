"""The one chunking path every source goes through: timestamped samples in, aligned `AVChunk`s out.

Clock. A stream has one media clock, in seconds, starting at 0 at the stream origin (the earliest first
timestamp of the expected modalities, or an origin the producer states, e.g. 0 for a file). Chunk `k` of a
segment covers `[base + 2k, base + 2k + 2)`. Audio is placed by sample index (`round(t * 16000)`); video is
sampled at 2 fps *by timestamp*: slot `s` (time `s / 2`) shows the last frame whose timestamp is `<= s / 2`
(sample-and-hold, so variable frame rate and any input rate work).

Faults, per modality:
- jitter: audio timestamps within `jitter` seconds of the expected position are treated as continuous;
- gaps: a forward jump up to `max_fill` seconds is filled (silence / the last frame repeated) and flagged;
- overlaps: audio behind the expected position by less than `max_back` seconds is trimmed; late video frames
  are dropped;
- jumps and wraps: a forward jump beyond `max_fill` or a backward jump beyond `max_back` (from where the
  modality's next sample was expected; video going back, from its last frame) re-bases that modality's clock
  so it continues where it was, and flags `gap_before`;
- glitches: a sample that jumps (audio: more than `jitter` either way; video: forward more than
  max(`gap_seconds`, 1 s) or back more than `max_back`; a first frame more than `max_fill` after the segment
  start) is held until the next sample of its modality decides: if that one follows the held sample where it
  is stamped rather than where the modality expected it, the jump was real and is handled as above; otherwise
  the held sample was one mis-stamped sample (`stats.glitches`): a glitched audio block is placed where the
  stream expected it (its chunk flagged `gap_before`) and a glitched frame is dropped, so one bad timestamp
  never moves the alignment of later chunks. A held sample that nothing follows (end of stream, a
  `Discontinuity`) counts as a glitch. Two faults within about 2 s of each other (a gap that ends in a clock
  jump of about its own length) can still be read differently by audio and video;
- timestamps that are not finite or not within `MAX_ABS_T` seconds are refused (`stats.bad_times`);
- one clock: a jump is taken the same way by both modalities even near a threshold only one of them crosses:
  audio re-bases for a jump video re-based for, video takes audio's re-based clock exactly, and a jump the
  other modality filled is filled rather than re-based;
- stalls: when one modality runs more than `max_skew` seconds past a chunk's end while the other has not
  reached it, the lagging one is filled up to the chunk end and flagged, so a dead microphone does not stop
  video;
- a start offset between audio and video is filled at the start (silence / first frame repeated), flagged;
- `Discontinuity` events (reconnects, loops) start a new segment (see `streams.events`).
`flush()` at end of stream completes what it can and emits the last partial chunk (`flags.partial`).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .chunk import AUDIO_RATE, CHUNK_SECONDS, FRAMES_PER_CHUNK, SAMPLES_PER_CHUNK, VIDEO_FPS, AVChunk, ChunkFlags
from .events import AudioSample, Discontinuity, Event, VideoSample

SAMPLES_PER_SLOT = int(AUDIO_RATE / VIDEO_FPS)  # 8000
MIN_PARTIAL = 0.02  # seconds: a final tail shorter than this is dropped
EPS = 1e-3  # seconds: a frame stamped this little after a slot still counts for it (float rounding)
MAX_ABS_T = 1e10  # seconds: larger timestamps are refused (epoch seconds fit; 1e10 * 16000 is exact in a float)
SAME_JUMP = 1.0  # seconds: a jump that lands this close to where the other modality's clock puts it is the same jump
MAX_PENDING = 512  # events held before the origin is known; then the segment starts with what has come


@dataclass
class ChunkerStats:
    late_frames: int = 0  # video frames older than the last one, dropped
    trimmed_samples: int = 0  # overlapping audio samples dropped
    filled_samples: int = 0  # silence samples inserted
    repeated_slots: int = 0  # video slots filled with a repeated frame
    rebases: int = 0  # clock jumps/wraps absorbed
    glitches: int = 0  # single mis-stamped samples: audio placed where expected, frames dropped
    bad_times: int = 0  # events refused for a timestamp that is not finite or beyond MAX_ABS_T


@dataclass
class _Slot:
    frame: VideoSample | None
    repeated: bool


class Chunker:
    """Cuts timestamped audio and video into aligned 2-second `AVChunk`s; see the module docstring."""

    def __init__(
        self,
        stream: str,
        *,
        video: bool = True,
        audio: bool = True,
        origin: float | None = None,
        jitter: float = 0.04,
        max_fill: float = 10.0,
        max_back: float = 1.0,
        max_skew: float = 2.0,
        gap_seconds: float = 0.5,
        clock=time.time,
    ) -> None:
        if not (video or audio):
            raise ValueError("a stream needs video or audio")
        self.stream = stream
        self.video, self.audio = video, audio
        self.jitter, self.max_fill, self.max_back = jitter, max_fill, max_back
        self.max_skew, self.gap_seconds = max_skew, gap_seconds
        self.stats = ChunkerStats()
        self._clock = clock
        self._index = 0
        self._cstart = 0  # sample index (16 kHz) of the start of the chunk being built
        # audio
        self._a_pos = 0  # sample index of the next audio sample
        self._a_pieces: list[tuple[np.ndarray, bool]] = []  # samples from _cstart on, (data, filled)
        # video
        self._v_next = 0  # next slot index to assign (slot time = slot / 2)
        self._slots: dict[int, _Slot] = {}
        self._v_last: VideoSample | None = None  # last frame, t on the stream clock
        self._v_interval = 1.0 / VIDEO_FPS
        # segment / clock mapping
        self._seg_base = 0.0
        self._seg_origin = origin  # producer-stated origin of the first segment
        self._offset: dict[str, float] | None = None  # stream_t = t + offset[m]
        self._pending: list[Event] = []
        self._held: dict[str, VideoSample | AudioSample] = {}  # a sample that jumped, until the next one decides
        self._gap_chunks: set[int] = set()  # chunk start sample indices flagged gap_before
        self._last_wall = 0.0

    # -- public -------------------------------------------------------------------------------------------

    def push(self, event: Event) -> list[AVChunk]:
        """Feed one event; returns the chunks it completed (usually none or one)."""
        if isinstance(event, Discontinuity):
            return self._discontinuity(event)
        if not (isinstance(event.t, (int, float)) and math.isfinite(event.t) and abs(event.t) < MAX_ABS_T):
            self.stats.bad_times += 1
            return []
        self._last_wall = max(self._last_wall, event.wall)
        if self._offset is None:
            self._pending.append(event)
            if not self._origin_ready() and len(self._pending) < MAX_PENDING:
                return []
            self._start_segment()
            events, self._pending = self._pending, []
            for e in events:
                self._place(e)
        else:
            self._place(event)
        return self._emit_ready()

    def flush(self) -> list[AVChunk]:
        """End of stream: emit every remaining chunk, the last one partial if it is short."""
        if self._offset is None and self._pending:
            self._start_segment()
            events, self._pending = self._pending, []
            for e in events:
                self._place(e)
        self._release_held()
        out = self._emit_ready()
        end = self._end_index()
        if end <= self._cstart:
            return out
        while end - self._cstart >= SAMPLES_PER_CHUNK:
            self._fill_to(self._cstart + SAMPLES_PER_CHUNK)
            out.append(self._emit(SAMPLES_PER_CHUNK))
        if end - self._cstart >= MIN_PARTIAL * AUDIO_RATE:  # shorter tails are codec padding, not media
            self._fill_to(end)
            out.append(self._emit(end - self._cstart, partial=True))
        return out

    @property
    def position(self) -> float:
        """Stream time (seconds) up to which every expected modality has data."""
        ends = []
        if self.audio:
            ends.append(self._a_pos / AUDIO_RATE)
        if self.video:
            ends.append(self._v_next / VIDEO_FPS)
        return min(ends)

    # -- segments -----------------------------------------------------------------------------------------

    def _origin_ready(self) -> bool:
        seen = {"v": [], "a": []}
        for e in self._pending:
            seen["v" if isinstance(e, VideoSample) else "a"].append(e.t)
        need = (["v"] if self.video else []) + (["a"] if self.audio else [])
        if all(seen[m] for m in need):
            return True
        return any(ts and max(ts) - min(ts) > self.max_skew for ts in seen.values())

    def _start_segment(self) -> None:
        firsts = [e.t for e in self._pending if isinstance(e, (VideoSample, AudioSample))]
        origin = self._seg_origin if self._seg_origin is not None else min(firsts)
        self._seg_origin = None
        off = self._seg_base - origin
        self._offset = {"v": off, "a": off}

    def _discontinuity(self, d: Discontinuity) -> list[AVChunk]:
        out: list[AVChunk] = []
        if self._offset is None:  # nothing placed in this segment yet
            if d.gap:
                self._gap_chunks.add(self._cstart)
            return out
        self._release_held()
        if not d.gap:  # seamless: continue where the longest modality ended (snapped to a slot if within jitter)
            end = self._end_index() / AUDIO_RATE
            snapped = round(end * VIDEO_FPS) / VIDEO_FPS
            self._seg_base = snapped if abs(end - snapped) <= self.jitter else end
            self._offset = None
            return out
        out = self._emit_ready()
        end = self._end_index()
        if end > self._cstart:  # close the chunk in progress, filled
            boundary = self._cstart + SAMPLES_PER_CHUNK
            self._fill_to(boundary)
            out.append(self._emit(SAMPLES_PER_CHUNK))
        skip = int(max(d.wall_gap, 0.0) // CHUNK_SECONDS) * SAMPLES_PER_CHUNK
        self._cstart += skip
        self._a_pos = self._cstart
        self._a_pieces = []
        self._v_next = self._cstart // SAMPLES_PER_SLOT
        self._slots = {}
        self._v_last = None
        self._seg_base = self._cstart / AUDIO_RATE
        self._offset = None
        self._gap_chunks.add(self._cstart)
        return out

    # -- placing samples ----------------------------------------------------------------------------------

    def _place(self, e: Event) -> None:
        if isinstance(e, AudioSample):
            if self.audio:
                self._place_sample("a", e)
        elif self.video:
            self._place_sample("v", e)

    def _chunk_of(self, sample_index: int) -> int:
        return (sample_index - self._cstart) // SAMPLES_PER_CHUNK * SAMPLES_PER_CHUNK + self._cstart

    # -- glitches: a jumping sample waits for the next one of its modality --------------------------------

    def _place_sample(self, m: str, e: VideoSample | AudioSample) -> None:
        held = self._held.pop(m, None)
        if held is not None:
            if self._continues(m, e, held):
                self._put(m, held)
            else:
                self._glitch(m, held)
        if self._jumps(m, e):
            self._held[m] = e
        else:
            self._put(m, e)

    def _jumps(self, m: str, e: VideoSample | AudioSample) -> bool:
        """Whether `e` leaves its modality's timeline by more than a gap that is filled without a second look."""
        if m == "a":
            return abs(self._audio_index(e.t) - self._a_pos) > self.jitter * AUDIO_RATE
        ts = e.t + self._offset["v"]
        if self._v_last is None:
            return ts - self._v_next / VIDEO_FPS > self.max_fill
        return ts - self._v_last.t > max(self.gap_seconds, 1.0) or self._v_last.t - ts > self.max_back

    def _continues(self, m: str, e: VideoSample | AudioSample, held: VideoSample | AudioSample) -> bool:
        """Whether `e` follows the held sample where it is stamped rather than where its modality expected it."""
        if m == "a":
            n, length = self._audio_index(e.t), len(held.samples)
            return abs(n - (self._audio_index(held.t) + length)) <= abs(n - (self._a_pos + length))
        ts, held_ts = e.t + self._offset["v"], held.t + self._offset["v"]
        before = self._v_last.t if self._v_last is not None else self._v_next / VIDEO_FPS
        return abs(ts - held_ts) <= abs(ts - before)

    def _glitch(self, m: str, held: VideoSample | AudioSample) -> None:
        """One mis-stamped sample: audio goes where the stream expected it, a frame is dropped."""
        self.stats.glitches += 1
        if m == "a":
            self._gap_chunks.add(self._chunk_of(self._a_pos))
            self._append_audio(np.asarray(held.samples, dtype=np.float32).reshape(-1), filled=False)

    def _release_held(self) -> None:
        """Nothing follows the held samples (end of stream, discontinuity): each counts as a glitch."""
        for m in ("a", "v"):
            held = self._held.pop(m, None)
            if held is not None:
                self._glitch(m, held)

    def _put(self, m: str, e: VideoSample | AudioSample) -> None:
        if m == "a":
            self._put_audio(e)
        else:
            self._put_video(e)

    # -- one clock for both modalities --------------------------------------------------------------------

    def _expected(self, m: str) -> float:
        """Stream time at which modality `m`'s next sample is expected."""
        if m == "a":
            return self._a_pos / AUDIO_RATE
        last = self._v_last
        return last.t + self._v_interval if last is not None else self._v_next / VIDEO_FPS

    def _other(self, m: str) -> str | None:
        other = "v" if m == "a" else "a"
        return other if (self.video if other == "v" else self.audio) else None

    def _other_rebased(self, m: str, t: float) -> bool:
        """Whether the other modality already re-based for the jump that puts `t` away from where `m` expected it:
        its clock (offset) differs from m's by more than SAME_JUMP and puts `t` within SAME_JUMP of m's place."""
        other = self._other(m)
        if other is None or abs(self._offset[other] - self._offset[m]) <= SAME_JUMP:
            return False
        return abs(t + self._offset[other] - self._expected(m)) <= SAME_JUMP

    def _other_reaches(self, m: str, ts: float) -> bool:
        """Whether the other modality, on the same clock, already reached stream time `ts` (it filled the jump
        `m` now meets, so `m` fills it too rather than re-basing away from it)."""
        other = self._other(m)
        if other is None or self._offset[other] != self._offset[m]:
            return False
        return abs(self._expected(other) - ts) <= self.max_skew

    # -- placing samples ----------------------------------------------------------------------------------

    def _audio_index(self, t: float) -> int:
        return round((t + self._offset["a"]) * AUDIO_RATE)

    def _put_audio(self, e: AudioSample) -> None:
        x = np.asarray(e.samples, dtype=np.float32).reshape(-1)
        d = self._audio_index(e.t) - self._a_pos
        ahead = d > self.max_fill * AUDIO_RATE and not self._other_reaches("a", (self._a_pos + d) / AUDIO_RATE)
        behind = d < -self.max_back * AUDIO_RATE
        if ahead or behind or (abs(d) > self.jitter * AUDIO_RATE and self._other_rebased("a", e.t)):
            self._offset["a"] -= d / AUDIO_RATE  # jump or wrap: continue where we were
            self.stats.rebases += 1
            self._gap_chunks.add(self._chunk_of(self._a_pos))
            d = 0
        if d > self.jitter * AUDIO_RATE:
            if d > self.gap_seconds * AUDIO_RATE:
                self._gap_chunks.add(self._chunk_of(self._a_pos + d))
            self._append_audio(np.zeros(d, np.float32), filled=True)
        elif d < -self.jitter * AUDIO_RATE:
            trim = min(-d, len(x))
            self.stats.trimmed_samples += trim
            x = x[trim:]
        if len(x):
            self._append_audio(x, filled=False)

    def _append_audio(self, x: np.ndarray, *, filled: bool) -> None:
        if filled:
            self.stats.filled_samples += len(x)
        self._a_pieces.append((x, filled))
        self._a_pos += len(x)

    def _put_video(self, e: VideoSample) -> None:
        ts = e.t + self._offset["v"]
        last = self._v_last
        start = self._v_next / VIDEO_FPS
        if self.audio and self._other_rebased("v", e.t):  # audio re-based for this jump: take its clock exactly
            self._offset["v"] = self._offset["a"]
            self.stats.rebases += 1
            ts = e.t + self._offset["v"]
            self._gap_chunks.add(self._chunk_of(round(ts * AUDIO_RATE)))
        if last is None and ts - start > self.max_fill:  # the first frame far after the start: start with it
            self._offset["v"] += start - ts
            self.stats.rebases += 1
            self._gap_chunks.add(self._chunk_of(self._v_next * SAMPLES_PER_SLOT))
            ts = start
        if last is not None:
            if ts < last.t - EPS:
                if last.t - ts <= self.max_back:
                    self.stats.late_frames += 1
                    return
                ts = self._rebase_video(ts, last)
            elif ts - (last.t + self._v_interval) > self.max_fill and not self._other_reaches("v", ts):
                ts = self._rebase_video(ts, last)
            elif ts - last.t > max(self.gap_seconds, 1.0):
                self._gap_chunks.add(self._chunk_of(round(ts * AUDIO_RATE)))
            else:
                if ts > last.t + EPS:
                    self._v_interval = ts - last.t  # the last frame's on-screen time, for the end of stream
        frame = VideoSample(ts, e.image, e.wall)
        while self._v_next / VIDEO_FPS < ts - EPS:
            if last is None:
                self._slots[self._v_next] = _Slot(frame, True)  # start offset: first frame shown early
                self.stats.repeated_slots += 1
            else:
                stale = self._v_next / VIDEO_FPS - last.t > 1.0 + EPS
                self.stats.repeated_slots += stale
                self._slots[self._v_next] = _Slot(last, stale)
            self._v_next += 1
        self._v_last = frame

    def _rebase_video(self, ts: float, last: VideoSample) -> float:
        new_ts = last.t + self._v_interval
        self._offset["v"] += new_ts - ts
        self.stats.rebases += 1
        self._gap_chunks.add(self._chunk_of(round(new_ts * AUDIO_RATE)))
        return new_ts

    # -- emitting -----------------------------------------------------------------------------------------

    def _end_index(self) -> int:
        """Sample index where the data seen so far ends (the longest modality)."""
        ends = [self._cstart]
        if self.audio:
            ends.append(self._a_pos)
        if self.video and self._v_last is not None:
            ends.append(round((self._v_last.t + self._v_interval) * AUDIO_RATE))
            ends.append(self._v_next * SAMPLES_PER_SLOT)
        return max(ends)

    def _audio_ready(self, c1: int) -> bool:
        return not self.audio or self._a_pos >= c1

    def _video_ready(self, c1: int) -> bool:
        return not self.video or self._v_next * SAMPLES_PER_SLOT >= c1

    def _emit_ready(self) -> list[AVChunk]:
        out = []
        while self._offset is not None:
            c1 = self._cstart + SAMPLES_PER_CHUNK
            a_ok, v_ok = self._audio_ready(c1), self._video_ready(c1)
            if not (a_ok and v_ok):
                skew = round(self.max_skew * AUDIO_RATE)
                v_cover = round(self._v_last.t * AUDIO_RATE) if self._v_last is not None else -1
                if a_ok and self.audio and self._a_pos - c1 > skew:
                    self._fill_to(c1)
                elif v_ok and self.video and v_cover - c1 > skew:
                    self._fill_to(c1)
                else:
                    break
            out.append(self._emit(SAMPLES_PER_CHUNK))
        return out

    def _fill_to(self, end: int) -> None:
        """Fill the lagging modalities up to sample index `end` (silence, repeated last frame)."""
        if self.audio and self._a_pos < end:
            self._append_audio(np.zeros(end - self._a_pos, np.float32), filled=True)
        if self.video:
            last_slot = -(-end // SAMPLES_PER_SLOT)  # ceil
            while self._v_next < last_slot:
                self._slots[self._v_next] = _Slot(self._v_last, True)
                self.stats.repeated_slots += 1
                self._v_next += 1

    def _take_audio(self, n: int) -> tuple[np.ndarray, bool]:
        parts, filled, need = [], False, n
        while need > 0 and self._a_pieces:
            x, f = self._a_pieces[0]
            if len(x) <= need:
                self._a_pieces.pop(0)
                parts.append(x)
            else:
                parts.append(x[:need])
                self._a_pieces[0] = (x[need:], f)
            filled |= f
            need -= len(parts[-1])
        if need > 0:
            parts.append(np.zeros(need, np.float32))
            filled = True
        return np.concatenate(parts) if len(parts) > 1 else parts[0].copy(), filled

    def _take_frames(self, n_slots: int) -> tuple[np.ndarray | None, bool]:
        first = self._cstart // SAMPLES_PER_SLOT
        slots = [self._slots.pop(s, _Slot(None, True)) for s in range(first, first + n_slots)]
        repeated = any(s.repeated for s in slots)
        known = [s.frame for s in slots if s.frame is not None]
        if not known:
            return None, repeated
        images = [(s.frame or known[0]).array() for s in slots]
        h, w = images[0].shape[:2]
        for i, im in enumerate(images):  # a reconnect may change the size: nearest-neighbour to the first
            if im.shape[:2] != (h, w):
                ys = np.arange(h) * im.shape[0] // h
                xs = np.arange(w) * im.shape[1] // w
                images[i] = im[ys][:, xs]
        return np.stack(images), repeated

    def _emit(self, n_samples: int, *, partial: bool = False) -> AVChunk:
        audio = frames = None
        a_filled = v_rep = False
        if self.audio:
            audio, a_filled = self._take_audio(n_samples)
        if self.video:
            frames, v_rep = self._take_frames(min(FRAMES_PER_CHUNK, -(-n_samples // SAMPLES_PER_SLOT)))
        flags = ChunkFlags(
            audio_filled=a_filled,
            frames_repeated=v_rep,
            gap_before=self._cstart in self._gap_chunks,
            video_absent=frames is None,
            audio_absent=audio is None,
            partial=partial,
        )
        self._gap_chunks.discard(self._cstart)
        chunk = AVChunk(
            stream=self.stream,
            index=self._index,
            start=self._cstart / AUDIO_RATE,
            frames=frames,
            audio=audio,
            flags=flags,
            capture_time=self._last_wall or self._clock(),
        )
        self._index += 1
        self._cstart += n_samples
        return chunk
