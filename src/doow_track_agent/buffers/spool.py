"""The agent's durable queue: SQLite in WAL mode, written by one thread with group commit.

Why this shape:

* An event is acknowledged only once its row is committed, and a row is
  deleted only once the API has answered for it, so ``kill -9`` at any moment
  loses nothing acknowledged (at worst an event is sent again with the same
  ``event_id``, which the server de-duplicates).
* All writes go through one writer thread that commits everything that queued
  up while the previous commit was syncing: one fsync serves many producers,
  and the event loop never waits on the disk.
* The delivery pump asks ``pending()`` constantly, so the queue's shape is
  kept in memory as counters (O(1)), never as one object per event: a million
  spooled events cost the agent no Python memory.  Rows are leased in id
  order through a cursor; ids are assigned by the writer in commit order, so
  "every id up to the last committed one" is exactly what the pump may see.
* A tailed file's checkpoint is a row committed in the same transaction as
  the events read up to it: after a crash either both are there or neither
  is, so the file tail resumes with no line spooled twice and none skipped.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from typing import Any, Callable, Deque, List, NamedTuple, Optional, Sequence, Tuple

from doow_track_agent.delivery.pump import Queued
from doow_track_agent.intake.events import DEDUP_WINDOW_SECONDS, Accepted
from doow_track_agent.intake.wire import BATCH_OVERHEAD
from doow_track_agent.stats import Stats

log = logging.getLogger(__name__)

DB_NAME = "spool.sqlite3"
ROW_OVERHEAD = 64  # bytes counted per row beyond the body: ids, timestamps, b-tree cells
_MAX_GROUP = 20000
_REMOVE_RETRY_SECONDS = 1.0
_FORMAT = 1  # the spool's schema version, in SQLite's user_version
_OVERDUE = -1e12
_NOW = "(julianday('now') - 2440587.5) * 86400.0"  # Unix time, computed by SQLite  # an "added" time that makes restored or released events due at once

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, body BLOB NOT NULL, added REAL NOT NULL);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY, event_id TEXT NOT NULL, body BLOB NOT NULL, reason TEXT NOT NULL, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS checkpoints (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, fingerprint TEXT NOT NULL, epoch INTEGER NOT NULL,
    offset INTEGER NOT NULL, line INTEGER NOT NULL, tail TEXT NOT NULL, path TEXT NOT NULL,
    PRIMARY KEY (dev, ino));
"""


class SpoolError(Exception):
    """The spool cannot keep events (disk full, read-only or broken state directory)."""


class SpoolFull(SpoolError):
    """``spool.maxBytes`` reached: refuse explicitly rather than drop anything."""


def row_size(event: Accepted) -> int:
    """What one event counts against ``spool.maxBytes``."""
    return len(event.body) + len(event.event_id) + ROW_OVERHEAD


def db_path(directory: str) -> str:
    return os.path.join(directory, DB_NAME)


def connect(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN/COMMIT) with WAL and the given sync level."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def _synchronous(fsync: str) -> str:
    """``batch``: each group commit reaches the disk before acks; ``off``: survives an agent crash only."""
    return "FULL" if fsync == "batch" else "NORMAL"


class Checkpoint(NamedTuple):
    """How far a tailed file is spooled: its identity, and the end of its last complete line read.

    ``tail`` is a hash of the bytes just before ``offset``: if they changed, the
    file was rewritten in place (copy-truncate) even when it grew past the offset.
    """

    dev: int
    ino: int
    fingerprint: str
    epoch: int
    offset: int
    line: int
    tail: str
    path: str


class _Op(NamedTuple):
    """One unit of work for the writer thread; ``done`` runs in the loop with the error, if any."""

    kind: str  # append | delete | dead | sync | forget
    rows: Sequence[Any]
    done: Optional[Callable[[Optional[BaseException], int], None]]
    checkpoint: Optional[Checkpoint] = None


