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
import sys
from typing import Any, Optional, TextIO


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
                self._give_up(error)
        return len(text)

    def flush(self) -> None:
        if self.failed is None:
            try:
                self._stream.flush()
            except (OSError, ValueError) as error:
                self._give_up(error)

    def isatty(self) -> bool:
        try:
            return self.failed is None and self._stream.isatty()
        except (OSError, ValueError):
            return False

    def _give_up(self, error: BaseException) -> None:
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
