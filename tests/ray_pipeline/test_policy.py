"""The one rule for failed actor calls (`pipeline.ray.policy`), driven with a fake clock."""

from __future__ import annotations

from pipeline.ray.policy import FailurePolicy, Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_chunk_is_sent_again_while_its_actor_restarts_and_lost_once_the_wait_is_over():
    clock = Clock()
    policy = FailurePolicy.for_chunk(restart_wait=5.0, clock=clock)
    verdicts = []
    for t in (100.0, 102.0, 104.9, 105.0):
        clock.now = t
        verdicts.append(policy.judge("model", gone=True, restarting=True))
    assert verdicts == [Verdict.RETRY, Verdict.RETRY, Verdict.RETRY, Verdict.LOSE]
    assert policy.why == "timeout"


def test_a_chunk_wait_counts_from_when_it_was_first_sent_not_from_the_first_failure():
    clock = Clock()
    policy = FailurePolicy.for_chunk(restart_wait=5.0, clock=clock)
    clock.now = 106.0  # the first call took 6 s before it failed
    assert policy.judge("encoder", gone=True, restarting=True) is Verdict.LOSE


def test_an_error_raised_inside_an_actor_loses_the_chunk_at_once():
    policy = FailurePolicy.for_chunk(restart_wait=30.0, clock=Clock())
    assert policy.judge("model", gone=False, restarting=False) is Verdict.LOSE
    assert policy.why == "raised"


def test_the_same_actor_dead_twice_in_a_row_fails_the_stream_but_once_is_retried():
    policy = FailurePolicy.for_chunk(restart_wait=30.0, clock=Clock())
    assert policy.judge("model", gone=True, restarting=False) is Verdict.RETRY
    assert policy.judge("model", gone=True, restarting=False) is Verdict.FAIL
    assert policy.why == "dead"


def test_dead_once_then_restarting_or_another_actor_starts_the_count_again():
    policy = FailurePolicy.for_chunk(restart_wait=30.0, clock=Clock())
    assert policy.judge("model", gone=True, restarting=False) is Verdict.RETRY
    assert policy.judge("model", gone=True, restarting=True) is Verdict.RETRY
    assert policy.judge("model", gone=True, restarting=False) is Verdict.RETRY
    assert policy.judge("encoder", gone=True, restarting=False) is Verdict.RETRY
    assert policy.judge("encoder", gone=True, restarting=False) is Verdict.FAIL


def test_a_source_that_raises_fails_the_stream():
    policy = FailurePolicy.for_source(give_up=60.0, clock=Clock())
    assert policy.judge("source", gone=False, restarting=False) is Verdict.FAIL


def test_a_source_away_for_the_give_up_time_fails_the_stream_counted_from_its_first_failure():
    clock = Clock()
    policy = FailurePolicy.for_source(give_up=60.0, clock=clock)
    clock.now = 500.0  # a long healthy run first: the count starts at the first failure
    assert policy.judge("source", gone=True, restarting=True) is Verdict.RETRY
    clock.now = 559.0
    assert policy.judge("source", gone=True, restarting=True) is Verdict.RETRY
    clock.now = 560.0
    assert policy.judge("source", gone=True, restarting=True) is Verdict.FAIL
    assert policy.why == "timeout"


def test_a_call_that_goes_through_clears_the_record():
    clock = Clock()
    policy = FailurePolicy.for_source(give_up=60.0, clock=clock)
    assert policy.judge("source", gone=True, restarting=False) is Verdict.RETRY
    clock.now = 159.0
    policy.succeeded()
    assert policy.judge("source", gone=True, restarting=False) is Verdict.RETRY  # dead once again, not twice
    clock.now = 218.0
    assert policy.judge("source", gone=True, restarting=True) is Verdict.RETRY  # 59 s since the new failure
