"""Delivery counters: what /status, /metrics, summaries and doctor report.

Mutated only from the event-loop thread, so plain attributes suffice.
"""

from __future__ import annotations

import time
from typing import Optional


class Stats:
    """What happened to events since start, and how the last delivery went."""

    def __init__(self) -> None:
        self.accepted = 0
        self.invalid = 0
        self.delivered = 0
        self.rejected = 0
        self.dead_lettered = 0
        self.requests = 0
        self.retries = 0
        self.last_success: Optional[float] = None
        self.last_error: Optional[str] = None
        self.key_rejected = False
        self.failing = False

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

    @property
    def healthy(self) -> bool:
        """Deliveries currently work: no failing streak and the key is accepted."""
        return not self.failing and not self.key_rejected
