"""Store: the summary per license and metric, and the read helpers tests rely on."""

from __future__ import annotations

import io

from doow_track_agent.receiver.summary import print_summary
from doow_track_agent.receiver.store import Store
from tests.receiver.wire import make_batch, make_event


def _measure(metric: str, quantity: float) -> list:
    return [{"metric_name": metric, "quantity": quantity}]


def _send_mixed_traffic(post) -> list:
    events = [
        make_event(license_id="lic_a", measurements=_measure("tokens", 100)),
        make_event(license_id="lic_a", measurements=_measure("tokens", 50.5)),
        make_event(license_id="lic_a", measurements=_measure("api_calls", 1)),
        make_event(license_id="lic_b", measurements=_measure("tokens", 7), attribution=None),
    ]
    post(make_batch(events))
    post(make_batch(events[:1]))  # a duplicate
    post(make_batch([make_event(license_id="")]))  # a rejection
    return events


def test_summary_totals_per_license_and_metric(post, db_path):
    _send_mixed_traffic(post)

    summary = Store(db_path).summary()

    rows = [{k: row[k] for k in ("license_id", "metric", "events", "quantity", "duplicates")}
            for row in summary["by_license_metric"]]
    assert rows == [
        {"license_id": "lic_a", "metric": "api_calls", "events": 1, "quantity": 1, "duplicates": 0},
        {"license_id": "lic_a", "metric": "tokens", "events": 2, "quantity": 150.5, "duplicates": 1},
        {"license_id": "lic_b", "metric": "tokens", "events": 1, "quantity": 7, "duplicates": 0},
    ]
    assert all(row["last_seen"].endswith("Z") for row in summary["by_license_metric"])
    assert (summary["events"], summary["quantity"], summary["duplicates"], summary["rejected"]) == (4, 158.5, 1, 1)
    assert summary["requests_by_status"] == {"202": 2, "207": 1}


def test_read_helpers(post, db_path):
    events = _send_mixed_traffic(post)
    store = Store(db_path)
    assert store.event_ids() == {e["event_id"] for e in events}
    assert (store.count(), store.duplicates()) == (4, 1)
    assert store.attributions() == [e["attribution"] for e in events]
    assert store.raw_event("never-sent") is None


def test_the_summary_table_reads_well(post, db_path):
    _send_mixed_traffic(post)
    out = io.StringIO()

    print_summary(Store(db_path).summary(), out)

    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["LICENSE", "METRIC", "EVENTS", "QUANTITY", "DUPLICATES", "LAST", "SEEN"]
    assert lines[2].split()[:5] == ["lic_a", "tokens", "2", "150.5", "1"]
    assert lines[-1] == "total: 4 events, quantity 158.5, 1 duplicate, 1 rejected; 3 requests (202: 2, 207: 1)"


def test_an_empty_store_says_so(db_path):
    out = io.StringIO()
    print_summary(Store(db_path).summary(), out)
    assert out.getvalue() == "no events stored\ntotal: 0 events, quantity 0, 0 duplicates, 0 rejected; 0 requests\n"
