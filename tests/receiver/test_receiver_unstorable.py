"""Bodies the receiver cannot store (issue 10, case 2): a 400 or a 207 naming the event, never a 500.

Each body is POSTed raw, as a producer's bytes reach the API: a lone surrogate only exists as a
``\\ud800`` escape inside a JSON string, and 2**63 or 1e309 only as digits."""

from __future__ import annotations

import json

import pytest

from tests.receiver.wire import make_event

LONE = '"\\ud800"'
QUANTITY = '{"event_id":"ev-q","license_id":"lic_abc123","occurred_at":"2026-11-24T10:00:00Z",' \
           '"measurements":[{"metric_name":"tokens","quantity":%s}]}'


def body(*events: str, batch_id: str = '"b-1"') -> bytes:
    return ('{"batch_id":%s,"events":[%s]}' % (batch_id, ",".join(events))).encode()


def good() -> str:
    return json.dumps(make_event())


def surrogate_in(field: str) -> str:
    event = good().replace('"metadata": null', '"metadata": {"k": %s}' % LONE)
    return {"attribution": good().replace('"env": "prod"', '"env": %s' % LONE),
            "metadata": event,
            "unit": good().replace('"unit": "tokens"', '"unit": %s' % LONE),
            "event_id": good().replace('"event_id": "', '"event_id": "\\udc00')}[field]


@pytest.mark.parametrize("field", ["attribution", "metadata", "unit", "event_id"])
def test_a_lone_surrogate_in_an_event_is_400_naming_the_event(post, receiver, field):
    bad = surrogate_in(field)
    response = post(body(good(), bad))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_unicode"
    event_id = json.loads(bad)["event_id"]
    named = f"event {event_id!r}" if field != "event_id" else "event at position 1"
    assert named in response.json()["message"] and "surrogate" in response.json()["message"]
    assert receiver.store.count() == 0


def test_a_lone_surrogate_in_the_batch_id_is_400_naming_it(post, receiver):
    response = post(body(good(), batch_id='"b-\\ud800"'))
    assert response.status_code == 400 and response.json()["message"].startswith("batch_id holds a lone")
    assert receiver.store.count() == 0


@pytest.mark.parametrize("quantity", [str(2 ** 63), str(2 ** 53), "1e309", "-1e309", "1" + "0" * 400])
def test_a_quantity_past_exact_integers_is_refused_naming_the_event(post, receiver, quantity):
    """One event's value is that event's problem: a 207 naming it, and its neighbour is stored."""
    response = post(body(good(), QUANTITY % quantity))
    assert response.status_code == 207, response.text
    [rejection] = response.json()["rejections"]
    assert rejection["event_id"] == "ev-q" and "at most 9007199254740991" in rejection["reason"]
    assert receiver.store.count() == 1


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1" + "0" * 5000],
                         ids=["nan", "inf", "-inf", "5001-digits"])
def test_a_body_that_is_not_json_is_400_wherever_the_value_is(post, receiver, raw):
    in_quantity = body(QUANTITY % raw)
    in_attribution = body(good().replace('"env": "prod"', '"env": %s' % raw))
    for request in (in_quantity, in_attribution):
        response = post(request)
        assert response.status_code == 400 and response.json()["error"] == "invalid_json", response.text
    assert receiver.store.count() == 0


def test_a_body_nested_past_the_parser_is_400(post, receiver):
    deep = good().replace('"env": "prod"', '"env": ' + '{"a":' * 100_000 + "1" + "}" * 100_000)
    response = post(body(deep))
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"
