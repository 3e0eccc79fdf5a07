"""Backpressure on producers while deliveries work but fall behind.

Shared by the stream sources (``producers``) and the file tail: both wait
here before handing a chunk to intake.
"""

from __future__ import annotations

import asyncio

from doow_track_agent.buffers.spool import Spool
from doow_track_agent.stats import Stats

HIGH_WATER = 20_000  # events waiting while deliveries succeed; beyond it producers are paced
PACE_STEP = 0.005    # seconds between looks at the backlog
PACE_LIMIT = 1.0     # seconds one chunk waits at most, so a producer is slowed, never stalled


async def pace(spool: Spool, stats: Stats) -> None:
    """Backpressure while deliveries work but fall behind: wait (bounded) for the pump to catch up.

    Intake and delivery share one event loop; unpaced, a flood of producers
    (or a long file) would take the loop and the backlog would only grow.
    During an outage (deliveries failing, key rejected) nothing waits:
    absorbing the outage is what the spool is for.
    """
    waited = 0.0
    while spool.pending()[0] > HIGH_WATER and stats.healthy and waited < PACE_LIMIT:
        await asyncio.sleep(PACE_STEP)
        waited += PACE_STEP
