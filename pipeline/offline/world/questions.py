"""Closed questions about the monitoring world and their gold answers, read from its event log alone.

The log is a sequence of `(t, kind, value)` (or `streams.world.WorldEvent`s), media seconds, time-ordered;
kinds and values as in `streams.world.timeline`. A question is asked at media time `t`: what the model
has seen and heard up to then. Each type returns None where it has no clear answer at that moment (no
object on screen, no recent beep, the reference moment right on a change), so a harness asks it elsewhere.

    type            asks                                                 answered from
    screen_colour   the background colour now                            on screen now
    object_colour   the colour of the newest shape on screen             on screen now
    object_shape    the shape of the oldest object on screen, by colour  on screen now
    object_count    how many shapes are on screen                        on screen now
    last_word       the word just spoken (last RECENT seconds)           just heard
    beep_pitch      the pitch of the last beep (last RECENT seconds)     just heard
    alarm           whether the alarm is sounding                        just heard
    standing_alarm  the same, as a standing question is put: the bare    just heard
                    question, answered "Yes" or "No" (the watch path)
    colour_at_beep  the screen's colour when the last beep sounded       cross-modal (last CROSS seconds)
    beep_count      beeps in the last minute                             over the window
    past_colour     the screen's colour N minutes ago                    the past, beyond a short window
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from streams.world import BACKGROUNDS, BEEP_SECONDS, OBJECT_COLOURS, PITCHES, SHAPES, WORD_SECONDS, WORDS

Row = tuple[float, str, str]
RECENT = 10.0  # seconds: "just heard" means a sound that ended within this long
CROSS = 30.0  # seconds: how far back the cross-modal question looks for a beep
MARGIN = 1.0  # seconds: a reference moment this close to a change of what is asked has no clear answer
COUNT_OPTIONS = tuple(str(n) for n in range(10))
SOUND_SECONDS = {"beep": BEEP_SECONDS, "word": WORD_SECONDS}


@dataclass(frozen=True)
class Question:
    """One closed question at media time `t`: `gold` is one of `options`."""

    kind: str
    t: float
    text: str
    gold: str
    options: tuple[str, ...]
    plain: bool = False  # put to the model as `text` alone, its options unlisted

    @property
    def prompt(self) -> str:
        """The question with its options, as put to a model."""
        return self.text if self.plain else f"{self.text} Answer with one of: {', '.join(self.options)}."


def rows(log: Iterable) -> list[Row]:
    """The log as (t, kind, value) tuples."""
    return [(e.t, e.kind, e.value) if hasattr(e, "kind") else tuple(e) for e in log]


class Log:
    """Queries over one event log (ground truth only; no model, no media)."""

    def __init__(self, log: Iterable) -> None:
        self.rows = rows(log)

    def upto(self, t: float, kind: str | None = None) -> list[Row]:
        return [r for r in self.rows if r[0] <= t and (kind is None or r[1] == kind)]

    def background(self, t: float) -> str:
        return self.upto(t, "background")[-1][2]

    def objects(self, t: float) -> list[str]:
        """Objects on screen at `t`, oldest first."""
        present: list[str] = []
        for _, kind, value in self.upto(t):
            if kind == "appear":
                present.append(value)
            elif kind == "leave":
                present.remove(value)
        return present

    def heard(self, kind: str, t: float) -> list[Row]:
        """Sounds of `kind` ("beep", "word") that had finished by `t`."""
        return [r for r in self.upto(t, kind) if r[0] + SOUND_SECONDS[kind] <= t]

    def alarm_on(self, t: float) -> bool:
        alarms = self.upto(t, "alarm")
        return bool(alarms) and alarms[-1][2] == "on"

    def changes_near(self, kind: str, t: float, margin: float = MARGIN) -> bool:
        return any(abs(r[0] - t) < margin for r in self.rows if r[1] == kind)


def screen_colour(log: Log, t: float) -> Question:
    return Question("screen_colour", t, "What colour is the background of the screen?", log.background(t),
                    BACKGROUNDS)


def object_colour(log: Log, t: float) -> Question | None:
    objects = log.objects(t)
    if not objects:
        return None
    colour, shape = objects[-1].split()
    return Question("object_colour", t, f"What colour is the {shape}?", colour, OBJECT_COLOURS)


def object_shape(log: Log, t: float) -> Question | None:
    objects = log.objects(t)
    if not objects:
        return None
    colour, shape = objects[0].split()
    return Question("object_shape", t, f"What shape is the {colour} object?", shape, SHAPES)


def object_count(log: Log, t: float) -> Question:
    return Question("object_count", t, "How many shapes are on the screen?", str(len(log.objects(t))),
                    COUNT_OPTIONS[:4])


def last_word(log: Log, t: float) -> Question | None:
    words = log.heard("word", t)
    if not words or words[-1][0] + WORD_SECONDS < t - RECENT:
        return None
    return Question("last_word", t, "Which word was just spoken?", words[-1][2], WORDS)


def beep_pitch(log: Log, t: float) -> Question | None:
    beeps = log.heard("beep", t)
    if not beeps or beeps[-1][0] + BEEP_SECONDS < t - RECENT:
        return None
    return Question("beep_pitch", t, "Was the last beep low, medium or high?", beeps[-1][2], tuple(PITCHES))


def alarm(log: Log, t: float) -> Question:
    return Question("alarm", t, "Is the alarm sounding?", "yes" if log.alarm_on(t) else "no", ("yes", "no"))


STANDING_ALARM = "Is the alarm sounding?"


def standing_alarm(log: Log, t: float) -> Question:
    return Question("standing_alarm", t, STANDING_ALARM, "Yes" if log.alarm_on(t) else "No", ("Yes", "No"),
                    plain=True)


def colour_at_beep(log: Log, t: float) -> Question | None:
    beeps = log.heard("beep", t)
    if not beeps or beeps[-1][0] < t - CROSS or log.changes_near("background", beeps[-1][0]):
        return None
    return Question("colour_at_beep", t, "What colour was the screen when the last beep sounded?",
                    log.background(beeps[-1][0]), BACKGROUNDS)


def beep_count(log: Log, t: float, seconds: float = 60.0) -> Question | None:
    """Beeps heard in the last `seconds`: onset after t - seconds and finished by t. None when one starts
    within MARGIN of the window's start (half in, half out) or the count has no option."""
    beeps = log.heard("beep", t)
    if any(abs(r[0] - (t - seconds)) < MARGIN for r in beeps):
        return None
    n = sum(r[0] > t - seconds for r in beeps)
    if n >= len(COUNT_OPTIONS):
        return None
    return Question("beep_count", t, "How many beeps were there in the last minute?", str(n), COUNT_OPTIONS)


