"""Pipe mode's buffer: a bounded in-memory queue between intake and delivery.

Pipe mode promises nothing across a crash (what is not delivered when the
run ends goes to the outbox), so its events wait in memory; the bound makes
a fast producer wait instead of filling memory.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Any, Deque, List, Optional, Tuple

from doow_track_agent.delivery.pump import Queued
from doow_track_agent.intake.wire import BatchBudget

QUEUE_EVENTS = 20_000


class MemoryQueue:
    """The bounded queue between intake and delivery; used from the event-loop thread only."""

    def __init__(self, capacity: int = QUEUE_EVENTS) -> None:
        self.changed = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.closed = False
        self._capacity = capacity
        self._items: Deque[Queued] = collections.deque()
        self._arrivals: Deque[List[Any]] = collections.deque()  # [monotonic time, events left] per put

    def put(self, events: List[Queued]) -> None:
        """Add a chunk of events (the producer waits on ``room`` first, so the bound holds per chunk)."""
        self._items.extend(events)
        self._arrivals.append([time.monotonic(), len(events)])
        if len(self._items) >= self._capacity:
            self.room.clear()
        self.changed.set()

    def close(self) -> None:
        """No more input."""
        self.closed = True
        self.changed.set()

    def pending(self) -> Tuple[int, Optional[float]]:
        return len(self._items), (self._arrivals[0][0] if self._arrivals else None)

    def lease(self, max_events: int, max_bytes: int) -> List[Queued]:
        taken: List[Queued] = []
        budget = BatchBudget(max_bytes)
        while self._items and len(taken) < max_events and budget.fits(self._items[0].body):
            event = self._items.popleft()
            budget.add(event.body)
            taken.append(event)
            self._consume_arrival()
        if len(self._items) < self._capacity:
            self.room.set()
        return taken

    def _consume_arrival(self) -> None:
        head = self._arrivals[0]
        head[1] -= 1
        if head[1] == 0:
            self._arrivals.popleft()

    def seal(self) -> List[Queued]:
        """End the run: hand back what is still waiting."""
        left = list(self._items)
        self._items.clear()
        self._arrivals.clear()
        return left
