"""Delivery counters: what /status, /metrics, ``top``, summaries and doctor report.

Mutated only from the event-loop thread, so plain attributes suffice.
"""

from __future__ import annotations

import time
from typing import Dict, List, NamedTuple, Optional


class Source(NamedTuple):
    """Where events come in: ``kind`` is socket, tcp or file; ``name`` its socket path, listen address or file path."""

    kind: str
    name: str


class Stats:
    """What happened to events since start, and how the last delivery went."""

    def __init__(self) -> None:
        self.accepted = 0
        self.invalid = 0
        self.delivered = 0
        self.rejected = 0
        self.duplicates = 0  # delivered events the API said it already had (its ``duplicates``): not billed again
        self.dead_lettered = 0
        self.requests = 0
        self.retries = 0
        self.last_success: Optional[float] = None
        self.last_error_at: Optional[float] = None
        self.key_rejected = False
        self.failing = False
        # Per source, [accepted, invalid]: counted per committed group or per invalid line, never per event.
        self.sources: Dict[Source, List[int]] = {}
        self._last_error: Optional[str] = None

    @property
    def last_error(self) -> Optional[str]:
        """The last delivery problem (sanitised, key-free); ``last_error_at`` is when it was set (Unix time)."""
        return self._last_error

    @last_error.setter
    def last_error(self, reason: Optional[str]) -> None:
        self._last_error = reason
        self.last_error_at = time.time()

    def succeeded(self) -> None:
        """A request got a definitive answer (accepted, partly or wholly)."""
        self.last_success = time.time()
        self.failing = False
        self.key_rejected = False

    def failed(self, reason: str, *, key: bool = False) -> None:
        """A request failed; ``reason`` must already be sanitised and key-free."""
        self.last_error = reason
        self.failing = True
        self.key_rejected = key

    def add_source(self, source: Source) -> None:
        """Report ``source`` from now on, at zero until it sees events (rates need the zero)."""
        self.sources.setdefault(source, [0, 0])

    def count_accepted(self, source: Optional[Source], events: int) -> None:
        """``events`` from ``source`` are committed to the spool (None: not attributed to a source)."""
        self.accepted += events
        if source is not None:
            self.sources.setdefault(source, [0, 0])[0] += events

    def count_invalid(self, source: Source) -> None:
        """One line from ``source`` was refused by intake."""
        self.invalid += 1
        self.sources.setdefault(source, [0, 0])[1] += 1

    @property
    def healthy(self) -> bool:
        """Deliveries currently work: no failing streak and the key is accepted."""
        return not self.failing and not self.key_rejected

    def source_figures(self) -> List[dict]:
        """Per source: ``{"source", "name", "accepted", "invalid"}`` (events since start), sorted."""
        return [{"source": source.kind, "name": source.name, "accepted": accepted, "invalid": invalid}
                for source, (accepted, invalid) in sorted(self.sources.items())]

