"""Fault injection: constructor faults, runtime switching, and the decision counters."""

from __future__ import annotations

import time

import httpx
import pytest

from doow_track_agent.receiver.faults import Faults, FaultState
from doow_track_agent.receiver.server import Receiver
from tests.receiver.wire import KEY, make_batch, make_event


@pytest.mark.parametrize("status", [429, 503])
def test_fail_first_answers_the_status_with_retry_after_then_recovers(db_path, status):
    faults = Faults(fail_first=2, fail_status=status, retry_after=2)
    with Receiver(db_path, faults=faults) as receiver, _client(receiver) as http:
        batch = make_batch([make_event()])
        answers = [http.post("/telemetry/events", json=batch) for _ in range(3)]

        assert [a.status_code for a in answers] == [status, status, 202]
        assert answers[0].headers["Retry-After"] == "2"
        assert receiver.store.count() == 1
        assert receiver.stats()["requests_by_status"] == {"202": 1, str(status): 2}


def test_a_500_carries_no_retry_after(db_path):
    with Receiver(db_path, faults=Faults(fail_first=1, fail_status=500)) as receiver, _client(receiver) as http:
        response = http.post("/telemetry/events", json=make_batch([make_event()]))
    assert response.status_code == 500 and "Retry-After" not in response.headers


def test_fractional_retry_after_keeps_retry_tests_fast(db_path):
    with Receiver(db_path, faults=Faults(fail_first=1, retry_after=0.25)) as receiver, _client(receiver) as http:
        assert http.post("/telemetry/events", json=make_batch([make_event()])).headers["Retry-After"] == "0.25"


def test_reject_every_counts_events_across_requests(receiver, client):
    receiver.set_faults(reject_every=3)
    first = [make_event() for _ in range(4)]
    second = [make_event() for _ in range(4)]

    one = client.post("/telemetry/events", json=make_batch(first)).json()
    two = client.post("/telemetry/events", json=make_batch(second)).json()

    assert [r["event_id"] for r in one["rejections"]] == [first[2]["event_id"]]
    assert [r["event_id"] for r in two["rejections"]] == [second[1]["event_id"]]
    assert receiver.store.count() == 6 and receiver.stats()["rejected"] == 2


def test_latency_delays_every_protocol_request(receiver, client):
    receiver.set_faults(latency_ms=200)
    started = time.monotonic()
    client.get("/sdk/licenses/lic_a")
    client.post("/telemetry/events", json=make_batch([make_event()]))
    assert time.monotonic() - started >= 0.4


def test_slow_accept_stores_the_batch_before_the_client_times_out(receiver):
    receiver.set_faults(slow_accept_ms=2000)
    batch = make_batch([make_event(), make_event()])
    with _client(receiver, timeout=0.3) as http, pytest.raises(httpx.ReadTimeout):
        http.post("/telemetry/events", json=batch)
    deadline = time.monotonic() + 10  # stored before the answer is due, however loaded the machine
    while receiver.store.count() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert receiver.store.count() == 2

    receiver.set_faults()
    with _client(receiver) as http:
        retried = http.post("/telemetry/events", json=batch)
    assert retried.json()["duplicates"] == 2
    assert receiver.store.count() == 2 and receiver.store.duplicates() == 2


def test_reset_first_drops_the_connection_without_storing(receiver, client):
    receiver.set_faults(reset_first=1)
    batch = make_batch([make_event()])
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/telemetry/events", json=batch)
    assert receiver.store.count() == 0

    assert client.post("/telemetry/events", json=batch).status_code == 202
    assert receiver.stats()["requests_by_status"] == {"202": 1, "reset": 1}


def test_max_events_lowers_the_413_threshold(receiver, client):
    receiver.set_faults(max_events=10)
    assert client.post("/telemetry/events", json=make_batch([make_event() for _ in range(11)])).status_code == 413
    assert client.post("/telemetry/events", json=make_batch([make_event() for _ in range(10)])).status_code == 202


def test_faults_switch_at_runtime_without_auth(receiver, client):
    control = httpx.post(f"{receiver.url}/_receiver/faults", json={"fail_first": 1, "fail_status": 503})
    assert control.status_code == 200 and control.json()["fail_first"] == 1
    assert client.post("/telemetry/events", json=make_batch([make_event()])).status_code == 503

    httpx.post(f"{receiver.url}/_receiver/faults", json={"fail_first": 5})
    httpx.post(f"{receiver.url}/_receiver/faults", json={})
    assert client.post("/telemetry/events", json=make_batch([make_event()])).status_code == 202


@pytest.mark.parametrize(
    "body",
    [{"fail_frist": 1}, {"fail_status": 200}, {"latency_ms": -1}, {"reject_every": 1.5}, {"fail_first": True}, []],
    ids=["unknown-field", "non-error-status", "negative", "fractional-count", "boolean", "not-an-object"],
)
def test_invalid_fault_settings_are_400(receiver, body):
    response = httpx.post(f"{receiver.url}/_receiver/faults", json=body)
    assert (response.status_code, response.json()["error"]) == (400, "invalid_faults")


def test_stats_need_no_auth(receiver, client):
    client.post("/telemetry/events", json=make_batch([make_event(), make_event()]))
    stats = httpx.get(f"{receiver.url}/_receiver/stats").json()
    assert (stats["events"], stats["duplicates"], stats["requests_total"]) == (2, 0, 1)


def test_fault_counters_restart_when_faults_are_replaced():
    state = FaultState(Faults(fail_first=1, fail_status=429, reset_first=1))
    assert (state.take_reset(), state.take_reset()) == (True, False)
    assert (state.take_failure(), state.take_failure()) == (429, None)
    state.replace(Faults(fail_first=1))
    assert state.take_failure() == 503


def test_rejection_positions_follow_the_whole_stream():
    state = FaultState(Faults(reject_every=4))
    assert state.take_rejections(3) == []
    assert state.take_rejections(6) == [0, 4]
    assert state.take_rejections(3) == [2]
    assert FaultState().take_rejections(100) == []


def _client(receiver: Receiver, timeout: float = 30) -> httpx.Client:
    return httpx.Client(base_url=receiver.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=timeout)
