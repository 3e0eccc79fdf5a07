"""Pipe mode's buffer: a bounded in-memory queue between intake and delivery.

Pipe mode promises nothing across a crash (what is not delivered when the
run ends goes to the outbox), so its events wait in memory; the bound makes
a fast producer wait instead of filling memory.
"""

from __future__ import annotations

import asyncio
import collections
import time
from typing import Deque, List, Optional, Tuple

from doow_track_agent.delivery.pump import BODY, Queued
from doow_track_agent.intake.wire import BatchBudget

QUEUE_EVENTS = 20_000


class MemoryQueue:
    """The bounded queue between intake and delivery; used from the event-loop thread only.

    Events wait in the chunks they were put in (with the chunk's arrival
    time): a lease slices chunks, so handing out a batch costs a few list
    slices, not a Python step per event.
    """

    def __init__(self, capacity: int = QUEUE_EVENTS) -> None:
        self.changed = asyncio.Event()
        self.room = asyncio.Event()
        self.room.set()
        self.closed = False
        self._capacity = capacity
        self._chunks: Deque[Tuple[float, List[Queued]]] = collections.deque()  # (monotonic arrival, events)
        self._head = 0  # events of the first chunk already leased
        self._count = 0

    def put(self, events: List[Queued]) -> None:
        """Add a chunk of events (the producer waits on ``room`` first, so the bound holds per chunk)."""
        if events:
            self._chunks.append((time.monotonic(), events))
            self._count += len(events)
        if self._count >= self._capacity:
            self.room.clear()
        self.changed.set()

    def close(self) -> None:
        """No more input."""
        self.closed = True
        self.changed.set()

    def pending(self) -> Tuple[int, Optional[float]]:
        return self._count, (self._chunks[0][0] if self._chunks else None)

    def lease(self, max_events: int, max_bytes: int) -> List[Queued]:
        """The oldest events, at most ``max_events`` of them and ``max_bytes`` as a batch body; removed."""
        taken = self._peek(max_events)
        count = BatchBudget(max_bytes).fill(map(BODY, taken))
        del taken[count:]
        self._drop(count)
        if self._count < self._capacity:
            self.room.set()
        return taken

    def _peek(self, max_events: int) -> List[Queued]:
        taken: List[Queued] = []
        start = self._head
        for _, events in self._chunks:
            taken += events[start:start + max_events - len(taken)]
            if len(taken) >= max_events:
                break
            start = 0
        return taken

    def _drop(self, count: int) -> None:
        self._count -= count
        while count:
            left = len(self._chunks[0][1]) - self._head
            if count < left:
                self._head += count
                return
            self._chunks.popleft()
            self._head = 0
            count -= left

    def seal(self) -> List[Queued]:
        """End the run: hand back what is still waiting."""
        left = [event for _, events in self._chunks for event in events][self._head:]
        self._chunks.clear()
        self._head = 0
        self._count = 0
        return left