class _Writer(threading.Thread):
    """Owns the write connection; commits queued operations in groups."""

    def __init__(self, path: str, synchronous: str, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(name="spool-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self._loop = loop
        self._ops: "queue.SimpleQueue[Optional[_Op]]" = queue.SimpleQueue()

    def submit(self, op: Optional[_Op]) -> None:
        self._ops.put(op)

    def run(self) -> None:
        conn = connect(self._path, self._synchronous)
        try:
            while True:
                group, stopping = self._take()
                if group:
                    self._commit(conn, group)
                if stopping:
                    return
        finally:
            conn.close()

    def _take(self) -> Tuple[List[_Op], bool]:
        """Block for one op, then take whatever else queued meanwhile: that is the group."""
        group: List[_Op] = []
        op = self._ops.get()
        while op is not None:
            group.append(op)
            if len(group) >= _MAX_GROUP:
                return group, False
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                return group, False
        return group, True

    def _commit(self, conn: sqlite3.Connection, group: List[_Op]) -> None:
        results: List[Tuple[_Op, int]] = []
        error: Optional[BaseException] = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in group:
                results.append((op, self._apply(conn, op)))
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            error = SpoolError(f"spool write failed: {exc}")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            results = [(op, 0) for op in group]
        self._loop.call_soon_threadsafe(_settle, results, error)

    def _apply(self, conn: sqlite3.Connection, op: _Op) -> int:
        """Run one op inside the open transaction; returns the last id appended (appends only)."""
        if op.kind == "append":
            if op.checkpoint is not None:
                conn.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)", op.checkpoint)
            if not op.rows:
                return 0
            # Accepted rows bind as they are: no per-event Python work in this thread, which would
            # hold the GIL against the event loop.  AUTOINCREMENT ids only grow, even when every
            # row was delivered and deleted, so the lease cursor never skips a new row.
            conn.executemany("INSERT INTO events (event_id, body, added) VALUES (?, ?, " + _NOW + ")", op.rows)
            return conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        if op.kind == "delete":
            conn.executemany("DELETE FROM events WHERE id BETWEEN ? AND ?", _ranges(op.rows))
        elif op.kind == "dead":
            now = time.time()
            conn.executemany("INSERT INTO dead_letters (event_id, body, reason, at) VALUES (?, ?, ?, ?)",
                             [(q.event_id, q.body, reason, now) for q, reason in op.rows])
            conn.executemany("DELETE FROM events WHERE id = ?", [(q.ref,) for q, _ in op.rows])
        elif op.kind == "sync":
            conn.execute(f"PRAGMA synchronous={op.rows[0]}")
        elif op.kind == "forget":
            conn.executemany("DELETE FROM checkpoints WHERE dev = ? AND ino = ?", op.rows)
        return 0


def _ranges(refs: Sequence[int]) -> List[Tuple[int, int]]:
    """Runs of consecutive ids as (first, last): a leased batch is mostly one run, so one DELETE."""
    runs: List[Tuple[int, int]] = []
    for ref in sorted(refs):
        if runs and ref == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], ref)
        else:
            runs.append((ref, ref))
    return runs


def _settle(results: List[Tuple[_Op, int]], error: Optional[BaseException]) -> None:
    for op, last_id in results:
        if op.done is not None:
            op.done(error, last_id)


