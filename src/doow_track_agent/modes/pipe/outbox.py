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
from typing import Iterable, List, Mapping, Optional

from doow_track_agent import locations
from doow_track_agent.intake import wire
from doow_track_agent.secure_files import UnsafePath, check_directory, ensure_directory, open_private

_CHUNK_LINES = 256  # lines per write(2): one call for most batches, and a small redo when a write fails


def default_path(env: Mapping[str, str], kind: str) -> str:
    """A fresh, sortable file name such as ``outbox-20261125T101500-4242.ndjson`` in the user's state directory."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return os.path.join(locations.user_state_dir(env), f"{kind}-{stamp}-{os.getpid()}.ndjson")


class LineFile:
    """An append-only NDJSON file, created (mode 0600) only when the first line arrives.

    It only ever holds whole lines: a write that fails (disk full, quota) is
    cut back to the last complete line, and the caller learns which lines did
    not make it, so that they can be reported rather than silently lost.
    """

    def __init__(self, path: str, what: str = "outbox file") -> None:
        self.path = path
        self.what = what
        self.lines = 0
        self.error: Optional[str] = None
        self._fd: Optional[int] = None
        self._size = 0
        self._lock = threading.Lock()

    def write(self, lines: Iterable[bytes]) -> int:
        """Append lines; returns how many of them (from the first) were written, the rest were not."""
        with self._lock:
            pending = list(lines)
            written = 0
            while written < len(pending):
                chunk = pending[written:written + _CHUNK_LINES]
                done = self._append(chunk)
                written += done
                if done < len(chunk):
                    break
            self.lines += written
            return written

    def _append(self, chunk: List[bytes]) -> int:
        """Write a chunk at once, or line by line when that fails, to know exactly what fits."""
        if self.error is not None:
            return 0
        try:
            if self._fd is None:
                self._fd = _open_private(self.path, self.what)
                self._size = os.lseek(self._fd, 0, os.SEEK_END)
            data = b"".join(line + b"\n" for line in chunk)
            self._write_all(data)
            return len(chunk)
        except (OSError, UnsafePath) as error:
            self._cut_back()
            if len(chunk) > 1:
                written = 0
                for line in chunk:
                    if self._append([line]) == 0:
                        break
                    written += 1
                return written
            self.error = getattr(error, "strerror", None) or str(error)
            return 0

    def _write_all(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view):]
        self._size += len(data)

    def _cut_back(self) -> None:
        """Drop the torn end of a failed write: the file ends with a whole line again."""
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass

    def close(self) -> None:
        """Flush to disk: these files are the only copy of what they hold."""
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError as error:
                    self.error = self.error or f"cannot sync to disk: {error.strerror}"
                os.close(self._fd)
                self._fd = None

    @property
    def used(self) -> Optional[str]:
        return self.path if self.lines else None


def _refuse_devnull(path: str, what: str) -> None:
    # secure_files lets /dev/null through as the explicit way to discard; undelivered or refused events must
    # never be discarded, so it is refused like every other file that is not a regular one (/dev/full ...).
    if os.path.abspath(path) == os.devnull:
        raise UnsafePath(f"{what} {path} is not a regular file: the events it would hold would be lost; "
                         "choose a file (--quiet silences the messages)")


def _open_private(path: str, what: str) -> int:
    _refuse_devnull(path, what)
    ensure_directory(os.path.dirname(os.path.abspath(path)), f"the directory of the {what}", 0o700)
    return open_private(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, what)


def check_writable(path: str, what: str) -> None:
    """Raise UnsafePath now, before any input is read, if ``path`` could not be written safely later.

    An existing file must be ours and not a symlink; the nearest existing
    directory above it must be safe.  A device, FIFO or directory (``/dev/null`` too) is refused.
    Nothing is created.
    """
    _refuse_devnull(path, what)
    if os.path.isdir(path):
        raise UnsafePath(f"{what} {path} is a directory, not a file; choose a file")
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
