"""A tailed file's checkpoint: how far it is spooled, stored in the spool beside the events.

A checkpoint row is committed in the same transaction as the events read up
to it (see ``spool_writer``): after a crash either both are there or neither
is, so the file tail resumes with no line spooled twice and none skipped.
"""

from __future__ import annotations

import sqlite3
from typing import List, NamedTuple, Sequence, Tuple


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


def save(conn: sqlite3.Connection, checkpoint: Checkpoint) -> None:
    """Inside the writer's open transaction: replace the file's checkpoint."""
    conn.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?, ?, ?)", checkpoint)


def forget(conn: sqlite3.Connection, identities: Sequence[Tuple[int, int]]) -> None:
    """Inside the writer's open transaction: drop the checkpoints of these (dev, ino) files."""
    conn.executemany("DELETE FROM checkpoints WHERE dev = ? AND ino = ?", identities)


def load(conn: sqlite3.Connection) -> List[Checkpoint]:
    """Every committed checkpoint."""
    return [Checkpoint(*row) for row in conn.execute(
        "SELECT dev, ino, fingerprint, epoch, offset, line, tail, path FROM checkpoints")]
