"""The spool's SQLite file: its tables, its format version, how it is opened, and what a row counts.

Everything that reads or writes the file (the agent's spool, its writer
thread, the commands that read it offline) goes through here, so the file's
shape and the byte accounting against ``spool.maxBytes`` are stated once.

The format version lives in SQLite's ``user_version``.  A spool written by a
newer doow-track (a higher version) is refused rather than read with the
wrong assumptions: ``SpoolFormatError`` carries exit status 78 (EX_CONFIG).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import logging
import operator
import os
import sqlite3
import time
from typing import Iterator, Sequence, Union

from doow_track_agent.delivery.pump import Queued
from doow_track_agent.exits import EX_CONFIG
from doow_track_agent.secure_files import UnsafePath, open_private, write_atomically
from doow_track_agent.intake.events import Accepted

log = logging.getLogger(__name__)

DB_NAME = "spool.sqlite3"
LOCK_NAME = "spool.lock"
STATE_NAME = "spool.state.json"
FORMAT = 1  # this version's schema, stored in SQLite's user_version
ROW_OVERHEAD = 64  # bytes counted per row beyond the body: ids, timestamps, b-tree cells
# Rows and their counted bytes (before ROW_OVERHEAD): the agent at start-up and the offline figures agree.
COUNT_AND_SIZE = "COUNT(*), COALESCE(SUM(LENGTH(body) + LENGTH(event_id)), 0)"

SCHEMA = """
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


class SpoolFormatError(SpoolError):
    """The spool file was written by a newer doow-track; ``code`` is the exit status (78)."""

    code = EX_CONFIG


def row_size(event: Union[Accepted, Queued]) -> int:
    """What one event counts against ``spool.maxBytes``, in bytes."""
    return next(row_sizes([event]))


def row_sizes(events: Sequence[Union[Accepted, Queued]]) -> Iterator[int]:
    """``row_size`` of each event: body, event_id and ``ROW_OVERHEAD``, computed in C a batch at a time."""
    lengths = map(operator.add, map(len, map(_BODY, events)), map(len, map(_EVENT_ID, events)))
    return map(operator.add, lengths, itertools.repeat(ROW_OVERHEAD))


_BODY, _EVENT_ID = operator.attrgetter("body"), operator.attrgetter("event_id")  # Accepted's and Queued's


class SpoolLocked(SpoolError):
    """Another agent holds this spool directory."""


def lock_directory(directory: str) -> int:
    """Hold ``spool.lock`` (flock) for as long as the agent runs: two agents on one spool send duplicates.

    Returns the descriptor to keep; raises SpoolLocked naming the holder's pid.
    """
    path = os.path.join(directory, LOCK_NAME)
    fd = open_private(path, os.O_RDWR | os.O_CREAT, LOCK_NAME, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
        os.close(fd)
        raise SpoolLocked(f"spool.dir {directory} is in use by another agent (pid {holder}); "
                          "give each agent its own spool.dir") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    return fd


def write_state(directory: str, events: int) -> None:
    """Remember, beside the spool, that it exists and how many events it held at the last stop."""
    try:
        write_atomically(os.path.join(directory, STATE_NAME),
                         json.dumps({"events": events, "stopped_at": time.time()}).encode(), STATE_NAME, 0o640)
    except OSError as error:
        log.warning("cannot write %s in %s: %s", STATE_NAME, directory, error.strerror)
    except UnsafePath as error:
        log.warning("%s", error)


def warn_if_lost(directory: str, existed: bool) -> None:
    """A spool the state file says existed, now missing or empty: its events are gone, say so."""
    try:
        with open(os.path.join(directory, STATE_NAME), encoding="utf-8") as handle:
            state = json.load(handle)
    except (OSError, ValueError):
        return
    if not existed and isinstance(state, dict):
        log.warning("the spool %s was deleted or truncated while the agent was stopped: it held %s undelivered "
                    "event(s) at the last stop, which are lost unless their producers send them again",
                    db_path(directory), state.get("events", "an unknown number of"))


def db_path(directory: str) -> str:
    return os.path.join(directory, DB_NAME)


def connect(path: str, synchronous: str = "FULL") -> sqlite3.Connection:
    """A connection in autocommit mode (explicit BEGIN/COMMIT) with WAL and the given sync level."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    return conn


def check_format(conn: sqlite3.Connection, path: str) -> int:
    """The file's format version; raises SpoolFormatError when it is newer than this version reads."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > FORMAT:
        raise SpoolFormatError(f"{path} has spool format {version}, written by a newer doow-track; this version "
                               f"reads format {FORMAT} at most: upgrade doow-track, or move the file aside")
    return version


def create(conn: sqlite3.Connection, path: str) -> None:
    """Check the format, create missing tables and stamp this version's format.

    Stamping is a real write: on a read-only mount SQLite opens and reads
    fine and would only fail at the first event; this fails at once.
    """
    check_format(conn, path)
    conn.executescript(SCHEMA)
    conn.execute(f"PRAGMA user_version = {FORMAT}")
