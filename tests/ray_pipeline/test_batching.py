"""`MicroBatcher`, the encoder actor's gathering of concurrent calls, without Ray: batch sizes, the wait
bound, one item per key in key order, and each item's exception reaching only its caller. Every test
bounds its threads' joins; no assertion is on time."""

from __future__ import annotations

import threading
import time

import pytest

from pipeline.ray.batching import MicroBatcher

JOIN = 10.0  # seconds any thread of a test may take


class Gated:
    """A batch function that records each batch's items and holds the first batch until `release`."""

    def __init__(self) -> None:
        self.batches: list[list] = []
        self.gate = threading.Event()

    def __call__(self, items: list) -> list:
        if not self.batches:
            self.batches.append(list(items))
            assert self.gate.wait(JOIN)
        else:
            self.batches.append(list(items))
        return [ValueError(f"bad {x}") if str(x).startswith("bad") else f"done {x}" for x in items]


def start(batcher: MicroBatcher, item, key, results: dict) -> threading.Thread:
    def call():
        try:
            results[item] = batcher.submit(item, key)
        except Exception as e:  # noqa: BLE001 - kept for the test to check
            results[item] = e
    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def wait_until(condition) -> None:
    deadline = time.monotonic() + JOIN
    while not condition():
        assert time.monotonic() < deadline, "the batcher did not get there in time"
        time.sleep(0.005)


def hold_first_batch(batcher: MicroBatcher, run: Gated, results: dict) -> threading.Thread:
    """A first item, on key 'first', whose batch is running and held: the items submitted next wait."""
    thread = start(batcher, "first", "first", results)
    wait_until(lambda: len(run.batches) == 1)
    return thread


def test_a_lone_submit_returns_its_result_in_a_batch_of_one_after_the_wait():
    run = Gated()
    run.gate.set()
    batcher = MicroBatcher(run, max_batch=4, max_wait=0.02)
    assert batcher.submit("a0", "a") == "done a0"
    assert batcher.submit("b0", "b") == "done b0"
    assert batcher.submit("a1", "a") == "done a1"  # two keys seen: it waits up to max_wait for b, alone
    assert run.batches == [["a0"], ["b0"], ["a1"]]
    assert batcher.stats().sizes == {1: 3}


def test_concurrent_submits_form_batches_of_at_most_max_batch():
    run, results = Gated(), {}
    batcher = MicroBatcher(run, max_batch=4, max_wait=0.05)
    threads = [hold_first_batch(batcher, run, results)]
    threads += [start(batcher, f"s{i}", f"stream{i}", results) for i in range(6)]
    wait_until(lambda: batcher.waiting() == 6)
    run.gate.set()
    for t in threads:
        t.join(JOIN)
    assert [len(b) for b in run.batches] == [1, 4, 2]
    assert sorted(x for b in run.batches[1:] for x in b) == [f"s{i}" for i in range(6)]
    assert results == {"first": "done first", **{f"s{i}": f"done s{i}" for i in range(6)}}
    stats = batcher.stats()
    assert (stats.batches, stats.items, stats.largest, stats.multi) == (3, 7, 4, 2)


def test_an_items_exception_reaches_only_its_caller():
    run, results = Gated(), {}
    batcher = MicroBatcher(run, max_batch=8, max_wait=0.05)
    threads = [hold_first_batch(batcher, run, results)]
    threads += [start(batcher, item, item, results) for item in ("ok1", "bad", "ok2")]
    wait_until(lambda: batcher.waiting() == 3)
    run.gate.set()
    for t in threads:
        t.join(JOIN)
    assert sorted(run.batches[1]) == ["bad", "ok1", "ok2"]  # one batch
    assert isinstance(results["bad"], ValueError) and str(results["bad"]) == "bad bad"
    assert (results["ok1"], results["ok2"]) == ("done ok1", "done ok2")


def test_a_failing_batch_function_reaches_every_caller_of_that_batch():
    def broken(items):
        raise RuntimeError("towers broke")
    batcher = MicroBatcher(broken, max_batch=2, max_wait=0.0)
    with pytest.raises(RuntimeError, match="towers broke"):
        batcher.submit("x", "k")


def test_a_keys_items_go_one_per_batch_earliest_order_first():
    run, results = Gated(), {}
    batcher = MicroBatcher(run, max_batch=8, max_wait=0.05, order=lambda item: {"a1": 1, "a2": 2}.get(item, 0))
    threads = [hold_first_batch(batcher, run, results)]
    threads.append(start(batcher, "a2", "a", results))  # the later chunk of stream a comes in first
    wait_until(lambda: batcher.waiting() == 1)
    threads += [start(batcher, "a1", "a", results), start(batcher, "b1", "b", results)]
    wait_until(lambda: batcher.waiting() == 3)
    run.gate.set()
    for t in threads:
        t.join(JOIN)
    assert [sorted(b) for b in run.batches[1:]] == [["a1", "b1"], ["a2"]]


@pytest.mark.parametrize("max_batch,max_wait", [(0, 0.01), (2, -1.0)])
def test_bad_bounds_are_refused_in_one_line(max_batch, max_wait):
    with pytest.raises(ValueError, match="max_batch must be at least 1|max_wait must be at least 0"):
        MicroBatcher(lambda items: items, max_batch=max_batch, max_wait=max_wait)
