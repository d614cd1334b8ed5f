"""The persistent event history of a pipeline: SQLite (stdlib) in WAL mode, one `events` table with typed
columns, indexed by stream and time and by kind and time.

    kind     answer | alert | stream (a state change) | source (a reconnect or a gap) | clip (an alert clip
             written or not) | webhook (a delivery that failed for good) | stats (one per chunk, if asked)
    time     wall clock (seconds since the epoch) when the record was made
    stream, media_time, question, text (an answer's text, a state's or failure's detail), p_yes, state,
    clip     the fields the dashboard and the queries use; `data` holds the whole event as JSON

Writes never touch the event loop: `History.submit` puts the record in a bounded queue and returns; one
thread of its own writes batches. A full queue loses the record and counts it (`dropped`), so a slow
disk never holds a chunk back. A write the database refuses (disk full, read-only, an I/O error) loses its
records and counts them (`failed`, and `on_fail`); it is logged in one line when writes start failing and
one when they work again, and never stops the writer or the pipeline. On `close` the writer checkpoints
the WAL into the database file (a copy of the file alone then has every record). The same thread enforces
retention: records older than `max_age_days`, and past `max_bytes` the oldest ones, are deleted, and the
freed pages given back to the file system.
Queries open a read-only connection of their own (WAL lets them read while the writer writes).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import HistoryConfig

log = logging.getLogger(__name__)

KINDS = ("answer", "alert", "stream", "source", "clip", "webhook", "stats")
COLUMNS = ("time", "kind", "stream", "media_time", "question", "text", "p_yes", "state", "clip", "data")
SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    stream TEXT,
    media_time REAL,
    question TEXT,
    text TEXT,
    p_yes REAL,
    state TEXT,
    clip TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_stream_time ON events (stream, time);
CREATE INDEX IF NOT EXISTS events_kind_time ON events (kind, time);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
"""
BATCH = 256  # records per transaction at most
PRUNE_EVERY = 30.0  # seconds between retention passes (and after close)


@dataclass(frozen=True)
class Record:
    """One row of `events`, made from an event's JSON (`pipeline.messages` `to_json`, or the serve
    layer's own clip and webhook records)."""

    time: float
    kind: str
    stream: str | None
    media_time: float | None
    question: str | None
    text: str | None
    p_yes: float | None
    state: str | None
    clip: str | None
    data: str

    def row(self) -> tuple:
        return tuple(getattr(self, c) for c in COLUMNS)