class Spool:
    """The queue (for the pump), the sink (for outcomes) and the store (for producers)."""

    def __init__(self, directory: str, max_bytes: int, fsync: str, stats: Stats) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.stats = stats
        self.changed = asyncio.Event()
        self.closed = False
        self.full = False
        self._fsync = fsync
        self._reader: Optional[sqlite3.Connection] = None
        self._writer: Optional[_Writer] = None
        self._stored = 0           # rows in the events table (committed)
        self._bytes = 0            # counted bytes of those rows plus appends not yet committed
        self._pending = 0          # committed rows neither leased nor delivered
        self._cursor = 0           # highest id ever leased from the table
        self._committed = 0        # highest id whose commit the loop has seen
        self._groups: Deque[Tuple[int, float]] = deque()  # (last id, monotonic time) per commit
        self._released: Deque[Queued] = deque()           # deferred events, leased again first
        self._dead = 0

    # -- life cycle ---------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the spool; everything in it becomes pending again, oldest first."""
        try:
            os.makedirs(self.directory, mode=0o750, exist_ok=True)
            path = db_path(self.directory)
            conn = connect(path, _synchronous(self._fsync))
            conn.executescript(_SCHEMA)
            # A real write now: on a read-only mount SQLite opens and reads fine, and would
            # only fail at the first event.  Refusing to start says so at once.
            conn.execute(f"PRAGMA user_version = {_FORMAT}")
            stored, size, last_id = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body) + LENGTH(event_id)), 0), COALESCE(MAX(id), 0)"
                " FROM events").fetchone()
            self._dead = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        except (OSError, sqlite3.Error) as exc:
            raise SpoolError(f"cannot open the spool in {self.directory}: {exc}") from None
        self._reader = conn
        self._stored = self._pending = stored
        self._bytes = size + stored * ROW_OVERHEAD
        self._committed = last_id
        if stored:
            self._groups.append((last_id, _OVERDUE))
            log.info("spool holds %d undelivered event(s); delivering them first", stored)
            self._warn_stale(conn)
        self._writer = _Writer(path, _synchronous(self._fsync), asyncio.get_running_loop())
        self._writer.start()

    @staticmethod
    def _warn_stale(conn: sqlite3.Connection) -> None:
        """Events spooled longer ago than the API's de-duplication window may be counted twice if resent."""
        stale = conn.execute("SELECT COUNT(*) FROM events WHERE added < ?",
                             (time.time() - DEDUP_WINDOW_SECONDS,)).fetchone()[0]
        if stale:
            log.warning("%d spooled event(s) are over 24 h old, beyond the API's de-duplication window: any of "
                        "them already delivered before a crash may be counted twice; delivering them now", stale)

    async def close(self) -> None:
        """Let the writer commit what is queued (deletes of delivered events), then stop it."""
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.submit(None)
            await asyncio.get_running_loop().run_in_executor(None, writer.join)
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def set_limits(self, max_bytes: int, fsync: str) -> None:
        """Apply reloaded ``spool.maxBytes`` and ``spool.fsync`` (the directory needs a restart)."""
        self.max_bytes = max_bytes
        if fsync != self._fsync and self._writer is not None:
            self._fsync = fsync
            self._writer.submit(_Op("sync", [_synchronous(fsync)], None))

    # -- producers ----------------------------------------------------------------

    def append(self, events: Sequence[Accepted],
               checkpoint: Optional[Checkpoint] = None) -> Tuple[int, "asyncio.Future[None]"]:
        """Queue events for the next group commit; returns how many fit and a future for them.

        The bytes are reserved now, so concurrent producers cannot overshoot
        ``maxBytes`` together; the events beyond the limit get SpoolFull from
        the caller, in order, and nothing already spooled is ever dropped.
        A ``checkpoint`` covers all of its events or none of them: it is
        committed with them, and not at all (0 fitting) if any does not fit.
        """
        future: "asyncio.Future[None]" = asyncio.get_running_loop().create_future()
        fitting, reserved = self._fit(events)
        if checkpoint is not None and fitting < len(events):
            fitting, reserved = 0, 0
        if (not fitting and checkpoint is None) or self._writer is None:
            future.set_result(None)
            return 0, future
        self._bytes += reserved
        accepted = list(events[:fitting])
        self._writer.submit(_Op("append", accepted, lambda error, last_id: self._appended(
            future, len(accepted), reserved, error, last_id), checkpoint))
        return fitting, future

    def _fit(self, events: Sequence[Accepted]) -> Tuple[int, int]:
        """How many of ``events`` fit under ``maxBytes``, and their bytes."""
        fitting, reserved = 0, 0
        for event in events:
            size = row_size(event)
            if self._bytes + reserved + size > self.max_bytes:
                self.full = True
                break
            fitting += 1
            reserved += size
        return fitting, reserved

    def _appended(self, future: "asyncio.Future[None]", count: int, size: int,
                  error: Optional[BaseException], last_id: int) -> None:
        if error is not None:
            self._bytes -= size
            if not future.done():
                future.set_exception(error)
            return
        if not future.done():
            future.set_result(None)
        if not count:
            return  # a checkpoint over invalid or blank lines only
        self._stored += count
        self._pending += count
        self._committed = last_id
        self._groups.append((last_id, time.monotonic()))
        self.stats.accepted += count
        self.changed.set()

    # -- file tail checkpoints ---------------------------------------------------------

    def checkpoints(self) -> List[Checkpoint]:
        """Every committed checkpoint (read at the tail's start)."""
        assert self._reader is not None
        return [Checkpoint(*row) for row in self._reader.execute(
            "SELECT dev, ino, fingerprint, epoch, offset, line, tail, path FROM checkpoints")]

    def forget_checkpoints(self, identities: Sequence[Tuple[int, int]]) -> None:
        """Drop the checkpoints of files that no longer exist."""
        if identities and self._writer is not None:
            self._writer.submit(_Op("forget", list(identities), None))

    # -- the Queue protocol (for the pump) ----------------------------------------

    def pending(self) -> Tuple[int, Optional[float]]:
        if not self._pending:
            return 0, None
        if self._released:
            return self._pending, _OVERDUE
        return self._pending, self._groups[0][1] if self._groups else _OVERDUE

    def lease(self, max_events: int, max_bytes: int) -> List[Queued]:
        """The oldest events not in flight: released ones first, then the table in id order."""
        batch: List[Queued] = []
        size = BATCH_OVERHEAD
        while self._released and len(batch) < max_events:
            event = self._released[0]
            if batch and size + len(event.body) + 1 > max_bytes:
                return self._leased(batch)
            batch.append(self._released.popleft())
            size += len(event.body) + 1
        wanted = max_events - len(batch)
        if wanted and self._cursor < self._committed and self._reader is not None:
            rows = self._reader.execute(
                "SELECT id, event_id, body FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (self._cursor, self._committed, wanted)).fetchall()
            taken = 0
            for ref, event_id, body in rows:
                if batch and size + len(body) + 1 > max_bytes:
                    break
                batch.append(Queued(ref, event_id, body))
                size += len(body) + 1
                self._cursor = ref
                taken += 1
            if taken == len(rows) < wanted:
                self._cursor = self._committed  # nothing else committed below it: ids may be sparse
            while self._groups and self._groups[0][0] <= self._cursor:
                self._groups.popleft()
        return self._leased(batch)

    def _leased(self, batch: List[Queued]) -> List[Queued]:
        self._pending -= len(batch)
        return batch

    # -- the Sink protocol (outcomes) ----------------------------------------------

    def delivered(self, events: List[Queued]) -> None:
        if events:
            self._remove("delete", [event.ref for event in events], events)

    def rejected(self, events: List[Tuple[Queued, str]]) -> None:
        """Permanently refused events go to the dead-letter table, reason and all."""
        if not events:
            return
        self.stats.dead_lettered += len(events)
        for event, reason in events:
            log.warning("event %s rejected by the API and dead-lettered: %s", event.event_id, reason)
        self._remove("dead", list(events), [event for event, _ in events])

    def deferred(self, events: List[Queued], reason: str) -> None:
        """Not delivered now: back to the front of the queue, still in the table."""
        if not events:
            return
        log.info("%d event(s) kept in the spool: %s", len(events), reason)
        self._released.extend(sorted(events, key=lambda event: event.ref))
        self._pending += len(events)
        self.changed.set()

    def _remove(self, kind: str, rows: list, events: List[Queued], retry: bool = False) -> None:
        """Delete answered events; a failed delete (disk full) is retried until it commits.

        Until then the rows stay in the table, so a crash meanwhile only sends them again
        with the same event_ids; retrying frees their space as soon as the disk allows.
        """
        size = sum(len(event.body) + len(event.event_id) + ROW_OVERHEAD for event in events)
        dead = len(rows) if kind == "dead" else 0

        def done(error: Optional[BaseException], _: int) -> None:
            if error is not None:
                if not retry:
                    log.error("%s; %d delivered event(s) stay in the spool until their removal commits "
                              "(retried every %.0fs)", error, len(rows), _REMOVE_RETRY_SECONDS)
                asyncio.get_running_loop().call_later(_REMOVE_RETRY_SECONDS, self._remove, kind, rows, events, True)
                return
            self._stored -= len(rows)
            self._bytes -= size
            self._dead += dead
            self.full = False

        if self._writer is not None:
            self._writer.submit(_Op(kind, rows, done))

    # -- figures ----------------------------------------------------------------

    def oldest_age(self) -> Optional[float]:
        """Seconds since the oldest stored event was spooled (one indexed lookup)."""
        if not self._stored or self._reader is None:
            return None
        row = self._reader.execute("SELECT added FROM events ORDER BY id LIMIT 1").fetchone()
        return max(0.0, time.time() - row[0]) if row else None

    def figures(self) -> dict:
        """The ``spool`` object of ``/status``."""
        return {"events": self._stored, "bytes": self._bytes, "oldest_age_seconds": self.oldest_age(),
                "max_bytes": self.max_bytes, "full": self.full, "dead_letters": self._dead}


# -- offline access: commands reading the spool beside (or without) the agent ----------


def open_existing(directory: str) -> Optional[sqlite3.Connection]:
    """A connection to an existing spool, or None; WAL lets it sit beside the running agent."""
    path = db_path(directory)
    if not os.path.exists(path):
        return None
    return connect(path)


def offline_figures(directory: str, max_bytes: int) -> Optional[dict]:
    """The ``spool`` object of ``/status``, computed from the file when no agent runs."""
    try:
        conn = open_existing(directory)
        if conn is None:
            return None
        try:
            events, size, oldest = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(body) + LENGTH(event_id)), 0), MIN(added) FROM events").fetchone()
            dead = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return None
    size += events * ROW_OVERHEAD
    return {"events": events, "bytes": size, "oldest_age_seconds": None if oldest is None else time.time() - oldest,
            "max_bytes": max_bytes, "full": size >= max_bytes, "dead_letters": dead}


class DeadLetter(NamedTuple):
    """A permanently rejected event, with the API's reason."""

    id: int
    event_id: str
    body: bytes
    reason: str
    at: float


def dead_letters(conn: sqlite3.Connection, limit: Optional[int] = None,
                 event_ids: Sequence[str] = ()) -> List[DeadLetter]:
    """Dead letters, oldest first; only those with the given event_ids when any are given."""
    query = "SELECT id, event_id, body, reason, at FROM dead_letters"
    params: List[Any] = list(event_ids)
    if event_ids:
        query += f" WHERE event_id IN ({', '.join('?' * len(event_ids))})"
    query += " ORDER BY id"
    if limit is not None:
        query += " LIMIT ?"
        params.append(limit)
    return [DeadLetter(row[0], row[1], bytes(row[2]), row[3], row[4]) for row in conn.execute(query, params)]


def forget_dead_letters(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Remove dead letters once they have been handed back to the agent."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(ref,) for ref in ids])
    conn.execute("COMMIT")
