"""Batches measured and built a batch at a time agree with the event-at-a-time rules they replace."""

from __future__ import annotations

import gzip
import json
import sys
import zlib
from typing import List

from hypothesis import given, settings
from hypothesis import strategies as st

from doow_track_agent.buffers.spool import Spool
from doow_track_agent.buffers.spool_file import ROW_OVERHEAD, row_size
from doow_track_agent.buffers.spool_writer import ROWS_PER_INSERT, ranges, statement_sizes
from doow_track_agent.delivery.pump import Batch, Queued, _deflater, gzipped
from doow_track_agent.intake.events import Accepted
from doow_track_agent.intake.wire import BATCH_OVERHEAD, BatchBudget, batch_body
from doow_track_agent.stats import Stats

bodies = st.lists(st.binary(min_size=1, max_size=300), max_size=60)


def one_at_a_time(budget: BatchBudget, items: List[bytes]) -> int:
    added = 0
    for body in items:
        if not budget.fits(body):
            break
        budget.add(body)
        added += 1
    return added


@settings(max_examples=300, deadline=None)
@given(first=bodies, then=bodies, max_bytes=st.integers(min_value=BATCH_OVERHEAD, max_value=6000))
def test_fill_takes_what_fits_and_add_would_take(first: List[bytes], then: List[bytes], max_bytes: int) -> None:
    slow, fast = BatchBudget(max_bytes), BatchBudget(max_bytes)
    taken: List[bytes] = []
    for items in (first, then):  # a second fill continues the first batch, as the spool's lease does
        added = fast.fill(iter(items))
        assert added == one_at_a_time(slow, items)
        assert (fast.size, fast.events) == (slow.size, slow.events)
        taken += items[:added]
    assert fast.size == len(batch_body("0" * 36, taken)) + bool(taken)  # a comma per event: one to spare
    assert fast.events == 1 or fast.size <= max_bytes or not taken


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=40))
def test_a_batch_is_made_once_and_its_gzip_is_the_json_body(quantities: List[int]) -> None:
    events = [Queued(i, f"id-{i}", json.dumps({"event_id": f"id-{i}", "quantity": q}).encode())
              for i, q in enumerate(quantities)]
    batch = Batch.of(events)
    body = gzip.decompress(batch.body) if batch.headers.get("Content-Encoding") == "gzip" else batch.body
    assert body == batch_body(batch.batch_id, [event.body for event in events])
    assert [event["event_id"] for event in json.loads(body)["events"]] == batch.event_ids
    assert gzipped(body) == gzipped(body)  # no timestamp in the gzip header: the same bytes every time


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=60), unique=True, max_size=30), st.booleans())
def test_ranges_are_the_runs_of_consecutive_ids(refs: List[int], contiguous: bool) -> None:
    if contiguous and refs:
        refs = list(range(min(refs), min(refs) + len(refs)))
    covered = [ref for first, last in ranges(refs) for ref in range(first, last + 1)]
    assert covered == sorted(refs)
    assert all(later[0] > earlier[1] + 1 for earlier, later in zip(ranges(refs), ranges(refs)[1:]))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.text("abc", min_size=1, max_size=40), st.binary(max_size=400)), max_size=40),
       st.integers(min_value=0, max_value=20000), st.integers(min_value=0, max_value=5000))
def test_the_spool_fits_events_as_one_row_at_a_time_would(rows, max_bytes: int, used: int) -> None:
    spool = Spool("/nonexistent", max_bytes, "batch", Stats())
    spool._bytes = used
    events = [Accepted(event_id, body) for event_id, body in rows]
    fitting, reserved = spool._fit(events)
    expected, total = 0, 0
    for event in events:
        if used + total + row_size(event) > max_bytes:
            break
        expected, total = expected + 1, total + row_size(event)
    assert (fitting, reserved) == (expected, total)
    assert spool.full == (expected < len(events))
    if events:
        assert row_size(events[0]) == len(rows[0][0]) + len(rows[0][1]) + ROW_OVERHEAD


def test_without_isal_bodies_are_gzipped_by_zlib(monkeypatch) -> None:
    body = batch_body("0" * 36, [b'{"quantity":1}'] * 200)
    with_isal = gzipped(body)
    monkeypatch.setitem(sys.modules, "isal", None)  # as on a platform without its wheel
    _deflater.cache_clear()
    try:
        assert _deflater() is zlib
        assert gzip.decompress(gzipped(body)) == gzip.decompress(with_isal) == body
    finally:
        _deflater.cache_clear()


@given(st.integers(min_value=0, max_value=5000))
def test_inserts_use_few_statement_sizes_for_any_number_of_rows(rows: int) -> None:
    sizes = statement_sizes(rows)
    assert sum(sizes) == rows
    assert set(sizes) <= {ROWS_PER_INSERT} | {1 << bit for bit in range(9)}