def record_of(event: dict, now: float) -> Record:
    """The row for an event's JSON; `kind` is its `type` ("alert" for a watch evaluation that alerted)."""
    kind = event["type"]
    text = event.get("text") if kind == "answer" else event.get("detail") or event.get("error")
    return Record(float(event.get("time", now)), kind, event.get("stream"), event.get("media_time"),
                  event.get("question"), text, event.get("p_yes"), event.get("state") or event.get("kind"),
                  event.get("clip"), json.dumps(event, allow_nan=False, default=str))


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection to the history file: WAL, incremental vacuum, a 5 s busy wait."""
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0, check_same_thread=False)
    else:
        conn = sqlite3.connect(path, timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect on a new file only
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.executescript(SCHEMA)
    return conn


class History:
    """The writer thread and the queries. `start()`, `submit(event)` from anywhere, `close()` to flush."""

    def __init__(self, spec: HistoryConfig, *, clock: Callable[[], float] = time.time,
                 on_drop: Callable[[], None] | None = None, on_fail: Callable[[int], None] | None = None) -> None:
        if spec.path is None:
            raise ValueError("history.path is not set")
        self.spec = spec
        self.path = Path(spec.path)
        self.clock = clock
        self.on_drop = on_drop
        self.on_fail = on_fail
        self.dropped = 0  # records lost to a full queue
        self.failed = 0  # records the database refused (disk full, read-only, I/O error)
        self._failing = False  # writes fail now (said once, and once again when they work)
        self.written = 0
        self.pruned = 0  # records deleted by retention
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connect(self.path).close()  # a bad path or a file that is not a database fails here, at start
        except (OSError, sqlite3.Error) as e:
            raise OSError(f"history.path {str(self.path)!r}: {e}") from None
        self._queue: queue.Queue = queue.Queue(spec.queue_size)
        self._thread = threading.Thread(target=self._run, name="history-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, event: dict) -> bool:
        """Queue one event's record without waiting; False (counted) if the queue is full."""
        try:
            self._queue.put_nowait(record_of(event, self.clock()))
            return True
        except queue.Full:
            self.dropped += 1
            if self.on_drop is not None:
                self.on_drop()
            return False

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop the thread (waits at most `timeout` seconds)."""
        if not self._thread.is_alive():
            return
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            log.warning("history: the writer did not drain its queue within %gs", timeout)
        self._thread.join(timeout)

    # ---- the writer thread -----------------------------------------------------------------------

    def _run(self) -> None:
        conn = None
        last_prune = 0.0
        try:
            while True:
                batch = self._take()
                stop = batch and batch[-1] is None
                rows = [r.row() for r in batch if r is not None]
                conn = conn or self._attempt("open the database", connect, self.path)
                if rows:
                    self._write(conn, rows)
                if conn is not None and (stop or time.monotonic() - last_prune >= PRUNE_EVERY):
                    self._attempt("apply retention", self.prune, conn)
                    last_prune = time.monotonic()
                if stop:
                    if conn is not None:
                        self._attempt("checkpoint", conn.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
                    return
        finally:
            if conn is not None:
                conn.close()

    def _attempt(self, what: str, fn: Callable, *args: Any) -> Any:
        """`fn(*args)`, or None when the database fails it (said once while failures last)."""
        try:
            result = fn(*args)
        except (sqlite3.Error, OSError) as e:
            self._failed(f"cannot {what}: {e}")
            return None
        return result

    def _failed(self, why: str, records: int = 0) -> None:
        if records:
            self.failed += records
            if self.on_fail is not None:
                self.on_fail(records)
        if not self._failing:
            self._failing = True
            log.error("history %s: %s; records are lost (counted) until it works again", self.path, why)

    def _take(self) -> list[Record | None]:
        """The next records: waits for one (at most PRUNE_EVERY seconds), then takes what else is queued."""
        try:
            batch = [self._queue.get(timeout=PRUNE_EVERY)]
        except queue.Empty:
            return []
        while len(batch) < BATCH and batch[-1] is not None:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return batch

    def _write(self, conn: sqlite3.Connection | None, rows: list[tuple]) -> None:
        if conn is None:
            self._failed("no database", len(rows))
            return
        try:
            with conn:
                conn.executemany(f"INSERT INTO events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
                                 rows)
        except (sqlite3.Error, OSError) as e:
            self._failed(f"{len(rows)} records not written: {e}", len(rows))
            return
        self.written += len(rows)
        if self._failing:
            self._failing = False
            log.warning("history %s: writes work again (%d records lost meanwhile)", self.path, self.failed)

    def prune(self, conn: sqlite3.Connection) -> int:
        """Delete records older than `max_age_days`, then the oldest until the data fits in `max_bytes`;
        give the freed pages back. Returns how many records went."""
        gone = conn.execute("DELETE FROM events WHERE time < ?",
                            (self.clock() - self.spec.max_age_days * 86400.0,)).rowcount
        conn.commit()
        while used_bytes(conn) > self.spec.max_bytes:
            total = conn.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            if total == 0:
                break
            n = max(1, total // 10)  # a tenth at a time: bounded passes, newest records kept
            gone += conn.execute("DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?)",
                                 (n,)).rowcount
            conn.commit()
            vacuum(conn)
        if gone:
            vacuum(conn)
            self.pruned += gone
        return gone

    # ---- queries ---------------------------------------------------------------------------------

    def query(self, *, stream: str | None = None, kinds: Iterable[str] = (), since: float | None = None,
              until: float | None = None, before_id: int | None = None, limit: int = 100) -> list[dict]:
        """Records (the event's JSON with `id` and `time`), newest first, filtered by stream, kinds, wall-clock
        time [since, until) and id (for paging: the smallest id of the previous page). Blocking: call it in
        a thread from async code."""
        where, args = [], []
        for column, op, value in (("stream", "=", stream), ("time", ">=", since), ("time", "<", until),
                                  ("id", "<", before_id)):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        kinds = list(kinds)
        if kinds:
            where.append(f"kind IN ({', '.join('?' * len(kinds))})")
            args += kinds
        sql = "SELECT id, time, data FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        conn = connect(self.path, readonly=True)
        try:
            rows = conn.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        finally:
            conn.close()
        return [{"id": i, "time": t, **json.loads(data)} for i, t, data in rows]

    def stats(self) -> dict[str, Any]:
        return {"path": str(self.path), "written": self.written, "dropped": self.dropped, "failed": self.failed,
                "pruned": self.pruned, "queued": self._queue.qsize()}


def used_bytes(conn: sqlite3.Connection) -> int:
    """Bytes of the pages holding data (the file's pages less its free list)."""
    pages = conn.execute("PRAGMA page_count").fetchone()[0] - conn.execute("PRAGMA freelist_count").fetchone()[0]
    return pages * conn.execute("PRAGMA page_size").fetchone()[0]


def vacuum(conn: sqlite3.Connection) -> None:
    """Give the free pages back and truncate the WAL. `executescript` steps the pragma to its end (through
    `execute`, Python's sqlite3 steps it once: one page)."""
    conn.executescript("PRAGMA incremental_vacuum; PRAGMA wal_checkpoint(TRUNCATE);")
