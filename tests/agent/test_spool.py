"""The spool on its own: commit before ack, lease order, restart with the same event_ids, the byte bound."""

from __future__ import annotations

import asyncio

from doow_track_agent.buffers import spool_file, spool_offline
from doow_track_agent.buffers.spool import Spool
from doow_track_agent.intake.events import Accepted
from doow_track_agent.stats import Stats


def events(count: int, start: int = 0, size: int = 100) -> list:
    return [Accepted(f"id-{n}", b'{"event_id":"id-%d","pad":"%s"}' % (n, b"x" * size)) for n in range(start, start + count)]


def run(coroutine):
    return asyncio.run(coroutine)


async def opened(directory, max_bytes: int = 10**9) -> Spool:
    spool = Spool(str(directory), max_bytes, "batch", Stats())
    spool.open()
    return spool


def test_ack_after_commit_then_lease_in_order(tmp_path):
    async def scenario():
        spool = await opened(tmp_path)
        fitting, committed = spool.append(events(5))
        assert fitting == 5 and spool.pending() == (0, None), "nothing is pending before the commit"
        await committed
        count, oldest = spool.pending()
        assert count == 5 and oldest is not None
        batch = spool.lease(3, 10**6)
        assert [event.event_id for event in batch] == ["id-0", "id-1", "id-2"]
        assert spool.pending()[0] == 2
        spool.deferred(batch[1:], "test")
        assert [event.event_id for event in spool.lease(10, 10**6)] == ["id-1", "id-2", "id-3", "id-4"]
        spool.delivered(batch[:1])
        await spool.close()
    run(scenario())


def test_restart_makes_everything_undelivered_pending_with_the_same_ids(tmp_path):
    async def first():
        spool = await opened(tmp_path)
        await spool.append(events(10))[1]
        leased = spool.lease(4, 10**6)
        spool.delivered(leased[:2])   # delivered: gone
        # leased[2:] in flight when the "crash" comes: they must come back
        await spool.close()

    async def second():
        spool = await opened(tmp_path)
        assert spool.pending()[0] == 8
        assert [event.event_id for event in spool.lease(100, 10**6)] == [f"id-{n}" for n in range(2, 10)]
        assert spool.figures()["events"] == 8
        await spool.append(events(1, start=10))[1]
        assert [event.event_id for event in spool.lease(100, 10**6)] == ["id-10"]
        await spool.close()

    run(first())
    run(second())


def test_lease_respects_the_batch_byte_limit(tmp_path):
    async def scenario():
        spool = await opened(tmp_path)
        await spool.append(events(10, size=1000))[1]
        first = spool.lease(500, 3500)
        assert 1 <= len(first) <= 3
        assert len(first) + len(spool.lease(500, 10**6)) == 10
        await spool.close()
    run(scenario())


def test_full_spool_refuses_the_excess_and_frees_space_on_delivery(tmp_path):
    async def scenario():
        one = spool_file.row_size(events(1)[0])
        spool = await opened(tmp_path, max_bytes=one * 3)
        fitting, committed = spool.append(events(5))
        await committed
        assert fitting == 3 and spool.full
        spool.delivered(spool.lease(1, 10**6))
        await spool.close()  # waits for the delete to commit
        assert not spool.full
        assert spool.figures()["events"] == 2
    run(scenario())


def test_rejected_events_move_to_dead_letters(tmp_path):
    async def scenario():
        spool = await opened(tmp_path)
        await spool.append(events(2))[1]
        batch = spool.lease(2, 10**6)
        spool.rejected([(batch[0], "unknown license")])
        spool.delivered(batch[1:])
        await spool.close()
    run(scenario())
    conn = spool_offline.open_existing(str(tmp_path))
    letters = spool_offline.dead_letters(conn)
    assert [(letter.event_id, letter.reason) for letter in letters] == [("id-0", "unknown license")]
    assert spool_offline.offline_figures(str(tmp_path), 10**9)["events"] == 0
    conn.close()


def test_events_spooled_beyond_the_dedup_window_are_counted_in_a_warning(tmp_path, caplog):
    async def spool_some():
        spool = await opened(tmp_path)
        await spool.append(events(5))[1]
        await spool.close()

    async def reopen():
        spool = await opened(tmp_path)
        await spool.close()

    run(spool_some())
    conn = spool_offline.open_existing(str(tmp_path))
    conn.execute("UPDATE events SET added = added - 25 * 3600 WHERE event_id IN ('id-0', 'id-1', 'id-2')")
    conn.close()
    caplog.set_level("WARNING")
    run(reopen())
    assert "3 spooled event(s) are over 24 h old" in caplog.text
