"""The spool read by commands beside (or without) the running agent: figures and dead letters.

``status`` and doctor show the figures when no agent answers; ``deadletter``
lists, exports and retries rejected events.  WAL lets these readers work
while the agent writes.
"""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any, List, NamedTuple, Optional, Sequence

from doow_track_agent.buffers.spool_file import (
    COUNT_AND_SIZE,
    ROW_OVERHEAD,
    SpoolFormatError,
    check_format,
    connect,
    db_path,
)


def open_existing(directory: str) -> Optional[sqlite3.Connection]:
    """A connection to an existing spool, or None; WAL lets it sit beside the running agent.

    Raises SpoolFormatError for a spool written by a newer doow-track.
    """
    path = db_path(directory)
    if not os.path.exists(path):
        return None
    conn = connect(path)
    conn.text_factory = lambda raw: raw.decode("utf-8", "replace")  # a damaged id is shown, not a crash
    try:
        check_format(conn, path)
    except SpoolFormatError:
        conn.close()
        raise
    return conn


def offline_figures(directory: str, max_bytes: int) -> Optional[dict]:
    """The ``spool`` object of ``/status``, computed from the file when no agent runs."""
    try:
        conn = open_existing(directory)
        if conn is None:
            return None
        try:
            events, size, oldest = conn.execute(
                f"SELECT {COUNT_AND_SIZE}, MIN(added) FROM events").fetchone()
            dead = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        finally:
            conn.close()
    except (sqlite3.Error, SpoolFormatError):
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
    """Dead letters, oldest first; only those with the given event_ids when any are given.

    Columns are read as bytes (a row written by hand or torn by a bad disk may
    hold anything, and SQLite's text conversion would fail the whole query);
    ``event_id`` and ``reason`` are decoded with U+FFFD for what is not UTF-8,
    ``body`` is left for the caller to judge.
    """
    query = "SELECT id, CAST(event_id AS BLOB), CAST(body AS BLOB), CAST(reason AS BLOB), at FROM dead_letters"
    params: List[Any] = list(event_ids)
    if event_ids:
        query += f" WHERE event_id IN ({', '.join('?' * len(event_ids))})"
    query += " ORDER BY id"
    if limit is not None:
        query += " LIMIT ?"
        params.append(limit)
    return [DeadLetter(row[0], _text(row[1]), bytes(row[2] or b""), _text(row[3]), row[4])
            for row in conn.execute(query, params)]


def _text(value: Optional[bytes]) -> str:
    return (value or b"").decode("utf-8", "replace")


def forget_dead_letters(conn: sqlite3.Connection, ids: Sequence[int]) -> None:
    """Remove dead letters once they have been handed back to the agent."""
    conn.execute("BEGIN IMMEDIATE")
    conn.executemany("DELETE FROM dead_letters WHERE id = ?", [(ref,) for ref in ids])
    conn.execute("COMMIT")
