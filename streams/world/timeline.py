"""The world's ground truth: scenarios and the event log, drawn from a seed, generated lazily as time advances.

Three independent processes, each with its own random stream (so a scenario's visual events do not move
when its audio changes):

- background: the screen's colour, a new one (never the same) after an exponential wait;
- objects: shapes that appear in one of three horizontal lanes, glide to another point of the lane and
  leave; at most three at once, and the ones on screen together differ in colour, shape and lane;
- sounds, one at a time with at least `MIN_SOUND_GAP` of silence between them: a beep of one of three
  pitches, a spoken digit, or the alarm (a two-tone pattern lasting several seconds).

Every event is a `WorldEvent(t, kind, value)`, `t` in media seconds rounded to milliseconds:

    kind        value                          meaning
    background  a BACKGROUNDS colour           the screen turns this colour (one at t=0)
    appear      "<colour> <shape>"             an object appears
    leave       "<colour> <shape>"             that object leaves
    beep        a PITCHES name                 a beep starts (BEEP_SECONDS long)
    word        a WORDS word                   a word starts (at most WORD_SECONDS long)
    alarm       "on" / "off"                   the alarm starts / stops

Generation is sequential per process and only ever extends forward, so the log is the same however it
is read (one call for an hour, or one per chunk) and hours of it cost a few thousand small records.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

import numpy as np

BACKGROUNDS = ("black", "blue", "green", "gray")
OBJECT_COLOURS = ("red", "yellow", "white")
SHAPES = ("square", "circle", "triangle")
PITCHES = {"low": 400.0, "medium": 800.0, "high": 1600.0}  # beep name -> Hz
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
KINDS = ("background", "appear", "leave", "beep", "word", "alarm")

BEEP_SECONDS = 0.3
WORD_SECONDS = 0.8  # a spoken word is cut to this length
MIN_SOUND_GAP = 1.0  # seconds of silence at least between two sounds
LANES = 3


@dataclass(frozen=True, order=True)
class WorldEvent:
    """One line of the ground truth: at media time `t` (seconds), `kind` happened with `value`."""

    t: float
    kind: str
    value: str


@dataclass(frozen=True)
class WorldObject:
    """A shape on screen from `t_in` to `t_out` (seconds), gliding along lane `lane` from `x0` to `x1`
    (the shape's centre, as a fraction of the frame width)."""

    t_in: float
    t_out: float
    colour: str
    shape: str
    lane: int
    x0: float
    x1: float

    @property
    def name(self) -> str:
        return f"{self.colour} {self.shape}"

    def x(self, t: float) -> float:
        return self.x0 + (self.x1 - self.x0) * (t - self.t_in) / (self.t_out - self.t_in)


@dataclass(frozen=True)
class Sound:
    """A sound from `t` to `end` (seconds): kind "beep", "word" or "alarm" with its value."""

    t: float
    end: float
    kind: str
    value: str


@dataclass(frozen=True)
class Scenario:
    """How often things happen (mean seconds between them, exponential waits) and how long they last."""

    name: str
    background_every: float
    object_every: float
    object_life: tuple[float, float]
    sound_every: float  # mean extra silence after MIN_SOUND_GAP
    sound_weights: tuple[float, float, float]  # beep, word, alarm
    alarm_length: tuple[float, float]


SCENARIOS = {
    "quiet": Scenario("quiet", 40.0, 15.0, (6.0, 20.0), 8.0, (0.5, 0.4, 0.1), (4.0, 10.0)),
    "standard": Scenario("standard", 20.0, 8.0, (5.0, 16.0), 3.0, (0.45, 0.4, 0.15), (4.0, 12.0)),
    "busy": Scenario("busy", 10.0, 4.0, (4.0, 12.0), 1.5, (0.45, 0.4, 0.15), (3.0, 8.0)),
}
MAX_SOUND_SECONDS = max(BEEP_SECONDS, WORD_SECONDS, *(s.alarm_length[1] for s in SCENARIOS.values()))
MAX_OBJECT_SECONDS = max(s.object_life[1] for s in SCENARIOS.values())


def _ms(t: float) -> float:
    return round(float(t), 3)


class Timeline:
    """The event log of one seed and scenario, extended on demand (`extend(until)`)."""

    def __init__(self, seed: int, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"world: field 'scenario' has bad value {scenario!r}: expected one of "
                             f"{', '.join(SCENARIOS)}")
        self.seed = seed
        self.scenario = SCENARIOS[scenario]
        self._rng_bg = np.random.default_rng([seed, 0])
        self._rng_obj = np.random.default_rng([seed, 1])
        self._rng_snd = np.random.default_rng([seed, 2])
        self.events: list[WorldEvent] = []  # sorted by (t, kind, value) up to `horizon`
        self._pending: list[WorldEvent] = []  # generated, later than the horizon (leaves, alarm offs)
        self.objects: list[WorldObject] = []  # by t_in
        self.sounds: list[Sound] = []  # by t
        self.horizon = -1.0  # every event with t <= horizon is in `events`
        self._bg = str(self._rng_bg.choice(BACKGROUNDS))
        self._next_bg = 0.0
        self._next_obj = self._wait(self._rng_obj, self.scenario.object_every, 1.0)
        self._next_snd = self._wait(self._rng_snd, self.scenario.sound_every, 0.5)

    @staticmethod
    def _wait(rng: np.random.Generator, mean: float, least: float) -> float:
        return least + float(rng.exponential(mean))

    def extend(self, until: float) -> None:
        """Generate every event up to media time `until` (seconds)."""
        if until <= self.horizon:
            return
        new: list[WorldEvent] = []
        while self._next_bg <= until:
            new += self._background(self._next_bg)
        while self._next_obj <= until:
            new += self._object(self._next_obj)
        while self._next_snd <= until:
            new += self._sound(self._next_snd)
        pending = sorted(self._pending + new)
        cut = bisect.bisect_right(pending, (until, "\uffff"), key=lambda e: (e.t, e.kind))
        self.events += pending[:cut]
        self._pending = pending[cut:]
        self.horizon = until

    def _background(self, t: float) -> list[WorldEvent]:
        if t > 0:
            self._bg = str(self._rng_bg.choice([c for c in BACKGROUNDS if c != self._bg]))
        event = WorldEvent(_ms(t), "background", self._bg)
        self._next_bg = t + self._wait(self._rng_bg, self.scenario.background_every - 3.0, 3.0)
        return [event]

    def _object(self, t: float) -> list[WorldEvent]:
        rng, sc = self._rng_obj, self.scenario
        self._next_obj = t + self._wait(rng, sc.object_every - 1.0, 1.0)
        t = _ms(t)
        present = self._present(t)
        # the draws are the same whether or not the object fits, so a full screen does not shift later ones
        colour_r, shape_r, lane_r, life, x0, x1 = rng.random(6)
        if len(present) >= LANES:
            return []
        colours = [c for c in OBJECT_COLOURS if c not in {o.colour for o in present}]
        shapes = [s for s in SHAPES if s not in {o.shape for o in present}]
        lanes = [n for n in range(LANES) if n not in {o.lane for o in present}]
        lo, hi = sc.object_life
        obj = WorldObject(t, _ms(t + lo + (hi - lo) * life), colours[int(colour_r * len(colours))],
                          shapes[int(shape_r * len(shapes))], lanes[int(lane_r * len(lanes))],
                          0.15 + 0.7 * float(x0), 0.15 + 0.7 * float(x1))
        self.objects.append(obj)
        return [WorldEvent(obj.t_in, "appear", obj.name), WorldEvent(obj.t_out, "leave", obj.name)]

    def _sound(self, t: float) -> list[WorldEvent]:
        rng, sc = self._rng_snd, self.scenario
        t = _ms(t)
        kind = ("beep", "word", "alarm")[int(rng.choice(3, p=np.asarray(sc.sound_weights) / sum(sc.sound_weights)))]
        if kind == "beep":
            value = str(rng.choice(list(PITCHES)))
            sound, events = Sound(t, _ms(t + BEEP_SECONDS), kind, value), [WorldEvent(t, kind, value)]
        elif kind == "word":
            value = str(rng.choice(WORDS))
            sound, events = Sound(t, _ms(t + WORD_SECONDS), kind, value), [WorldEvent(t, kind, value)]
        else:
            end = _ms(t + rng.uniform(*sc.alarm_length))
            sound = Sound(t, end, "alarm", "on")
            events = [WorldEvent(t, "alarm", "on"), WorldEvent(end, "alarm", "off")]
        self.sounds.append(sound)
        self._next_snd = sound.end + self._wait(rng, sc.sound_every, MIN_SOUND_GAP)
        return events

    # ---- reading ---------------------------------------------------------------------------------

    def objects_at(self, t: float) -> list[WorldObject]:
        """The objects on screen at media time `t`, in the order they appeared."""
        self.extend(t)
        return self._present(t)

    def _present(self, t: float) -> list[WorldObject]:
        lo = bisect.bisect_left(self.objects, t - MAX_OBJECT_SECONDS, key=lambda o: o.t_in)
        return [o for o in self.objects[lo:] if o.t_in <= t < o.t_out]

    def background_at(self, t: float) -> str:
        self.extend(t)
        i = bisect.bisect_right(self.events, t, key=lambda e: e.t)
        return next(e.value for e in reversed(self.events[:i]) if e.kind == "background")

    def sounds_between(self, start: float, end: float) -> list[Sound]:
        """Sounds that overlap [start, end) seconds."""
        self.extend(end)
        lo = bisect.bisect_left(self.sounds, start - MAX_SOUND_SECONDS, key=lambda s: s.t)
        return [s for s in self.sounds[lo:] if s.t < end and s.end > start]
