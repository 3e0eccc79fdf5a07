"""POST /telemetry/events: every response class, gzip and plain, de-dup, what is stored."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import sqlite3

import httpx
import pytest

from doow_track_agent.receiver.server import Receiver
from doow_track_agent.receiver.store import Store
from tests.receiver.wire import KEY, make_batch, make_event


@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gzip"])
def test_a_valid_batch_is_accepted_and_stored(post, receiver, gzipped):
    events = [make_event() for _ in range(20)]
    batch = make_batch(events)

    response = post(batch, gzipped=gzipped)

    assert response.status_code == 202
    assert response.json() == {"batch_id": batch["batch_id"], "accepted": 20, "duplicates": 0}
    assert receiver.store.event_ids() == {e["event_id"] for e in events}
    assert receiver.stats()["gzip_requests"] == (1 if gzipped else 0)


def test_every_field_is_stored_and_the_raw_event_kept_verbatim(post, db_path):
    hint = {"app_name": "chat", "license_name": "API", "metric_name": "tokens"}
    event = make_event(
        kind="ADJUSTMENT", metadata={"request_id": "req_1"},
        measurements=[{"metric_name": "tokens", "quantity": 3, "metric_tuple_hint": hint}],
    )
    batch = make_batch([event], batch_id="batch-1")
    assert post(batch, gzipped=True).status_code == 202

    with sqlite3.connect(db_path) as conn:
        conn.row_factory = sqlite3.Row
        row = dict(conn.execute("SELECT * FROM events").fetchone())
    assert row["event_id"] == event["event_id"] and row["batch_id"] == "batch-1"
    assert (row["license_id"], row["metric"], row["quantity"]) == ("lic_abc123", "tokens", 3)
    assert (row["kind"], row["unit"], row["occurred_at"]) == ("ADJUSTMENT", "tokens", event["occurred_at"])
    assert json.loads(row["attribution"]) == event["attribution"]
    assert json.loads(row["metadata"]) == {"request_id": "req_1"}
    assert row["received_at"].endswith("Z")
    assert Store(db_path).raw_event(event["event_id"]) == event


@pytest.mark.parametrize(
    "overrides",
    [
        {"unit": None, "attribution": None, "metadata": None, "source_system": None},
        {"kind": "ADJUSTMENT"},
        {"occurred_at": "2026-11-24T10:00:00.000Z"},
        {"occurred_at": "2026-11-24T10:00:00+02:00"},
        # What doow-track 0.1.2 sends for an aware datetime: isoformat() + "Z".
        {"occurred_at": "2026-11-24T10:00:00.123456+00:00Z"},
        {"measurements": [{"metric_name": "api_calls", "quantity": 1,
                           "metric_tuple_hint": {"app_name": "a", "license_name": "l", "metric_name": "m"}}]},
    ],
    ids=["nulls", "adjustment", "millis", "offset", "sdk-aware-timestamp", "tuple-hint"],
)
def test_what_the_official_clients_send_is_accepted(post, overrides):
    event = make_event(**overrides)
    if "unit" in overrides:
        del event["unit"]  # the SDK omits unit when it is not set
    assert post(make_batch([event])).status_code == 202


BAD_EVENTS = {
    "not-an-object": (["x"], "event must be a JSON object"),
    "no-event-id": ({"event_id": None}, "event_id"),
    "no-license": ({"license_id": None}, "license_id"),
    "empty-license": ({"license_id": ""}, "license_id"),
    "zero-quantity": ({"measurements": [{"metric_name": "tokens", "quantity": 0}]}, "quantity"),
    "negative-quantity": ({"measurements": [{"metric_name": "tokens", "quantity": -1}]}, "quantity"),
    "string-quantity": ({"measurements": [{"metric_name": "tokens", "quantity": "5"}]}, "quantity"),
    "boolean-quantity": ({"measurements": [{"metric_name": "tokens", "quantity": True}]}, "quantity"),
    "inexact-quantity": ({"measurements": [{"metric_name": "tokens", "quantity": 2 ** 63}]}, "quantity"),
    "empty-metric": ({"measurements": [{"metric_name": "", "quantity": 1}]}, "metric_name"),
    "control-char-metric": ({"measurements": [{"metric_name": "a\nb", "quantity": 1}]}, "metric_name"),
    "no-measurements": ({"measurements": []}, "measurements"),
    "bad-timestamp": ({"occurred_at": "yesterday"}, "occurred_at"),
    "timestamp-without-zone": ({"occurred_at": "2026-11-24T10:00:00"}, "occurred_at"),
    "bad-month": ({"occurred_at": "2026-13-24T10:00:00Z"}, "occurred_at"),
    "bad-kind": ({"kind": "REFUND"}, "kind"),
    "list-attribution": ({"attribution": ["a"]}, "attribution"),
    "numeric-unit": ({"unit": 5}, "unit"),
}


@pytest.mark.parametrize("bad, reason", BAD_EVENTS.values(), ids=BAD_EVENTS.keys())
def test_invalid_events_are_rejected_in_a_207_and_the_rest_stored(post, receiver, bad, reason):
    good = [make_event(), make_event()]
    invalid = bad[0] if isinstance(bad, list) else make_event(**bad)
    batch = make_batch([good[0], invalid, good[1]])

    response = post(batch)

    assert response.status_code == 207
    body = response.json()
    assert (body["batch_id"], body["accepted"], body["rejected"]) == (batch["batch_id"], 2, 1)
    [rejection] = body["rejections"]
    assert reason in rejection["reason"]
    if isinstance(invalid, dict) and isinstance(invalid.get("event_id"), str):
        assert rejection["event_id"] == invalid["event_id"]
    assert receiver.store.event_ids() == {e["event_id"] for e in good}
    assert receiver.stats()["rejected"] == 1


def test_unknown_licenses_are_rejected_when_the_license_list_is_given(db_path):
    with Receiver(db_path, licenses=["lic_a"]) as receiver:
        batch = make_batch([make_event(license_id="lic_a"), make_event(license_id="lic_b")])
        response = httpx.post(f"{receiver.url}/telemetry/events", json=batch,
                              headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 207
    assert response.json()["rejections"][0]["reason"] == "unknown license_id"


@pytest.mark.parametrize(
    "body, error",
    [
        (b"not json", "invalid_json"),
        (b"\xff\xfe{}", "invalid_json"),
        (b"[]", "invalid_body"),
        (json.dumps({"events": [make_event()]}).encode(), "missing_batch_id"),
        (json.dumps({"batch_id": "", "events": [make_event()]}).encode(), "missing_batch_id"),
        (json.dumps({"batch_id": "b"}).encode(), "missing_events"),
        (json.dumps({"batch_id": "b", "events": []}).encode(), "missing_events"),
        (json.dumps({"batch_id": "b", "events": {"0": make_event()}}).encode(), "missing_events"),
    ],
    ids=["not-json", "not-utf8", "not-an-object", "no-batch-id", "empty-batch-id", "no-events",
         "empty-events", "events-not-a-list"],
)
def test_malformed_batches_get_400_with_a_json_reason(post, receiver, body, error):
    response = post(body)
    assert response.status_code == 400
    assert response.json()["error"] == error and response.json()["message"]
    assert receiver.store.count() == 0


def test_bad_gzip_is_400(post):
    response = post(b"\x1f\x8b definitely not gzip", headers={"Content-Encoding": "gzip"})
    assert (response.status_code, response.json()["error"]) == (400, "bad_gzip")


def test_truncated_gzip_is_400(post):
    body = gzip.compress(json.dumps(make_batch([make_event()])).encode())[:-10]
    response = post(body, headers={"Content-Encoding": "gzip"})
    assert (response.status_code, response.json()["error"]) == (400, "bad_gzip")


def test_an_unknown_content_encoding_is_415(post):
    response = post(make_batch([make_event()]), headers={"Content-Encoding": "br"})
    assert response.status_code == 415


def test_more_than_500_events_is_413(post, receiver):
    response = post(make_batch([make_event() for _ in range(501)]), gzipped=True)
    assert (response.status_code, response.json()["error"]) == (413, "too_many_events")
    assert receiver.store.count() == 0
    assert post(make_batch([make_event() for _ in range(500)]), gzipped=True).status_code == 202


@pytest.mark.parametrize("size", [4096, 1024 * 1024], ids=["small", "over-socket-buffers"])
def test_a_body_over_the_size_limit_is_413_and_the_connection_closed(db_path, size):
    with Receiver(db_path, max_body_bytes=2048) as receiver:
        body = b" " * size
        response = httpx.post(f"{receiver.url}/telemetry/events", content=body,
                              headers={"Authorization": f"Bearer {KEY}"})
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")
    assert response.headers["Connection"] == "close"


def test_a_gzip_body_inflating_over_the_limit_is_413(db_path):
    bomb = gzip.compress(b" " * (1024 * 1024))
    with Receiver(db_path, max_body_bytes=64 * 1024) as receiver:
        response = httpx.post(f"{receiver.url}/telemetry/events", content=bomb,
                              headers={"Authorization": f"Bearer {KEY}", "Content-Encoding": "gzip"})
    assert (response.status_code, response.json()["error"]) == (413, "body_too_large")


def test_a_body_without_content_length_is_411(receiver):
    host, port = receiver.url.rsplit("/", 1)[1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("POST", "/telemetry/events", body=iter([b"{}"]), encode_chunked=True,
                 headers={"Authorization": f"Bearer {KEY}", "Transfer-Encoding": "chunked"})
    assert conn.getresponse().status == 411
    conn.close()


def test_a_content_length_of_thousands_of_digits_is_413_not_a_500(receiver):
    host, port = receiver.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /telemetry/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                     + b"\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
        answer = b"".join(iter(lambda: conn.recv(65536), b"")).decode("latin-1")
    assert answer.startswith("HTTP/1.1 413 ") and "body_too_large" in answer, answer[:200]


@pytest.mark.parametrize("length", ["-5", "+5", "abc", "1e3", "\u00b2", "5 5", "0x10"])
def test_a_content_length_that_is_not_a_number_of_bytes_is_400_and_stores_nothing(receiver, length):
    host, port = receiver.url.rsplit("/", 1)[1].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"POST /telemetry/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
                     + b"\r\nContent-Length: " + length.encode("utf-8") + b"\r\n\r\n{}")
        answer = b"".join(iter(lambda: conn.recv(65536), b"")).decode("latin-1")  # it closes: framing is lost
    assert answer.startswith("HTTP/1.1 400 ") and "bad_framing" in answer, answer
    assert receiver.store.count() == 0


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sk_live_123", "Bearer dk_", "Basic dk_abc", "dk_abc"],
    ids=["missing", "not-dk", "empty-dk", "basic", "no-scheme"],
)
def test_a_missing_or_malformed_key_is_401(receiver, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = httpx.post(f"{receiver.url}/telemetry/events", json=make_batch([make_event()]), headers=headers)
    assert (response.status_code, response.json()["error"]) == (401, "unauthorized")
    assert receiver.store.count() == 0 and receiver.stats()["requests_by_status"] == {"401": 1}


def test_only_listed_keys_are_accepted_when_keys_are_given(db_path):
    with Receiver(db_path, keys=["dk_good"]) as receiver:
        url = f"{receiver.url}/telemetry/events"
        batch = make_batch([make_event()])
        assert httpx.post(url, json=batch, headers={"Authorization": "Bearer dk_other"}).status_code == 401
        assert httpx.post(url, json=batch, headers={"Authorization": "Bearer dk_good"}).status_code == 202


def test_a_repeated_event_is_stored_once_and_counted_as_duplicate(post, receiver):
    event = make_event()
    first = post(make_batch([event], batch_id="b"))
    again = post(make_batch([event, make_event()], batch_id="b"), gzipped=True)

    assert first.json()["duplicates"] == 0
    assert again.status_code == 202 and again.json() == {"batch_id": "b", "accepted": 2, "duplicates": 1}
    assert receiver.store.count() == 2 and receiver.store.duplicates() == 1


def test_a_repeat_within_one_batch_is_a_duplicate_too(post, receiver):
    event = make_event()
    assert post(make_batch([event, event])).json()["duplicates"] == 1
    assert receiver.store.count() == 1 and receiver.store.duplicates() == 1


def test_de_dup_survives_a_receiver_restart(db_path):
    event = make_event()
    headers = {"Authorization": f"Bearer {KEY}"}
    for _ in range(2):
        with Receiver(db_path) as receiver:
            httpx.post(f"{receiver.url}/telemetry/events", json=make_batch([event]), headers=headers)
    assert Store(db_path).count() == 1 and Store(db_path).duplicates() == 1


def test_requests_are_counted_by_status(post, receiver):
    post(make_batch([make_event()]))
    post(make_batch([make_event(), make_event(license_id="")]))
    post(b"nope")
    stats = receiver.stats()
    assert stats["requests_total"] == 3
    assert stats["requests_by_status"] == {"202": 1, "207": 1, "400": 1}
    assert (stats["events"], stats["rejected"]) == (2, 1)


def test_keep_alive_serves_many_requests_on_one_connection(post, receiver):
    for _ in range(5):
        assert post(make_batch([make_event()])).status_code == 202
    assert receiver.store.count() == 5


def test_unknown_paths_are_404_and_wrong_methods_405(client):
    assert client.get("/nope").status_code == 404
    response = client.get("/telemetry/events")
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_stop_closes_open_connections(db_path):
    receiver = Receiver(db_path).start()
    with httpx.Client(base_url=receiver.url, headers={"Authorization": f"Bearer {KEY}"}) as http:
        assert http.post("/telemetry/events", json=make_batch([make_event()])).status_code == 202
        receiver.stop()
        with pytest.raises(httpx.TransportError):
            http.post("/telemetry/events", json=make_batch([make_event()]))
