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

from doow_track_agent.intake import wire
from doow_track_agent.secure_files import check_directory, ensure_directory, open_append, open_private


def state_dir(env: Mapping[str, str]) -> str:
    """The per-user state directory (XDG), where outbox and rejects files go by default."""
    base = env.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "doow-track")


def default_path(env: Mapping[str, str], kind: str) -> str:
    """A fresh, sortable file name such as ``outbox-20261125T101500-4242.ndjson``."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return os.path.join(state_dir(env), f"{kind}-{stamp}-{os.getpid()}.ndjson")


class LineFile:
    """An append-only NDJSON file, created (mode 0600) only when the first line arrives."""

    def __init__(self, path: str, what: str = "outbox file") -> None:
        self.path = path
        self.what = what
        self.lines = 0
        self._handle = None
        self._lock = threading.Lock()

    def write(self, lines: Iterable[bytes]) -> None:
        with self._lock:
            for line in lines:
                if self._handle is None:
                    self._handle = _open_private(self.path, self.what)
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


def _open_private(path: str, what: str):
    ensure_directory(os.path.dirname(os.path.abspath(path)), f"the directory of the {what}", 0o700)
    return open_append(path, what)


def check_writable(path: str, what: str) -> None:
    """Raise UnsafePath now, before any input is read, if ``path`` could not be written safely later.

    An existing file must be ours and not a symlink; the nearest existing
    directory above it must be safe.  Nothing is created.
    """
    if os.path.lexists(path):
        os.close(open_private(path, os.O_WRONLY | os.O_APPEND, what))
        return
    directory = os.path.dirname(os.path.abspath(path))
    while not os.path.lexists(directory):
        directory = os.path.dirname(directory)
    check_directory(directory, f"the directory of the {what}")


def reject_line(wire_event: bytes, reason: str) -> bytes:
    """A refused event with the API's reason, wrapped so it is not valid input as is."""
    event = json.loads(wire.to_input_line(wire_event))
    return wire.encode({"reason": reason, "rejected_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                        "event": event})
