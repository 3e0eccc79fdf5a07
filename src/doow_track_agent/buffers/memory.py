"""Pipe mode's buffer: a bounded in-memory queue between intake and delivery.

Pipe mode promises nothing across a crash (what is not delivered when the
run ends goes to the outbox), so its events wait in memory; the bound makes
a fast producer wait instead of filling memory.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import time
from typing import Any, Deque, List, Optional, Tuple

from doow_track_agent.delivery.pump import BODY, Queued
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
        taken = list(itertools.islice(self._items, max_events))
        count = BatchBudget(max_bytes).fill(map(BODY, taken))
        del taken[count:]
        for _ in itertools.repeat(None, count):
            self._items.popleft()
        self._consume_arrivals(count)
        if len(self._items) < self._capacity:
            self.room.set()
        return taken

    def _consume_arrivals(self, count: int) -> None:
        while count:
            head = self._arrivals[0]
            used = min(head[1], count)
            head[1] -= used
            count -= used
            if head[1] == 0:
                self._arrivals.popleft()

    def seal(self) -> List[Queued]:
        """End the run: hand back what is still waiting."""
        left = list(self._items)
        self._items.clear()
        self._arrivals.clear()
        return left
