"""The live-accuracy harness: its bookkeeping against fake sessions whose answers are known, the alarm's alert
scores against a hand-made series, and the real tiny model: `score_options` equals `score` per option, and
the shared-encoding lockstep leaves every session exactly as its own `append` would."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from omnisift.counts import TokenCounts
from pipeline.offline.world import Log, Question
from pipeline.offline.world.live import (
    ALARM_QUESTION,
    Setting,
    alarm_episodes,
    alert_scores,
    append_all,
    quiet_moments,
    run_live,
)
from pipeline.session import OmniSession
from streams import read_chunks

LOG = Log([(0.0, "background", "blue"), (5.0, "alarm", "on"), (9.0, "alarm", "off"), (13.7, "beep", "low"),
           (20.0, "alarm", "on"), (30.0, "alarm", "off"), (40.0, "alarm", "on")])


class FakeSession:
    """Answers every question with `pick(question_prompt, options)`; p(Yes) from `yes(t)`."""

    def __init__(self, pick, yes=lambda t: 0.1):
        self.pick, self.yes, self.t, self.asked = pick, yes, 0.0, []

    def append(self, chunk):
        self.t = chunk.start + chunk.duration
        return SimpleNamespace(counts=TokenCounts(8, 2, 50, 20))

    def score_options(self, prompt, options):
        if prompt == ALARM_QUESTION:
            p = self.yes(self.t)
            return [math.log(p), math.log(1 - p)]
        self.asked.append((self.t, prompt))
        best = self.pick(prompt, options)
        return [1.0 if o == best else 0.0 for o in options]


def chunk(k):
    return SimpleNamespace(start=2.0 * k, duration=2.0)


def q(kind, t, gold, options=("a", "b", "c")):
    return Question(kind, t, f"{kind}?", gold, options)


def test_each_question_is_answered_right_after_its_chunk_and_counted():
    questions = [q("x", 2.0, "a"), q("x", 6.0, "b"), q("y", 6.0, "a"), q("y", 10.0, "c")]
    first = FakeSession(lambda p, o: o[0])
    oracle = FakeSession(lambda p, o: next(x.gold for x in questions if x.prompt == p and x.t == oracle.t))
    a, b = run_live([first, oracle], [Setting("first"), Setting("oracle")], [chunk(k) for k in range(6)], questions,
                    share_encoding=False)
    assert [t for t, _ in first.asked] == [2.0, 6.0, 6.0, 10.0]  # after the chunk ending at each moment
    assert a.accuracy() == (2, 4) and a.accuracy("x") == (1, 2) and a.accuracy("y") == (1, 2)
    assert b.accuracy() == (4, 4)
    assert a.retention == pytest.approx(22 / 58) and a.chunks == 6
    assert [t for t, _ in a.p_yes] == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]


def test_alert_scores_against_the_alarm_episodes():
    assert alarm_episodes(LOG) == [(5.0, 9.0), (20.0, 30.0), (40.0, math.inf)]
    #          t:   2     4     6     8    10    12 ... 22    24    26 ... 34    36
    series = [(2, 0.1), (4, 0.2), (6, 0.9), (8, 0.8), (10, 0.7), (12, 0.2), (22, 0.6), (24, 0.1), (26, 0.9),
              (34, 0.9), (36, 0.1)]
    s = alert_scores(series, LOG)
    # alerts rise at 6 (episode 1), 22 (episode 2), 26 (episode 2 again); the one at 34 is a rise? no: 26 and
    # 34 are consecutive points above the threshold, one alert. Episode 3 starts at 40, after the series.
    assert (s.alerts, s.true_alerts, s.episodes, s.detected) == (3, 3, 2, 2)
    assert s.delay == pytest.approx(((6 - 5) + (22 - 20)) / 2) and s.precision == 1.0 and s.recall == 1.0
    late = alert_scores([(2, 0.1), (10, 0.9), (12, 0.9), (14, 0.1), (16, 0.8)], LOG)
    # 10 is within the 2 s grace after the first episode's end (9); 16 is in no episode
    assert (late.alerts, late.true_alerts, late.detected, late.episodes) == (2, 1, 1, 1)
    assert late.precision == 0.5 and late.delay == pytest.approx(5.0)


def test_quiet_moments_skip_ends_right_after_an_event():
    assert quiet_moments(LOG, [2.0, 5.4, 6.0, 14.0, 14.1, 14.2, 16.0]) == [2.0, 6.0, 14.2, 16.0]
    # 5.4: the alarm came on 0.4 s before; 14.0, 14.1: the beep at 13.7 less than 0.5 s before; 14.2: exactly
    # 0.5 s after it, on the last frame the model saw (the one at t - 0.5)


def test_setting_parse():
    assert Setting.parse("omnisift@0.25") == Setting("omnisift", 0.25)
    assert Setting.parse("full") == Setting("full", None) and Setting("random", 0.35).label == "random 35%"
    with pytest.raises(ValueError, match="'random@x'"):
        Setting.parse("random@x")


@pytest.fixture(scope="module")
def world_chunks():
    return list(read_chunks({"type": "world", "seed": 5, "scenario": "busy", "duration": 10, "width": 56,
                             "height": 56}))


@pytest.fixture(scope="module")
def tiny(tiny_model_path):
    from omnisift.loading import load_model

    return load_model(tiny_model_path)


def test_score_options_equals_score_per_option(tiny, world_chunks):
    session = OmniSession.from_model(tiny, compressor="full", max_pixels=56 * 56)
    for c in world_chunks[:3]:
        session.append(c)
    length = len(session.context)
    options = ("yes", "no", "medium", "very high", "3")
    prompt = "Was the last beep low, medium or high? Answer with one of: low, medium, high."
    together = session.score_options(prompt, options)
    assert len(session.context) == length
    alone = [session.score(prompt, o) for o in options]
    # float32 sums in another order: 1e-6 apart; one position off moves them by 1e-4 here (random weights)
    torch.testing.assert_close(torch.tensor(together), torch.tensor(alone), rtol=0, atol=1e-5)
    assert len({round(x, 3) for x in together}) == len(options)
    with pytest.raises(ValueError, match="no tokens"):
        session.score_options(prompt, ("yes", ""))


def test_shared_encoding_leaves_each_session_as_its_own_append_would(tiny, world_chunks):
    def sessions():
        return [OmniSession.from_model(tiny, compressor=name, retention=r, max_pixels=56 * 56)
                for name, r in (("full", None), ("omnisift", 0.25), ("random", 0.35))]

    shared, alone = sessions(), sessions()
    for c in world_chunks[:4]:
        kept = append_all(shared, c)
        for s, k in zip(alone, kept, strict=True):
            mine = s.append(c)
            assert torch.equal(mine.positions, k.positions) and torch.equal(mine.tokens, k.tokens)
    prompt = "Is the alarm sounding? Answer yes or no."
    for a, b in zip(shared, alone, strict=True):
        assert torch.equal(a.context_positions(), b.context_positions())
        assert a.score_options(prompt, ("Yes", "No")) == b.score_options(prompt, ("Yes", "No"))
    assert len(shared[0].context) > len(shared[2].context) > len(shared[1].context)
