"""The spool's writer thread: every write to the file, committed in groups.

One thread owns the write connection and commits everything that queued up
while the previous commit was syncing: one fsync serves many producers, and
the event loop never waits on the disk.  Each ``Op`` says what to write and
what to call (in the event loop, with the error if the commit failed) once
its group is committed.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import operator
import os
import queue
import sqlite3
import threading
import time
from typing import Any, Callable, List, NamedTuple, Optional, Sequence, Tuple

from doow_track_agent.buffers import checkpoints
from doow_track_agent.buffers.checkpoints import Checkpoint
from doow_track_agent.buffers.spool_file import SpoolError, connect
from doow_track_agent.intake.events import Accepted

log = logging.getLogger(__name__)

MAX_GROUP = 20000  # ops per commit at most, so one commit never holds the file for long
ROWS_PER_INSERT = 400  # 2 variables a row and 1: under the 999 that SQLite before 3.32 allows a statement


def synchronous(fsync: str) -> str:
    """``batch``: each group commit reaches the disk before acks; ``off``: survives an agent crash only."""
    return "FULL" if fsync == "batch" else "NORMAL"


class Op(NamedTuple):
    """One unit of work for the writer thread; ``done`` runs in the loop with the error, if any."""

    kind: str  # append | delete | dead | sync | forget
    rows: Sequence[Any]
    done: Optional[Callable[[Optional[BaseException], int], None]]
    checkpoint: Optional[Checkpoint] = None


class Writer(threading.Thread):
    """Owns the write connection; commits queued operations in groups."""

    def __init__(self, path: str, synchronous: str, loop: asyncio.AbstractEventLoop,
                 on_failure: Optional[Callable[[str], None]] = None) -> None:
        super().__init__(name="spool-writer", daemon=True)
        self._path = path
        self._synchronous = synchronous
        self._loop = loop
        self._on_failure = on_failure
        self._ops: "queue.SimpleQueue[Optional[Op]]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self.failure: Optional[str] = None  # why the thread stopped before it was told to
        self._opened: Tuple[int, int] = (0, 0)  # (st_dev, st_ino) of the file connected to

    def submit(self, op: Optional[Op]) -> None:
        with self._lock:
            if self.failure is None:
                self._ops.put(op)
                return
        if op is not None and op.done is not None:
            self._loop.call_soon_threadsafe(op.done, SpoolError(f"spool writer stopped: {self.failure}"), 0)

    def run(self) -> None:
        try:
            conn = connect(self._path, self._synchronous)
            self._opened = _identity(self._path)
        except BaseException as error:  # outside the loop's error handling before: the thread died unseen
            self._fail(error)
            return
        try:
            while True:
                group, stopping = self._take()
                if group:
                    self._commit(conn, group)
                if stopping:
                    return
        except _Unusable as error:
            self._fail(error.__cause__ or error)
        except BaseException as error:
            self._fail(error)
        finally:
            conn.close()

    def _fail(self, error: BaseException) -> None:
        """The thread cannot go on: every waiting producer gets an error now, later ones at once."""
        with self._lock:
            self.failure = f"{type(error).__name__}: {error}"
        log.critical("spool writer thread stopped: %s", self.failure, exc_info=error)
        failed = SpoolError(f"spool writer stopped: {self.failure}")
        while True:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is not None and op.done is not None:
                self._loop.call_soon_threadsafe(op.done, failed, 0)
        if self._on_failure is not None:
            self._loop.call_soon_threadsafe(self._on_failure, self.failure)

    def _take(self) -> Tuple[List[Op], bool]:
        """Block for one op, then take whatever else queued meanwhile: that is the group."""
        group: List[Op] = []
        op = self._ops.get()
        while op is not None:
            group.append(op)
            if len(group) >= MAX_GROUP:
                return group, False
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                return group, False
        return group, True

    def _check_same_file(self) -> None:
        """Commits to a spool file deleted or replaced under us would be acknowledged, then lost at restart.

        One stat per group commit, which an fsync dwarfs.
        """
        try:
            now: Optional[Tuple[int, int]] = _identity(self._path)
        except OSError:
            now = None
        if now != self._opened:
            raise SpoolReplaced(f"{self._path} was deleted or replaced while the agent ran; "
                                "events acknowledged before are lost with it")

    def _commit(self, conn: sqlite3.Connection, group: List[Op]) -> None:
        results: List[Tuple[Op, int]] = []
        error: Optional[BaseException] = None
        try:
            self._check_same_file()
            conn.execute("BEGIN IMMEDIATE")
            for op in group:
                results.append((op, self._apply(conn, op)))
            conn.execute("COMMIT")
        except Exception as exc:  # sqlite3.Error (disk full, I/O) or a bug: this group fails, the next may not
            error = SpoolError(f"spool write failed: {exc}")
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            results = [(op, 0) for op in group]
            if unusable(exc):
                self._loop.call_soon_threadsafe(settle, results, error)
                raise _Unusable() from exc
        self._loop.call_soon_threadsafe(settle, results, error)

    def _apply(self, conn: sqlite3.Connection, op: Op) -> int:
        """Run one op inside the open transaction; returns the last id appended (appends only)."""
        if op.kind == "append":
            if op.checkpoint is not None:
                checkpoints.save(conn, op.checkpoint)
            if not op.rows:
                return 0
            # AUTOINCREMENT ids only grow, even when every row was delivered and deleted, so the
            # lease cursor never skips a new row.
            insert(conn, op.rows)
            return conn.execute("SELECT last_insert_rowid()").fetchone()[0]
        if op.kind == "delete":
            conn.executemany("DELETE FROM events WHERE id BETWEEN ? AND ?", ranges(op.rows))
        elif op.kind == "dead":
            now = time.time()
            conn.executemany("INSERT INTO dead_letters (event_id, body, reason, at) VALUES (?, ?, ?, ?)",
                             [(q.event_id, q.body, reason, now) for q, reason in op.rows])
            conn.executemany("DELETE FROM events WHERE id = ?", [(q.ref,) for q, _ in op.rows])
        elif op.kind == "sync":
            conn.execute(f"PRAGMA synchronous={op.rows[0]}")
        elif op.kind == "forget":
            checkpoints.forget(conn, op.rows)
        return 0


_ROW = operator.attrgetter("event_id", "body")  # of an Accepted, or of any row that names them (producers')


def insert(conn: sqlite3.Connection, rows: Sequence[Accepted]) -> None:
    """Insert events in order, ``ROWS_PER_INSERT`` to a statement, all stamped with this moment.

    Not ``executemany``: sqlite3 lets go of the GIL for each step of a statement, and executemany
    steps once per row; every time, this thread must win the GIL back from a busy event loop
    (measured against a busy thread: 30 µs of CPU per row that way, 2 µs with 400 rows a statement).
    Rows bind as they are, flattened in C: no per-event Python work here either.
    """
    added, start = time.time(), 0
    for size in statement_sizes(len(rows)):
        part = rows[start:start + size]
        conn.execute(_insert_statement(size), [added, *itertools.chain.from_iterable(map(_ROW, part))])
        start += size


def statement_sizes(rows: int) -> List[int]:
    """Rows per INSERT for ``rows`` rows: ROWS_PER_INSERT, then powers of two for the rest.

    Few distinct statements: sqlite3 keeps each one prepared (a 400-row INSERT is a large
    program), and one per remainder size would fill its statement cache with 128 of them.
    """
    sizes = [ROWS_PER_INSERT] * (rows // ROWS_PER_INSERT)
    rest = rows % ROWS_PER_INSERT
    sizes += [1 << bit for bit in reversed(range(rest.bit_length())) if rest >> bit & 1]
    return sizes


@functools.lru_cache(maxsize=None)
def _insert_statement(rows: int) -> str:
    """``INSERT`` of ``rows`` (event_id, body) pairs, ``?1`` being the shared ``added`` time."""
    values = ",".join(f"(?{2 * row + 2},?{2 * row + 3},?1)" for row in range(rows))
    return f"INSERT INTO events (event_id, body, added) VALUES {values}"


def _identity(path: str) -> Tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


class _Unusable(Exception):
    """The spool file can take no more writes (its cause says why): the thread stops."""


class SpoolReplaced(SpoolError):
    """The spool file at the path is not the one the writer opened (deleted, or another put there)."""


def unusable(error: BaseException) -> bool:
    """Errors no later commit gets past: the file replaced, SQLITE_CORRUPT and SQLITE_NOTADB
    ("database disk image is malformed", "file is not a database").

    sqlite3 raises exactly DatabaseError for the last two; its subclasses (OperationalError for a
    full disk, an I/O error or a lock, IntegrityError) are conditions a later commit can get past.
    """
    return isinstance(error, SpoolReplaced) or type(error) is sqlite3.DatabaseError


def ranges(refs: Sequence[int]) -> List[Tuple[int, int]]:
    """Runs of consecutive ids as (first, last): a leased batch is mostly one run, so one DELETE."""
    if refs and refs[-1] - refs[0] + 1 == len(refs) and list(refs) == list(range(refs[0], refs[-1] + 1)):
        return [(refs[0], refs[-1])]  # checked in C: the common case needs no loop over its ids
    runs: List[Tuple[int, int]] = []
    for ref in sorted(refs):
        if runs and ref == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], ref)
        else:
            runs.append((ref, ref))
    return runs


def settle(results: List[Tuple[Op, int]], error: Optional[BaseException]) -> None:
    for op, last_id in results:
        if op.done is not None:
            op.done(error, last_id)
