"""Standard output and error that can never decide a run's outcome.

Messages are a report about delivery, not part of it: a closed stderr
(``2>&-``), a reader that went away (``| head``, EPIPE) or a full disk
(``> /dev/full``) must not stop events from being delivered nor change the
exit status.  ``guard()`` wraps both streams so that a failing write is
dropped and the stream is pointed at ``/dev/null`` from then on, which also
keeps the interpreter's final flush from failing (it would exit 120).
"""

from __future__ import annotations

import os
import stat
import sys
from typing import Any, Optional, TextIO

from doow_track_agent.exits import EX_CANTCREAT, EX_CONFIG, EX_IOERR, CommandError
from doow_track_agent.secure_files import UnsafePath, open_replacing


class GuardedStream:
    """A text stream whose writes never raise; ``failed`` says why output was lost, if it was."""

    def __init__(self, stream: Optional[TextIO], fd: int) -> None:
        # Python sets sys.stderr to None when fd 2 was closed at start: write to /dev/null instead.
        self._stream: Any = stream if stream is not None else open(os.devnull, "w")
        self._fd = fd
        self.failed: Optional[str] = None

    def write(self, text: str) -> int:
        if self.failed is None:
            try:
                return self._stream.write(text)
            except (OSError, ValueError) as error:
                self.give_up(error)
        return len(text)

    def flush(self) -> None:
        if self.failed is None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as error:
                self.give_up(error)

    def isatty(self) -> bool:
        try:
            return self.failed is None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def give_up(self, error: BaseException) -> None:
        """Output is lost from here on (``failed`` says why); later writes and the final flush go nowhere."""
        self.failed = f"{type(error).__name__}: {error}"
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._fd)
            os.close(devnull)
        except OSError:
            pass

    def __getattr__(self, name: str) -> Any:  # buffer, fileno, encoding ...: the real stream's
        return getattr(self._stream, name)


def guard() -> None:
    """Wrap ``sys.stdout`` and ``sys.stderr`` (idempotent)."""
    if not isinstance(sys.stdout, GuardedStream):
        sys.stdout = GuardedStream(sys.stdout, 1)  # type: ignore[assignment]
    if not isinstance(sys.stderr, GuardedStream):
        sys.stderr = GuardedStream(sys.stderr, 2)  # type: ignore[assignment]


def write_data(data: bytes, path: Optional[str] = None, what: str = "--output") -> None:
    """Write a command's result, all of it, to ``path`` (created 0600 or emptied) or to stdout.

    Unlike messages, a result that is not written is a failure; raises
    CommandError naming the path or stdout: EX_CANTCREAT (73) when ``path``
    is a directory, device or FIFO or cannot be opened (no permission),
    EX_CONFIG (78) when it is a file another user controls (secure_files),
    EX_IOERR (74) when writing fails (ENOSPC, EPIPE, EIO).
    """
    if path is None:
        sys.stdout.flush()
        _write_fd(1, data, "stdout")
        return
    try:
        kind = os.stat(path).st_mode
    except OSError:
        kind = None
    if kind is not None and not stat.S_ISREG(kind):
        raise CommandError(EX_CANTCREAT, f"cannot create {path}: "
                                         f"{'is a directory' if stat.S_ISDIR(kind) else 'not a regular file'}")
    try:
        handle = open_replacing(path, what)
    except UnsafePath as error:
        raise CommandError(EX_CONFIG, str(error)) from None
    except OSError as error:
        raise CommandError(EX_CANTCREAT, f"cannot create {path}: {error.strerror or error}") from None
    with handle:
        _write_fd(handle.fileno(), data, path)
        try:
            os.fsync(handle.fileno())
        except OSError as error:
            raise CommandError(EX_IOERR, f"cannot write {path}: {error.strerror or error}") from None


def _write_fd(fd: int, data: bytes, name: str) -> None:
    view = memoryview(data)
    try:
        while view:
            view = view[os.write(fd, view):]
    except OSError as error:
        if fd == 1 and isinstance(sys.stdout, GuardedStream):
            sys.stdout.give_up(error)  # nothing more goes to the broken stdout, nor the final flush
        raise CommandError(EX_IOERR, f"cannot write {name}: {error.strerror or error}"
                                     f" ({len(data) - len(view)} of {len(data)} bytes written)") from None
