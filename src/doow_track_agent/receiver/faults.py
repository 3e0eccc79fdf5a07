"""Fault injection for the local receiver.

Fault tests need a server that misbehaves on demand and deterministically:
"the first 3 requests get 503", "every 10th event is rejected". The settings
are a plain dataclass (so the CLI, the constructor and the runtime control
endpoint share one vocabulary); FaultState owns the counters that say which
request or event a fault applies to, behind a lock because the server handles
connections on several threads.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, List, Optional

from doow_track_agent.receiver.protocol import MAX_EVENTS

RETRY_AFTER_STATUSES = (429, 503)


@dataclass(frozen=True)
class Faults:
    """What to break, all off by default.

    latency_ms: delay before answering every protocol request.
    fail_first / fail_status: the first N ingest POSTs answer fail_status.
    retry_after: seconds sent in Retry-After with a 429 or 503 (fractions
        allowed, so that retry tests stay fast).
    reject_every: every Nth event is rejected in a 207.
    slow_accept_ms: store the batch, then wait before answering, so that a
        client timeout happens after the events are recorded.
    reset_first: the first N ingest POSTs are read, not stored, and the
        connection is closed without a response.
    max_events: batches with more events answer 413; the protocol's limit
        is 500, a lower one exercises a client's batch splitting.
    """

    latency_ms: int = 0
    fail_first: int = 0
    fail_status: int = 503
    retry_after: float = 1.0
    reject_every: int = 0
    slow_accept_ms: int = 0
    reset_first: int = 0
    max_events: int = MAX_EVENTS

    def __post_init__(self) -> None:
        for spec in fields(self):
            value = getattr(self, spec.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{spec.name} must be a non-negative number")
            if spec.type == "int" and not isinstance(value, int):
                raise ValueError(f"{spec.name} must be an integer")
        if not 400 <= self.fail_status <= 599:
            raise ValueError("fail_status must be an HTTP error status (400-599)")

    @classmethod
    def from_dict(cls, data: Any) -> "Faults":
        """Build from the JSON of POST /_receiver/faults; omitted fields are off."""
        if not isinstance(data, dict):
            raise ValueError("faults must be a JSON object")
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(unknown)}")
        return cls(**data)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    def retry_after_header(self) -> str:
        """Whole seconds as HTTP requires; fractions only when configured so."""
        return format(self.retry_after, "g")


class FaultState:
    """The active Faults plus the counters that decide which request they hit."""

    def __init__(self, faults: Optional[Faults] = None) -> None:
        self._lock = threading.Lock()
        self.replace(faults or Faults())

    def replace(self, faults: Faults) -> None:
        """Switch faults and restart their counts, so "first N" means from now."""
        with self._lock:
            self._faults = faults
            self._resets_left = faults.reset_first
            self._failures_left = faults.fail_first
            self._events_seen = 0

    @property
    def faults(self) -> Faults:
        return self._faults

    def take_reset(self) -> bool:
        """Whether this ingest request is to be dropped without a response."""
        with self._lock:
            if self._resets_left <= 0:
                return False
            self._resets_left -= 1
            return True

    def take_failure(self) -> Optional[int]:
        """The status this ingest request must fail with, if any."""
        with self._lock:
            if self._failures_left <= 0:
                return None
            self._failures_left -= 1
            return self._faults.fail_status

    def take_rejections(self, count: int) -> List[int]:
        """Positions (0-based, among `count` valid events) that --reject-every hits.

        Counting runs across requests, so "every Nth event" holds for the whole
        stream whatever the batch sizes.
        """
        with self._lock:
            every = self._faults.reject_every
            first = self._events_seen
            self._events_seen += count
        if not every:
            return []
        start = (every - 1 - first) % every
        return list(range(start, count, every))
