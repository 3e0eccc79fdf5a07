"""Pipe mode's memory queue hands out events as one event at a time would: in order, each once, within the bounds."""

from __future__ import annotations

import asyncio
from typing import List, Tuple

from hypothesis import given, settings
from hypothesis import strategies as st

from doow_track_agent.buffers.memory import MemoryQueue
from doow_track_agent.delivery.pump import Queued
from doow_track_agent.intake.wire import BatchBudget

# A run of the queue: put a chunk of events of these body sizes, or lease with (max_events, max_bytes).
steps = st.lists(st.one_of(
    st.tuples(st.just("put"), st.lists(st.integers(1, 300), max_size=12)),
    st.tuples(st.just("lease"), st.tuples(st.integers(1, 20), st.integers(1, 3000))),
), max_size=30)


def one_at_a_time(waiting: List[Queued], max_events: int, max_bytes: int) -> List[Queued]:
    """The reference: take events one by one while the budget says they fit."""
    budget, taken = BatchBudget(max_bytes), []
    for event in waiting[:max_events]:
        if not budget.fits(event.body):
            break
        budget.add(event.body)
        taken.append(event)
    return taken


async def run(plan: List[Tuple[str, object]], capacity: int) -> None:
    queue, waiting, number = MemoryQueue(capacity), [], 0
    for action, argument in plan:
        if action == "put":
            chunk = []
            for size in argument:
                number += 1
                chunk.append(Queued(number, f"id-{number}", b"x" * size))
            queue.put(chunk)
            waiting += chunk
        else:
            expected = one_at_a_time(waiting, *argument)
            assert queue.lease(*argument) == expected
            del waiting[:len(expected)]
        assert queue.pending()[0] == len(waiting)
        assert (queue.pending()[1] is None) == (not waiting)
        assert queue.room.is_set() == (len(waiting) < capacity)
    assert queue.seal() == waiting
    assert queue.pending() == (0, None)


@settings(max_examples=200, deadline=None)
@given(steps, st.integers(1, 40))
def test_leases_are_what_one_event_at_a_time_would_take(plan, capacity: int) -> None:
    asyncio.run(run(plan, capacity))
