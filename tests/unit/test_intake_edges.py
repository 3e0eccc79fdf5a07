"""Intake at the edges (issue 10): whatever a line holds, it is judged, and what is accepted can be stored.

Invariants, over values at the edges of every field (datetime bounds in every
offset, lone surrogates and control characters in every string, BOMs, huge
and tiny numbers, deep nesting, every JSON type in every field):

* ``accept`` never raises, and never needs its last-resort ``internal`` verdict;
* each result is accepted, or invalid with a JSON path;
* every accepted body is strict UTF-8 JSON, and the real receiver stores it (202);
* the fast pre-check never accepts what the JSON Schema refuses.
"""

from __future__ import annotations

import json
from typing import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doow_track_agent.intake import wire
from doow_track_agent.intake.events import Accepted, Intake, Invalid, parse_line, precheck
from doow_track_agent.receiver.server import Receiver
from doow_track_agent.intake.validation import load_schema, problems

FIELDS = sorted(load_schema("event")["properties"])
ODD_CHARACTERS = ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\x1f", "\x7f", "\x85", "\u2028", "\u200e",
                  "\ufeff", "\U0001f600", "é"]
odd_text = st.text(alphabet=st.one_of(st.characters(), st.sampled_from(ODD_CHARACTERS)), max_size=12)
offsets = st.builds(lambda sign, hours, minutes: f"{sign}{hours:02d}:{minutes:02d}",
                    st.sampled_from("+-"), st.integers(0, 23), st.integers(0, 59))
edge_stamps = st.builds(
    lambda date, time, offset: f"{date}T{time}{offset}",
    st.sampled_from(["0001-01-01", "0001-01-02", "9999-12-31", "9999-12-30", "1970-01-01", "2000-02-29"]),
    st.sampled_from(["00:00:00", "23:59:59", "23:59:60", "00:00:00.999999999", "12:00:00.5"]),
    st.one_of(offsets, st.just("Z"), st.just("z")),
)
numbers = st.one_of(st.integers(-(2 ** 80), 2 ** 80), st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([5e-324, 1e-320, 1.7976931348623157e308, 2 ** 63, 10 ** 40]))
json_scalars = st.one_of(st.none(), st.booleans(), numbers, odd_text)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(odd_text, inner, max_size=3), max_leaves=6)
field_values = {
    "metric": st.one_of(st.just("api_calls"), odd_text, json_values),
    "quantity": st.one_of(st.just(1), numbers, json_values),
    "license_id": st.one_of(st.just("lic_1"), odd_text, json_values),
    "timestamp": st.one_of(edge_stamps, odd_text, json_values),
}
other_values = st.one_of(json_values, odd_text, st.dictionaries(odd_text, json_scalars, max_size=4))


@st.composite
def lines(draw) -> bytes:
    event = {name: draw(strategy) for name, strategy in field_values.items() if draw(st.booleans()) or name != "timestamp"}
    for name in draw(st.lists(st.sampled_from(FIELDS + ["odd"]), max_size=3)):
        event[name] = draw(other_values)
    raw = json.dumps(event).encode()  # ensure_ascii: lone surrogates travel as \ud800 escapes, as producers send them
    depth = draw(st.sampled_from([0, 0, 0, 10, 500, 2000]))
    if depth:
        raw = raw[:-1] + b',"metadata":{"d":' + b"[" * depth + b"]" * depth + b"}}"
    if draw(st.booleans()):
        raw = b"\xef\xbb\xbf" + raw
    return raw


@pytest.fixture(scope="module")
def store_url(tmp_path_factory) -> Iterator[str]:
    with Receiver(str(tmp_path_factory.mktemp("edges") / "receiver.sqlite")).start() as server:
        yield server.url + wire.INGEST_PATH


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(raw=lines())
def test_every_line_is_judged_and_what_is_accepted_is_stored(raw: bytes, store_url: str) -> None:
    result = Intake({"env": "test"}).accept(raw, 7)
    assert isinstance(result, (Accepted, Invalid)), result
    if isinstance(result, Invalid):
        assert result.kind != "internal", result
        assert result.line == 7 and result.path.startswith("$"), result
        return
    event = json.loads(result.body.decode("utf-8"))  # strict: raises on anything but UTF-8 JSON
    json.dumps(event, ensure_ascii=False).encode("utf-8")  # no lone surrogate hides behind an escape
    answer = httpx.post(store_url, content=wire.batch_body(wire.new_uuid4(), [result.body]),
                        headers={"Authorization": "Bearer dk_test_edges_0000", "Content-Type": "application/json"})
    assert answer.status_code == 202, (raw, answer.text)


@settings(max_examples=300, deadline=None)
@given(raw=lines())
def test_the_fast_path_never_accepts_what_the_schema_refuses(raw: bytes) -> None:
    try:
        event = parse_line(raw.lstrip(b"\xef\xbb\xbf"))
    except (ValueError, RecursionError):
        return
    if precheck(event):
        assert problems("event", event) == []


