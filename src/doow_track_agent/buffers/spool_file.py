"""The spool's SQLite file: its tables, its format version, how it is opened, and what a row counts.

Everything that reads or writes the file (the agent's spool, its writer
thread, the commands that read it offline) goes through here, so the file's
shape and the byte accounting against ``spool.maxBytes`` are stated once.

The format version lives in SQLite's ``user_version``.  A spool written by a
newer doow-track (a higher version) is refused rather than read with the
wrong assumptions: ``SpoolFormatError`` carries exit status 78 (EX_CONFIG).
"""

from __future__ import annotations

import os
import sqlite3
from typing import Union

from doow_track_agent.delivery.pump import Queued
from doow_track_agent.exits import EX_CONFIG
from doow_track_agent.intake.events import Accepted

DB_NAME = "spool.sqlite3"
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
    return len(event.body) + len(event.event_id) + ROW_OVERHEAD


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
