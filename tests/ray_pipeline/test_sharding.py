"""Streams -> replicas without Ray (`pipeline.ray.sharding`): the load score, the least-load choice, sticky
assignment, failover of a dead replica's streams, and the replica count from the config. Loads are
worked out by hand from the score's definition: rate = (appends in the window + 0.5 * 10) / (elapsed + 10),
load = rate + context tokens / 4096."""

from __future__ import annotations

import pytest

from pipeline.ray.sharding import NoReplicaLeft, Sharding, resolve_replicas


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _feed(sh: Sharding, clock: _Clock, stream: str, appends: int, tokens: int) -> None:
    """`appends` chunks of `stream` spread over the next 10 s (the clock ends 10 s later)."""
    for _ in range(appends):
        sh.appended(stream, tokens)
    sh.streams[stream].tokens = tokens


def test_replica_count_from_the_config():
    assert resolve_replicas(3, cluster_gpus=8) == 3
    assert resolve_replicas("auto", cluster_gpus=0) == 1  # this CPU machine
    assert resolve_replicas("auto", cluster_gpus=4) == 4
    assert resolve_replicas("auto", cluster_gpus=2.5) == 2  # whole GPUs only
    assert resolve_replicas(None, cluster_gpus=4, default=3) == 3  # encoders: as many as model replicas


def test_a_new_stream_counts_as_real_time_and_streams_spread_evenly():
    clock = _Clock()
    sh = Sharding("model", 2, clock=clock)
    assert [sh.assign(s) for s in ("a", "b", "c", "d")] == [0, 1, 0, 1]
    assert sh.streams["a"].rate(clock.now) == pytest.approx(0.5)  # (0 + 5) / (0 + 10)
    assert sh.load(0) == pytest.approx(1.0) == sh.load(1)


def test_a_new_stream_goes_to_the_replica_with_the_least_load():
    clock = _Clock()
    sh = Sharding("model", 3, clock=clock)
    assert [sh.assign(s) for s in ("fast", "big", "small")] == [0, 1, 2]
    _feed(sh, clock, "fast", appends=15, tokens=0)  # many chunks per second, empty context
    _feed(sh, clock, "big", appends=3, tokens=8192)  # few chunks, a large context
    _feed(sh, clock, "small", appends=5, tokens=2048)
    clock.now += 10.0
    # fast: (15 + 5) / 20 = 1.0; big: (3 + 5) / 20 + 8192 / 4096 = 2.4; small: (5 + 5) / 20 + 0.5 = 1.0
    assert [sh.load(r) for r in range(3)] == pytest.approx([1.0, 2.4, 1.0])
    assert sh.assign("new") == 0  # 0 and 2 tie on load and on streams: the lower id
    # now 0 holds two streams: fast 1.0 + new 0.5 (its first 0 s: the nominal rate)
    assert sh.load(0) == pytest.approx(1.5)
    assert sh.assign("newer") == 2
    _feed(sh, clock, "small", appends=0, tokens=16384)  # small's context grew: 1.0 - 0.5 + 4 -> 4.5 (+0.5 newer)
    assert sh.assign("newest") == 0  # 0: 1.5, 1: 2.4, 2: 5.0


def test_a_stream_stays_on_its_replica_when_loads_change():
    clock = _Clock()
    sh = Sharding("model", 2, clock=clock)
    assert sh.assign("a") == 0 and sh.assign("b") == 1
    _feed(sh, clock, "a", appends=40, tokens=30000)
    clock.now += 10
    assert sh.assign("a") == 0 and sh.replica_of("a") == 0
    assert sh.assign("c") == 1


def test_the_rate_is_measured_over_the_window_and_smoothed_towards_real_time():
    clock = _Clock()
    sh = Sharding("encoder", 1, clock=clock)
    sh.assign("file")
    for _ in range(30):  # 2 chunks per second for 15 s
        sh.appended("file")
        clock.now += 0.5
    assert sh.streams["file"].rate(clock.now) == pytest.approx((30 + 5) / (15 + 10))
    clock.now += 60  # idle past the window: only the prior is left
    assert sh.streams["file"].rate(clock.now) == pytest.approx(5 / (30 + 10))


def test_a_dead_replica_hands_its_streams_to_the_least_loaded_others_heaviest_first():
    clock = _Clock()
    sh = Sharding("model", 3, nodes=["n0", "n1", "n2"], clock=clock)
    for s in ("a", "b", "c", "d", "e", "f"):
        sh.assign(s)
    assert [sh.streams_of(r) for r in range(3)] == [["a", "d"], ["b", "e"], ["c", "f"]]
    _feed(sh, clock, "a", appends=0, tokens=4096)  # replica 0: a 1.5 + d 0.5 = 2.0
    _feed(sh, clock, "b", appends=0, tokens=12288)  # replica 1: b 3.5, e 0.5: the dying one
    _feed(sh, clock, "c", appends=0, tokens=2048)  # replica 2: c 1.0 + f 0.5 = 1.5
    moved = sh.fail(1)
    # b (3.5) first: to 2 (1.5 < 2.0), now 2.0 + 0.5 (b comes with an empty context) = 2.0 vs 0's 2.0 ->
    # a tie on load; 0 has 2 streams, 2 has 3: e goes to 0
    assert moved == {"b": 2, "e": 0}
    assert sh.streams["b"].tokens == 0 and not sh.replicas[1].alive
    assert sh.fail(1) == {}  # told twice (two of its streams found it dead): once
    assert sh.assign("g") == 2  # 0: a 1.5 + d 0.5 + e 0.5 = 2.5; 2: 2.0; the dead 1 (0.0) takes none
    view = {v["id"]: v for v in sh.view()}
    assert view[1] == {"id": 1, "node": "n1", "alive": False, "streams": [], "load": 0, "context_tokens": 0}
    assert view[2]["streams"] == ["b", "c", "f", "g"] and view[2]["context_tokens"] == 2048


def test_when_no_replica_is_left_the_streams_cannot_move():
    sh = Sharding("model", 2, clock=_Clock())
    sh.assign("a")
    sh.assign("b")
    assert sh.fail(0) == {"a": 1}
    with pytest.raises(NoReplicaLeft, match=r"^no model replica left \(2 started, all dead for good\)$"):
        sh.fail(1)
    assert not any(r.alive for r in sh.replicas)
    with pytest.raises(NoReplicaLeft):
        sh.assign("c")
