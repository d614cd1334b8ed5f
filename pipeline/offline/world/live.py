"""The world's questions put to a live session as its chunks arrive, and the answers scored.

`run_live` feeds a stream's chunks to one `OmniSession` per setting (compressor and retention), in
lockstep, and right after the chunk that ends at a question's moment every session answers it:
by the options' likelihood (`choose_by_score`: the option with the highest summed log-probability after
the question, as a multiple-choice benchmark scores) and, with `generate`, by free text read with
`scoring.choose`. After every chunk it also scores the standing question "Is the alarm sounding?" as the
watch path does (p(Yes) against p(No)); `alert_scores` turns that series into alerts and compares them with
the alarm's episodes in the log.

Questions are asked only at chunk ends where nothing happened in the last `SETTLE` seconds (the last frame
the model saw is 0.5 s before the chunk's end; a change after it is not on any frame yet).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from pipeline.offline.world.questions import STANDING_ALARM, Log, Question
from pipeline.offline.world.scoring import choose

ALARM_QUESTION = STANDING_ALARM  # the watch's question, answered "Yes" / "No" as ModelWorker.yes_probability does
YES, NO = "Yes", "No"
SETTLE = 0.5  # seconds: a moment needs this long without events before it


@dataclass(frozen=True)
class Setting:
    """A compressor and its retention over audio + video tokens (None: the compressor's own ratios)."""

    compressor: str
    retention: float | None = None

    @classmethod
    def parse(cls, text: str) -> Setting:
        """"full", "omnisift@0.25", "random@0.35" ..."""
        name, _, retention = text.partition("@")
        try:
            return cls(name, float(retention) if retention else None)
        except ValueError:
            raise ValueError(f"setting {text!r}: the retention after '@' must be a number") from None

    @property
    def label(self) -> str:
        return self.compressor if self.retention is None else f"{self.compressor} {self.retention:.0%}"


@dataclass(frozen=True)
class Outcome:
    question: Question
    chosen: str  # the option with the highest likelihood
    text: str | None = None  # the generated answer (with `generate`)

    @property
    def correct(self) -> bool:
        return self.chosen == self.question.gold

    @property
    def text_correct(self) -> bool | None:
        return None if self.text is None else choose(self.text, self.question.options) == self.question.gold


@dataclass
class LiveResult:
    setting: Setting
    outcomes: list[Outcome] = field(default_factory=list)
    p_yes: list[tuple[float, float]] = field(default_factory=list)  # (media seconds, p(Yes)) after each chunk
    kept: int = 0  # audio + video tokens kept over the run
    before: int = 0  # ... and before compression
    chunks: int = 0
    seconds: float = 0.0  # wall time of the whole lockstep run (every setting together)

    @property
    def retention(self) -> float:
        return self.kept / self.before if self.before else 0.0

    def accuracy(self, kind: str | None = None) -> tuple[int, int]:
        """(correct, asked) for one question type, or all of them."""
        rows = [o for o in self.outcomes if kind is None or o.question.kind == kind]
        return sum(o.correct for o in rows), len(rows)


def quiet_moments(log: Log, ends: Iterable[float], settle: float = SETTLE) -> list[float]:
    """The chunk ends (media seconds) with no event in the `settle` seconds before them."""
    times = [r[0] for r in log.rows]
    return [t for t in ends if not any(t - settle < e <= t for e in times)]


def choose_by_score(session, question: Question) -> str:
    """The option whose text is most likely after the question (summed log-probability of its tokens)."""
    scores = session.score_options(question.prompt, question.options)
    return question.options[max(range(len(scores)), key=scores.__getitem__)]


def p_yes(session, question: str) -> float:
    """p(Yes) / (p(Yes) + p(No)) as the answer to `question`, as a standing question is scored."""
    yes, no = session.score_options(question, (YES, NO))
    return 1.0 / (1.0 + math.exp(max(-700.0, min(700.0, no - yes))))


def append_all(sessions: Sequence, chunk) -> list:
    """Append `chunk` to every session, running preprocess and the towers once for all of them: each
    session's own `ChunkEncoder` then compresses the shared tower outputs with its own carried state and its
    session prefills them, as `OmniSession.append` does chunk by chunk (sessions over one model).
    Returns each session's `CompressedChunk`."""
    encoders = [s.chunk_encoder for s in sessions]
    prepared, preprocess = encoders[0].prepare(chunk)
    for enc in encoders[1:]:
        enc.inputs(chunk)  # each stream's own modalities and held frame
    t0 = time.perf_counter()
    encoded = encoders[0].encoder.process_many([prepared])[0]
    seconds = time.perf_counter() - t0
    out = []
    for session, enc in zip(sessions, encoders, strict=True):
        compressed = enc.finish(encoded, preprocess, seconds)
        session.append_compressed(compressed)
        out.append(compressed)
    return out


def run_live(sessions: Sequence, settings: Sequence[Setting], chunks: Iterable, questions: Sequence[Question], *,
             generate: bool = False, max_new_tokens: int = 6, watch: bool = True,
             share_encoding: bool = True) -> list[LiveResult]:
    """Feed every chunk to each session (one per setting, in lockstep); after each chunk, every session
    answers the questions whose moment the chunk reached and, with `watch`, the standing alarm question.
    `share_encoding`: the towers run once per chunk for all sessions (`append_all`); otherwise each
    session's own `append`."""
    start = time.perf_counter()
    results = [LiveResult(s) for s in settings]
    pending = sorted(questions, key=lambda q: q.t)
    i = 0
    for chunk in chunks:
        if share_encoding:
            counts = [c.counts for c in append_all(sessions, chunk)]
        else:
            counts = [s.append(chunk).counts for s in sessions]
        end = chunk.start + chunk.duration
        due = []
        while i < len(pending) and pending[i].t <= end + 1e-6:
            due.append(pending[i])
            i += 1
        for session, result, c in zip(sessions, results, counts, strict=True):
            result.kept += c.video_after + c.audio_after
            result.before += c.video_before + c.audio_before
            result.chunks += 1
            for q in due:
                text = session.ask(q.prompt, max_new_tokens=max_new_tokens) if generate else None
                result.outcomes.append(Outcome(q, choose_by_score(session, q), text))
            if watch:
                result.p_yes.append((end, p_yes(session, ALARM_QUESTION)))
    for r in results:
        r.seconds = time.perf_counter() - start
    return results


@dataclass(frozen=True)
class AlertScore:
    alerts: int  # rising edges of p(Yes) >= threshold
    true_alerts: int  # ... inside an alarm episode (or within `grace` after it)
    episodes: int  # alarm episodes the run covered
    detected: int  # ... with an alert inside
    delay: float | None  # mean media seconds from an episode's start to its first alert

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.episodes if self.episodes else None


def alarm_episodes(log: Log) -> list[tuple[float, float]]:
    """(on, off) media seconds of each alarm episode; an episode still on at the log's end has off = inf."""
    episodes, on = [], None
    for t, kind, value in log.rows:
        if kind == "alarm" and value == "on":
            on = t
        elif kind == "alarm" and value == "off" and on is not None:
            episodes.append((on, t))
            on = None
    return episodes + ([(on, math.inf)] if on is not None else [])


def alert_scores(series: Sequence[tuple[float, float]], log: Log, threshold: float = 0.5,
                 grace: float = 2.0) -> AlertScore:
    """Alerts (the moments p(Yes) rises to `threshold`) against the alarm's episodes: an alert at t is true
    if an episode has on < t <= off + grace; an episode counts if it started before the series ended."""
    alerts, above = [], False
    for t, p in series:
        if p >= threshold and not above:
            alerts.append(t)
        above = p >= threshold
    end = series[-1][0] if series else 0.0
    episodes = [(on, off) for on, off in alarm_episodes(log) if on < end]
    inside = [[a for a in alerts if on < a <= off + grace] for on, off in episodes]
    true_alerts = sum(any(on < a <= off + grace for on, off in episodes) for a in alerts)
    delays = [hits[0] - on for hits, (on, _) in zip(inside, episodes, strict=True) if hits]
    return AlertScore(len(alerts), true_alerts, len(episodes), len(delays),
                      sum(delays) / len(delays) if delays else None)
