"""Files for what pipe mode could not deliver (outbox) and what the API refused (rejects).

The outbox holds ordinary input lines that carry their ``event_id`` and
``timestamp``: ``doow-track < outbox.ndjson`` re-sends them and the server
counts each once.  Rejects carry their reason and are deliberately *not*
valid input, so that nobody re-sends them blindly.
"""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Iterable, Mapping, Optional

from doow_track_agent import locations
from doow_track_agent.intake import wire



def default_path(env: Mapping[str, str], kind: str) -> str:
    """A fresh, sortable file name such as ``outbox-20261125T101500-4242.ndjson`` in the user's state directory."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return os.path.join(locations.user_state_dir(env), f"{kind}-{stamp}-{os.getpid()}.ndjson")


class LineFile:
    """An append-only NDJSON file, created (mode 0600) only when the first line arrives."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.lines = 0
        self._handle = None
        self._lock = threading.Lock()

    def write(self, lines: Iterable[bytes]) -> None:
        with self._lock:
            for line in lines:
                if self._handle is None:
                    self._handle = _open_private(self.path)
                self._handle.write(line + b"\n")
                self.lines += 1

    def close(self) -> None:
        """Flush to disk: these files are the only copy of what they hold."""
        with self._lock:
            if self._handle is not None:
                self._handle.flush()
                os.fsync(self._handle.fileno())
                self._handle.close()
                self._handle = None

    @property
    def used(self) -> Optional[str]:
        return self.path if self.lines else None


def _open_private(path: str):
    os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(descriptor, "ab")


def reject_line(wire_event: bytes, reason: str) -> bytes:
    """A refused event with the API's reason, wrapped so it is not valid input as is."""
    event = json.loads(wire.to_input_line(wire_event))
    return wire.encode({"reason": reason, "rejected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "event": event})