def past_colour(log: Log, t: float, minutes: int) -> Question | None:
    then = t - 60.0 * minutes
    if then < 0 or log.changes_near("background", then):
        return None
    unit = "minute" if minutes == 1 else "minutes"
    return Question("past_colour", t, f"What colour was the screen {minutes} {unit} ago?", log.background(then),
                    BACKGROUNDS)


MAX_PAST_MINUTES = 5
QUESTION_TYPES: dict[str, Callable[[Log, float, random.Random], Question | None]] = {
    "screen_colour": lambda log, t, rng: screen_colour(log, t),
    "object_colour": lambda log, t, rng: object_colour(log, t),
    "object_shape": lambda log, t, rng: object_shape(log, t),
    "object_count": lambda log, t, rng: object_count(log, t),
    "last_word": lambda log, t, rng: last_word(log, t),
    "beep_pitch": lambda log, t, rng: beep_pitch(log, t),
    "alarm": lambda log, t, rng: alarm(log, t),
    "standing_alarm": lambda log, t, rng: standing_alarm(log, t),
    "colour_at_beep": lambda log, t, rng: colour_at_beep(log, t),
    "beep_count": lambda log, t, rng: beep_count(log, t),
    "past_colour": lambda log, t, rng: (past_colour(log, t, rng.randint(1, min(MAX_PAST_MINUTES, int(t // 60))))
                                        if t >= 60 else None),
}


def ask(kind: str, log: Log, t: float, rng: random.Random | None = None) -> Question | None:
    """A question of type `kind` at media time `t`, or None where it has no clear answer then."""
    if kind not in QUESTION_TYPES:
        raise ValueError(f"question type {kind!r} is unknown; choose one of {', '.join(QUESTION_TYPES)}")
    return QUESTION_TYPES[kind](log, t, rng or random.Random(0))


def draw_questions(log: Log, moments: Sequence[float], per_type: int, rng: random.Random,
                   kinds: Sequence[str] = tuple(QUESTION_TYPES)) -> list[Question]:
    """Up to `per_type` questions of each type at moments drawn from `moments` (media seconds) without
    repeating a moment for a type; a type is skipped at moments where it has no clear answer. Sorted by time."""
    out = []
    for kind in kinds:
        order = list(moments)
        rng.shuffle(order)
        got = 0
        for t in order:
            if got == per_type:
                break
            q = ask(kind, log, t, rng)
            if q is not None:
                out.append(q)
                got += 1
    return sorted(out, key=lambda q: (q.t, q.kind))