@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00",
                                   "0001-01-01T00:59:59.999+01:00"])
def test_a_timestamp_that_leaves_the_range_in_utc_is_an_ordinary_invalid_line(stamp: str) -> None:
    raw = json.dumps({"metric": "m", "quantity": 1, "license_id": "lic_1", "timestamp": stamp}).encode()
    result = Intake().accept(raw, 2)
    assert isinstance(result, Invalid) and result.kind == "schema"
    assert result.path == "$.timestamp" and "out of range" in result.message


@pytest.mark.parametrize("bulk_after", [None, 0], ids=["slow path", "fast path"])
@pytest.mark.parametrize("stamp", ["\u0662\u0660\u0662\u0666-11-24T10:00:00Z", "2026-11-24T10:00:00.\u0665Z",
                                   "2026-11-24T1\uff10:00:00Z", "2026-11-24T10:00:00+0\u0967:00"])
def test_a_timestamp_with_digits_other_than_ascii_is_invalid(stamp: str, bulk_after) -> None:
    raw = json.dumps({"metric": "m", "quantity": 1, "license_id": "lic_1", "timestamp": stamp},
                     ensure_ascii=False).encode()
    intake = Intake() if bulk_after is None else Intake(bulk_after=bulk_after)
    result = intake.accept(raw, 1)
    assert isinstance(result, Invalid) and result.path == "$.timestamp", result


@pytest.mark.parametrize("bulk_after", [None, 0], ids=["slow path", "fast path"])
@pytest.mark.parametrize("fraction", ["1234567890", "999999999999", "0" * 40])
def test_any_number_of_fraction_digits_is_a_timestamp_cut_to_milliseconds(fraction: str, bulk_after) -> None:
    raw = b'{"metric":"m","quantity":1,"license_id":"lic_1","timestamp":"2026-11-24T10:00:00.%sZ"}' % fraction.encode()
    intake = Intake() if bulk_after is None else Intake(bulk_after=bulk_after)
    result = intake.accept(raw, 1)
    assert isinstance(result, Accepted), result
    assert b'"occurred_at":"2026-11-24T10:00:00.%sZ"' % fraction[:3].encode() in result.body


@pytest.mark.parametrize("bulk_after", [None, 0], ids=["slow path", "fast path"])
@pytest.mark.parametrize("metadata,path", [('{"k":1e400}', "$.metadata.k"),
                                           ('{"k":[1,{"j":-1e400}]}', "$.metadata.k[1].j"),
                                           ('{"n":1%s.0}' % ("0" * 400), "$.metadata.n")])
def test_a_number_too_large_for_json_in_metadata_is_an_ordinary_invalid_line(metadata, path, bulk_after) -> None:
    raw = b'{"metric":"m","quantity":1,"license_id":"lic_1","metadata":%s}' % metadata.encode()
    intake = Intake() if bulk_after is None else Intake(bulk_after=bulk_after)
    result = intake.accept(raw, 1)
    assert isinstance(result, Invalid) and result.kind == "schema", result
    assert result.path == path and "finite" in result.message


def test_the_earliest_instant_keeps_its_four_digit_year() -> None:
    raw = b'{"metric":"m","quantity":1,"license_id":"lic_1","timestamp":"0001-01-01T00:00:00Z"}'
    result = Intake().accept(raw, 1)
    assert isinstance(result, Accepted) and b'"occurred_at":"0001-01-01T00:00:00.000Z"' in result.body


@pytest.mark.parametrize("field,value,path", [
    ("attribution", {"k": "\ud800"}, "$.attribution.k"),
    ("metadata", {"a": ["x", "\udfff"]}, "$.metadata.a[1]"),
    ("unit", "\udc00", "$.unit"),
    ("metric_tuple_hint", {"app_name": "\ud83d"}, "$.metric_tuple_hint.app_name"),
])
def test_a_lone_surrogate_is_refused_with_its_path(field: str, value: object, path: str) -> None:
    raw = json.dumps({"metric": "m", "quantity": 1, "license_id": "lic_1", field: value}).encode()
    result = Intake().accept(raw, 1)
    assert isinstance(result, Invalid) and result.kind == "encoding" and result.path == path


def test_an_overlong_line_never_claims_a_made_up_length() -> None:
    result = Intake().accept(b"x" * (64 * 1024 + 1), 1)
    assert isinstance(result, Invalid) and "longer than 64 KiB" in result.message


def test_an_unforeseen_error_costs_one_line_named_internal(monkeypatch) -> None:
    intake = Intake()
    monkeypatch.setattr("doow_track_agent.intake.policy.size_problem", lambda event: 1 / 0)
    result = intake.accept(b'{"metric":"m","quantity":1,"license_id":"lic_1"}', 3)
    assert isinstance(result, Invalid) and result.kind == "internal" and "ZeroDivisionError" in result.message
