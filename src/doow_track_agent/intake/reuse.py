"""Producer-supplied ``event_id``s used twice: a repeat of the same line, or two different events under one id.

The API de-duplicates on ``event_id`` (docs/protocol.md), so a second,
different event under an id already used is silently not billed: within one
input it is a data error for the later line.  The same line again is a
duplicate: sent once, and reported.  Only lines that carry their own
``event_id`` are remembered (generated and ``--run-id`` ids are unique by
construction), each as its first line number and a 16-byte digest of the
line: O(1) per event, about 150 bytes per remembered id.
"""

from __future__ import annotations

import hashlib
from typing import Dict, NamedTuple, Optional, Tuple


class Reuse(NamedTuple):
    """An ``event_id`` seen before: at ``first_line``; ``same`` when that line had the same bytes."""

    first_line: int
    same: bool


class EventIds:
    """The ``event_id``s of one run's lines, for ``reused``."""

    def __init__(self) -> None:
        self._seen: Dict[str, Tuple[int, bytes]] = {}

    def reused(self, event_id: str, line: int, raw: bytes) -> Optional[Reuse]:
        """None the first time ``event_id`` is seen (it is remembered); else how it was used before."""
        digest = hashlib.blake2b(raw.strip(), digest_size=16).digest()
        first = self._seen.setdefault(event_id, (line, digest))
        if first[0] == line and first[1] == digest:
            return None
        return Reuse(first[0], first[1] == digest)
