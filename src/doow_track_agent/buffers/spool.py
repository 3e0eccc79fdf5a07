"""The agent's durable queue: SQLite in WAL mode, written by one thread with group commit.

Why this shape:

* An event is acknowledged only once its row is committed, and a row is
  deleted only once the API has answered for it, so ``kill -9`` at any moment
  loses nothing acknowledged (at worst an event is sent again with the same
  ``event_id``, which the server de-duplicates).
* All writes go through one writer thread (``spool_writer``) that commits
  everything that queued up while the previous commit was syncing: one fsync
  serves many producers, and the event loop never waits on the disk.
* The delivery pump asks ``pending()`` constantly, so the queue's shape is
  kept in memory as counters (O(1)), never as one object per event: a million
  spooled events cost the agent no Python memory.  Rows are leased in id
  order through a cursor; ids are assigned by the writer in commit order, so
  "every id up to the last committed one" is exactly what the pump may see.
* A tailed file's checkpoint (``checkpoints``) is a row committed in the
  same transaction as the events read up to it.

The file itself (tables, format version, row accounting) is ``spool_file``;
commands read it offline through ``spool_offline``.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import logging
import os
import sqlite3
import time
from collections import deque
from typing import Callable, Deque, List, Optional, Sequence, Tuple

from doow_track_agent.buffers import checkpoints
from doow_track_agent.buffers.checkpoints import Checkpoint
from doow_track_agent.buffers.spool_file import (
    COUNT_AND_SIZE,
    ROW_OVERHEAD,
    SpoolError,
    SpoolLocked,
    connect,
    create,
    db_path,
    lock_directory,
    row_sizes,
    warn_if_lost,
    write_state,
)
from doow_track_agent.buffers.spool_writer import Op, Writer, synchronous
from doow_track_agent.delivery.pump import BODY, REF, Queued, as_queued
from doow_track_agent.intake.events import DEDUP_WINDOW_SECONDS, Accepted
from doow_track_agent.intake.wire import BatchBudget
from doow_track_agent.secure_files import ensure_directory
from doow_track_agent.stats import Source, Stats

log = logging.getLogger(__name__)

__all__ = ["Checkpoint", "Spool", "SpoolError", "SpoolLocked"]

_REMOVE_RETRY_SECONDS = 1.0
_OVERDUE = -1e12  # an "added" time that makes restored or released events due at once

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
        self._writer: Optional[Writer] = None
        self._stored = 0           # rows in the events table (committed)
        self._bytes = 0            # counted bytes of those rows plus appends not yet committed
        self._pending = 0          # committed rows neither leased nor delivered
        self._cursor = 0           # highest id ever leased from the table
        self._committed = 0        # highest id whose commit the loop has seen
        self._groups: Deque[Tuple[int, float]] = deque()  # (last id, monotonic time) per commit
        self._released: Deque[Queued] = deque()           # deferred events, leased again first
        self._dead = 0
        self._lock_fd: Optional[int] = None
        self.failure: Optional[str] = None                # why the writer thread stopped, if it did
        self.on_failure: Optional[Callable[[str], None]] = None

    # -- life cycle ---------------------------------------------------------------

    def open(self) -> None:
        """Open (or create) the spool; everything in it becomes pending again, oldest first.

        Raises SpoolError when it cannot, SpoolFormatError (exit 78) for a
        spool written by a newer doow-track.
        """
        try:
            ensure_directory(self.directory, "spool.dir")
            self._lock_fd = lock_directory(self.directory)
            path = db_path(self.directory)
            existed = os.path.exists(path) and os.path.getsize(path) > 0
            conn = connect(path, synchronous(self._fsync))
            create(conn, path)
            stored, size, last_id = conn.execute(
                f"SELECT {COUNT_AND_SIZE}, COALESCE(MAX(id), 0) FROM events").fetchone()
            self._dead = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        except SpoolLocked:
            raise
        except SpoolError:
            conn.close()
            self._unlock()
            raise
        except (OSError, sqlite3.Error) as exc:
            self._unlock()
            raise SpoolError(f"cannot open the spool in {self.directory}: {exc}") from None
        warn_if_lost(self.directory, existed)
        self._reader = conn
        self._stored = self._pending = stored
        self._bytes = size + stored * ROW_OVERHEAD
        self._committed = last_id
        if stored:
            self._groups.append((last_id, _OVERDUE))
            log.info("spool holds %d undelivered event(s); delivering them first", stored)
            self._warn_stale(conn)
        self._writer = Writer(path, synchronous(self._fsync), asyncio.get_running_loop(), self._writer_failed)
        self._writer.start()

    def _writer_failed(self, reason: str) -> None:
        self.failure = reason
        if self.on_failure is not None:
            self.on_failure(reason)

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

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
            write_state(self.directory, self._stored)
            self._reader.close()
            self._reader = None
        self._unlock()

    def set_limits(self, max_bytes: int, fsync: str) -> None:
        """Apply reloaded ``spool.maxBytes`` and ``spool.fsync`` (the directory needs a restart)."""
        self.max_bytes = max_bytes
        if fsync != self._fsync and self._writer is not None:
            self._fsync = fsync
            self._writer.submit(Op("sync", [synchronous(fsync)], None))

    # -- producers ----------------------------------------------------------------

    def append(self, events: Sequence[Accepted], checkpoint: Optional[Checkpoint] = None,
               source: Optional[Source] = None) -> Tuple[int, "asyncio.Future[None]"]:
        """Queue events for the next group commit; returns how many fit and a future for them.

        The bytes are reserved now, so concurrent producers cannot overshoot
        ``maxBytes`` together; the events beyond the limit are refused by the
        caller (a ``spool_full`` reply), in order, and nothing already spooled
        is ever dropped.
        A ``checkpoint`` covers all of its events or none of them: it is
        committed with them, and not at all (0 fitting) if any does not fit.
        Committed events are counted as accepted from ``source``.
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
        self._writer.submit(Op("append", accepted, lambda error, last_id: self._appended(
            future, len(accepted), reserved, error, last_id, source), checkpoint))
        return fitting, future

    def _fit(self, events: Sequence[Accepted]) -> Tuple[int, int]:
        """How many of ``events`` fit under ``maxBytes``, and their bytes (running sums, in C)."""
        ends = list(itertools.accumulate(row_sizes(events)))
        fitting = bisect.bisect_right(ends, self.max_bytes - self._bytes)
        if fitting < len(ends):
            self.full = True
        return fitting, ends[fitting - 1] if fitting else 0

    def _appended(self, future: "asyncio.Future[None]", count: int, size: int,
                  error: Optional[BaseException], last_id: int, source: Optional[Source]) -> None:
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
        self.stats.count_accepted(source, count)
        self.changed.set()

    # -- file tail checkpoints ---------------------------------------------------------

    def checkpoints(self) -> List[Checkpoint]:
        """Every committed checkpoint (read at the tail's start)."""
        assert self._reader is not None
        return checkpoints.load(self._reader)

    def forget_checkpoints(self, identities: Sequence[Tuple[int, int]]) -> None:
        """Drop the checkpoints of files that no longer exist."""
        if identities and self._writer is not None:
            self._writer.submit(Op("forget", list(identities), None))

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
        budget = BatchBudget(max_bytes)
        while self._released and len(batch) < max_events:
            if not budget.fits(self._released[0].body):
                return self._leased(batch)
            batch.append(self._released.popleft())
            budget.add(batch[-1].body)
        wanted = max_events - len(batch)
        if wanted and self._cursor < self._committed and self._reader is not None:
            rows = self._reader.execute(
                "SELECT id, event_id, body FROM events WHERE id > ? AND id <= ? ORDER BY id LIMIT ?",
                (self._cursor, self._committed, wanted)).fetchall()
            # Rows are (id, event_id, body), the order of Queued's fields: measured and made a batch at a time.
            taken = budget.fill(map(BODY, rows))
            batch.extend(map(as_queued, rows[:taken]))
            if taken:
                self._cursor = rows[taken - 1][0]
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
            self._remove("delete", list(map(REF, events)), events)

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
        size = sum(row_sizes(events))
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
            self._writer.submit(Op(kind, rows, done))

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


