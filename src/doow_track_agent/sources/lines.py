"""Splitting a byte stream into lines with bounded memory.

A producer that never sends a newline must not make us buffer without end:
a line longer than the limit keeps only its first ``limit + 1`` bytes (enough
for intake to say it is too long) and the rest is skipped up to its newline.
"""

from __future__ import annotations

import os
from typing import BinaryIO, Callable, Iterator, List, Tuple

from doow_track_agent.intake.policy import MAX_LINE_BYTES

Line = Tuple[int, bytes]  # (1-based line number, raw bytes without the newline)


class LineSplitter:
    """Feed bytes in, get complete numbered lines out; a partial last line waits for its newline."""

    def __init__(self, limit: int = MAX_LINE_BYTES) -> None:
        self.limit = limit
        self.count = 0
        self._partial = b""
        self._overlong = False

    def feed(self, data: bytes) -> List[Line]:
        """Return the lines completed by ``data``."""
        parts = data.split(b"\n")
        tail = parts.pop()
        lines: List[Line] = []
        if parts and (self._partial or self._overlong):
            lines.append(self._complete(parts.pop(0)))
        if parts:
            if len(data) > self.limit and len(max(parts, key=len)) > self.limit:
                parts = [part[: self.limit + 1] for part in parts]
            # Numbered in C (zip, range): this runs once per line of every input.
            first = self.count + 1
            self.count += len(parts)
            lines.extend(zip(range(first, self.count + 1), parts))
        self._keep(tail)
        return lines

    def finish(self) -> List[Line]:
        """End of input: a last line without newline still counts as a line."""
        if not self._partial and not self._overlong:
            return []
        return [self._complete(b"")]

    def _complete(self, tail: bytes) -> Line:
        raw = tail if not self._partial and not self._overlong else (self._partial + tail)[: self.limit + 1]
        self._partial = b""
        self._overlong = False
        self.count += 1
        return self.count, raw

    def _keep(self, tail: bytes) -> None:
        if self._overlong:
            return
        self._partial += tail
        if len(self._partial) > self.limit:
            self._partial = self._partial[: self.limit + 1]
            self._overlong = True


def _raw_reader(stream: BinaryIO) -> Callable[[int], bytes]:
    """``os.read`` on the stream's descriptor when it has one, else its ``read1``/``read``.

    A thread blocked in a buffered read holds the buffer's lock: if the
    process ends meanwhile (a signal, a rejected key, stdin a FIFO whose
    writer stays open), the interpreter aborts on that lock at shutdown
    ("_enter_buffered_busy").  A plain system call holds no lock.
    """
    try:
        fd = stream.fileno()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is an OSError and a ValueError
        return getattr(stream, "read1", stream.read)
    return lambda size: os.read(fd, size)


def read_lines(stream: BinaryIO, block: int = 256 * 1024) -> Iterator[List[Line]]:
    """Read a binary stream in blocks; yield the lines of each block together.

    Yielding per block (not per line) lets a backlogged input become full
    batches, while a slow trickle is still passed on as soon as it arrives.
    """
    splitter = LineSplitter()
    read = _raw_reader(stream)
    while True:
        data = read(block)
        if not data:
            break
        lines = splitter.feed(data)
        if lines:
            yield lines
    last = splitter.finish()
    if last:
        yield last
