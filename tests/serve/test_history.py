"""The event history without Ray: SQLite in WAL mode, filters, retention by age and by size, a full queue
that loses records without waiting, and records that outlive the writer (a restart)."""

from __future__ import annotations

import sqlite3
import time

import pytest

from pipeline.config import HistoryConfig
from pipeline.serve.history import History

pytestmark = pytest.mark.timeout(60)


def answer(stream: str, question: str, t: float) -> dict:
    return {"type": "answer", "stream": stream, "question": question, "text": f"re: {question}", "media_time": 4.0,
            "lag": 0.1, "latency": 0.2, "chunks_in_context": 2, "time": t}


def history(tmp_path, clock=time.time, **spec) -> History:
    h = History(HistoryConfig(path=str(tmp_path / "h.sqlite3"), **spec), clock=clock)
    h.start()
    return h


def test_the_file_is_sqlite_in_wal_mode_with_stream_time_indexes(tmp_path):
    h = history(tmp_path)
    h.close()
    conn = sqlite3.connect(tmp_path / "h.sqlite3")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {row[1]: row[2] for row in conn.execute("SELECT * FROM sqlite_master WHERE type = 'index'")}
    assert {"events_stream_time", "events_kind_time", "events_time"} <= set(indexes)
    assert [c[2] for c in conn.execute("PRAGMA index_info(events_stream_time)")] == ["stream", "time"]


def test_queries_filter_by_stream_kind_and_time_newest_first(tmp_path):
    h = history(tmp_path)
    now = time.time()
    for i, (stream, kind) in enumerate([("a", "answer"), ("b", "answer"), ("a", "alert"), ("a", "answer")]):
        event = answer(stream, f"q{i}", now + i) if kind == "answer" else {
            "type": "alert", "stream": stream, "question": f"q{i}", "p_yes": 0.9, "time": now + i}
        h.submit(event)
    h.close()
    assert [r["question"] for r in h.query(stream="a")] == ["q3", "q2", "q0"]
    assert [r["question"] for r in h.query(kinds=["answer"])] == ["q3", "q1", "q0"]
    assert [r["question"] for r in h.query(since=now + 1, until=now + 3)] == ["q2", "q1"]
    assert [r["question"] for r in h.query(limit=2)] == ["q3", "q2"]
    page = h.query(limit=2)
    assert [r["question"] for r in h.query(before_id=page[-1]["id"])] == ["q1", "q0"]


def test_records_outlive_the_writer_and_a_new_one_appends(tmp_path):
    h = history(tmp_path)
    h.submit(answer("a", "before restart", time.time()))
    h.close()
    again = history(tmp_path)
    again.submit(answer("a", "after restart", time.time()))
    again.close()
    assert [r["question"] for r in again.query()] == ["after restart", "before restart"]


def test_records_older_than_max_age_are_deleted(tmp_path):
    now = [1_000_000.0]
    h = history(tmp_path, clock=lambda: now[0], max_age_days=1.0)
    h.submit(answer("a", "old", now[0] - 2 * 86400))
    h.submit(answer("a", "recent", now[0] - 3600))
    h.close()  # closing runs a retention pass
    assert [r["question"] for r in h.query()] == ["recent"]
    assert h.pruned == 1


def test_past_max_bytes_the_oldest_records_go_and_the_file_shrinks(tmp_path):
    limit = 256 * 1024
    h = history(tmp_path, max_bytes=limit, queue_size=10_000)
    now = time.time()
    for i in range(3000):
        h.submit(answer("a", f"q{i:05d} " + "x" * 300, now + i * 1e-3))
    h.close()
    conn = sqlite3.connect(tmp_path / "h.sqlite3")
    used = conn.execute("PRAGMA page_count").fetchone()[0] * conn.execute("PRAGMA page_size").fetchone()[0]
    assert used <= limit * 1.1  # the freed pages went back to the file system
    kept = [r["question"][:6] for r in h.query(limit=10_000)]
    assert 0 < len(kept) < 3000 and kept[0] == "q02999"  # the newest stay
    assert kept == sorted(kept, reverse=True) and h.pruned == 3000 - len(kept)


def test_a_full_queue_loses_the_record_counts_it_and_does_not_wait(tmp_path):
    h = History(HistoryConfig(path=str(tmp_path / "h.sqlite3"), queue_size=3))  # not started: nothing drains
    # nothing drains the queue, so a submit that waited for room would never return (the test's timeout)
    results = [h.submit(answer("a", f"q{i}", time.time())) for i in range(10)]
    assert results == [True] * 3 + [False] * 7 and h.dropped == 7


def test_a_history_path_that_cannot_be_a_database_fails_in_one_line(tmp_path):
    bad = tmp_path / "not-a-db.sqlite3"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(OSError, match=r"^history.path '.*not-a-db.sqlite3': file is not a database$"):
        History(HistoryConfig(path=str(bad)))


def test_a_database_that_refuses_writes_loses_records_counted_says_so_once_and_the_writer_goes_on(
        tmp_path, monkeypatch, caplog):
    """Disk full, as SQLite itself reports it: the writer's connection may grow the file to a few pages only
    (`max_page_count`), so inserts fail with SQLITE_FULL. Nothing raises out of the writer; records lost are
    counted (and passed to `on_fail`, the metric); one ERROR line says so; `close` still returns."""
    import pipeline.serve.history as module

    real = module.connect

    def small_disk(path, *, readonly=False):
        conn = real(path, readonly=readonly)
        if not readonly:
            conn.execute(f"PRAGMA max_page_count = {conn.execute('PRAGMA page_count').fetchone()[0] + 2}")
        return conn

    monkeypatch.setattr(module, "connect", small_disk)
    lost: list[int] = []
    h = History(HistoryConfig(path=str(tmp_path / "h.sqlite3"), queue_size=100_000), on_fail=lost.append)
    h.start()
    with caplog.at_level("ERROR", logger="pipeline.serve.history"):
        for i in range(3000):
            h.submit(answer("cam", "q" * 500 + str(i), time.time()))
        h.close()
    assert not h._thread.is_alive()
    assert h.failed > 0 and sum(lost) == h.failed and h.written + h.failed == 3000
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "full" in errors[0].getMessage() and "\n" not in errors[0].getMessage()
    assert len(h.query(limit=1000)) == h.written


def test_close_checkpoints_the_wal_into_the_database_file(tmp_path):
    h = history(tmp_path)
    for i in range(50):
        h.submit(answer("cam", f"q{i}", time.time()))
    h.close()
    wal = tmp_path / "h.sqlite3-wal"
    assert not wal.exists() or wal.stat().st_size == 0
    copy = tmp_path / "copy.sqlite3"
    copy.write_bytes((tmp_path / "h.sqlite3").read_bytes())  # the file alone, without its WAL
    assert sqlite3.connect(copy).execute("SELECT COUNT(*) FROM events").fetchone()[0] == 50
