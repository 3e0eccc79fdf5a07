"""Pipe mode against a misbehaving receiver: every event stored exactly once, or outboxed."""

from __future__ import annotations

import json
import threading
import time

import pytest

from doow_track_agent import samples
from doow_track_agent.receiver.server import Receiver
from tests.support import cli
from tests.support.cli import KEY


def pipe(receiver: Receiver, tmp_path, count: int, **config) -> cli.Result:
    path = tmp_path / "doow-track.json"
    path.write_text(json.dumps({"apiKey": KEY, "endpoint": receiver.url, "flushInterval": 100,
                                "retry": {"initialDelay": 50, "maxDelay": 500}, **config}))
    path.chmod(0o600)
    data = b"\n".join(samples.lines(count)) + b"\n"
    return cli.run(["--config", str(path), "--outbox", str(tmp_path / "outbox.ndjson"), "--json"],
                   stdin=data, timeout=180)


def settle(ledger, receiver: Receiver, result: cli.Result, tmp_path) -> None:
    """Every valid event is stored once or in the outbox; record the row; nothing lost."""
    summary = result.json
    stored = receiver.store.event_ids()
    outbox = tmp_path / "outbox.ndjson"
    outboxed = {json.loads(line)["event_id"] for line in outbox.read_text().splitlines()} if outbox.exists() else set()
    sent = set(summary["event_ids"]) if "event_ids" in summary else stored | outboxed
    lost = len(sent - stored - outboxed)
    ledger.record(sent=summary["valid"], acknowledged=summary["delivered"], stored=len(stored),
                  duplicates=receiver.store.duplicates(), lost=lost)
    assert lost == 0
    assert not stored & outboxed
    assert summary["delivered"] == len(stored)


def test_429_storm_with_retry_after(receiver, tmp_path, ledger):
    receiver.set_faults(fail_first=12, fail_status=429, retry_after=0.05)
    result = pipe(receiver, tmp_path, 2000, retry={"maxAttempts": 20, "initialDelay": 50, "maxDelay": 500})
    assert result.code == 0, result.err
    settle(ledger, receiver, result, tmp_path)
    assert receiver.stats()["requests_by_status"]["429"] == 12


def test_500_bursts(receiver, tmp_path, ledger):
    receiver.set_faults(fail_first=5, fail_status=500)
    result = pipe(receiver, tmp_path, 3000, retry={"maxAttempts": 10, "initialDelay": 20, "maxDelay": 200})
    assert result.code == 0, result.err
    settle(ledger, receiver, result, tmp_path)


def test_connections_reset_mid_request(receiver, tmp_path, ledger):
    receiver.set_faults(reset_first=6)
    result = pipe(receiver, tmp_path, 3000, retry={"maxAttempts": 10, "initialDelay": 20, "maxDelay": 200})
    assert result.code == 0, result.err
    settle(ledger, receiver, result, tmp_path)
    assert receiver.stats()["requests_by_status"].get("reset") == 6


def test_413_on_large_batches(receiver, tmp_path, ledger):
    receiver.set_faults(max_events=100)
    result = pipe(receiver, tmp_path, 3000)
    assert result.code == 0, result.err
    settle(ledger, receiver, result, tmp_path)
    assert receiver.store.duplicates() == 0


def test_207_rejections_are_reported_not_lost(receiver, tmp_path, ledger):
    receiver.set_faults(reject_every=50)
    result = pipe(receiver, tmp_path, 1000)
    assert result.code == 65
    assert result.json["rejected"] == 20 and result.json["delivered"] == 980
    ledger.record(sent=1000, acknowledged=980, stored=receiver.store.count(),
                  duplicates=receiver.store.duplicates(), lost=1000 - 980 - result.json["rejected"])


def test_slow_answer_past_the_timeout_is_not_counted_twice(receiver, tmp_path, ledger):
    """The receiver stores the batch, answers after the client gave up; the retry is a duplicate."""
    receiver.set_faults(slow_accept_ms=3000)

    def heal_after_first_store() -> None:
        deadline = time.monotonic() + 30
        while receiver.store.count() == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        receiver.set_faults()

    healer = threading.Thread(target=heal_after_first_store, daemon=True)
    healer.start()
    result = pipe(receiver, tmp_path, 300, timeout=1000, flushAt=500, concurrency=1,
                  retry={"maxAttempts": 6, "initialDelay": 200, "maxDelay": 500})
    healer.join()
    assert result.code == 0, result.err
    settle(ledger, receiver, result, tmp_path)
    assert receiver.store.count() == 300
    assert receiver.store.duplicates() >= 1, "the retried batch should have reached the receiver again"


@pytest.mark.parametrize("status", [503])
def test_outage_past_the_retry_budget_outboxes_everything(receiver, tmp_path, ledger, status):
    receiver.set_faults(fail_first=10_000, fail_status=status, retry_after=0.01)
    result = pipe(receiver, tmp_path, 1500, retry={"maxAttempts": 3, "initialDelay": 10, "maxDelay": 50})
    assert result.code == 75
    settle(ledger, receiver, result, tmp_path)
    assert result.json["outboxed"] == 1500
