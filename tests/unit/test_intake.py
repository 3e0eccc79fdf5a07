"""Intake: one line in, one wire event or one precise error out."""

from __future__ import annotations

import json

import pytest

from doow_track_agent.intake import wire
from doow_track_agent.intake.events import Accepted, Intake, Invalid


@pytest.fixture
def intake():
    return Intake({"env": "prod", "model": "default"})


def test_valid_line_becomes_the_wire_event(intake):
    result = intake.accept(b'{"metric":"tokens","quantity":512,"license_id":"lic_abc123","unit":"tokens",'
                           b'"attribution":{"model":"gpt-4o"},"timestamp":"2026-11-24T12:00:00+02:00"}', 1)
    assert isinstance(result, Accepted)
    event = json.loads(result.body)
    assert event["event_id"] == result.event_id
    assert event["occurred_at"] == "2026-11-24T10:00:00.000Z"
    assert event["attribution"] == {"env": "prod", "model": "gpt-4o"}  # the event wins
    assert event["measurements"] == [{"metric_name": "tokens", "quantity": 512}]
    assert (event["kind"], event["unit"], event["source_system"]) == ("USAGE", "tokens", "sdk")


def test_identical_lines_are_two_events(intake):
    line = b'{"metric":"m","quantity":1,"license_id":"l"}'
    assert intake.accept(line, 1).event_id != intake.accept(line, 2).event_id


def test_outbox_line_resends_as_the_same_event(intake):
    first = intake.accept(b'{"metric":"m","quantity":1.5,"license_id":"l","metadata":{"job":"x"}}', 1)
    again = Intake({"env": "prod", "model": "default"}).accept(wire.to_input_line(first.body), 1)
    assert json.loads(again.body) == json.loads(first.body)


@pytest.mark.parametrize("line,path,kind", [
    (b'{"metric":"m","quantity":"1","license_id":"l"}', "$.quantity", "schema"),
    (b'{"metric":"m","quantity":0,"license_id":"l"}', "$.quantity", "schema"),
    (b'{"metric":"m","quantity":1,"licence_id":"l"}', "$.licence_id", "schema"),
    (b'{"metric":"m","quantity":NaN,"license_id":"l"}', "$", "json"),
    (b'{"metric":"m","quantity":1e999,"license_id":"l"}', "$.quantity", "schema"),
    (b'{"metric":"m","quantity":1,"quantity":2,"license_id":"l"}', "$", "json"),
    (b'{"metric":"m","quantity":1,"license_id":"l","metadata":{"auth":"Bearer abcdefghijk"}}', "$.metadata.auth", "secret"),
    (b'{"metric":"m","quantity":1,"license_id":"l","attribution":{"k":"dk_live_0123456789"}}', "$.attribution.k", "secret"),
    (b'{"metric":"m","quantity":1,"license_id":"l","metadata":{"k":"AKIAABCDEFGHIJKLMNOP"}}', "$.metadata.k", "secret"),
    (b'{"metric":"m","quantity":1,"license_id":"l","metadata":{"x":"' + b"a" * 5000 + b'"}}', "$.metadata", "size"),
    (b'{"metric":"m","quantity":1,"license_id":"l","attribution":{"nested":{"a":1}}}', "$.attribution.nested", "schema"),
    (b'\xff{"metric":"m"}', "$", "encoding"),
    (b"[" * 60000, "$", "json"),
    (b"[" * 100000, "$", "size"),
])
def test_invalid_lines_say_where_and_why(intake, line, path, kind):
    result = intake.accept(line, 7)
    assert isinstance(result, Invalid), result
    assert (result.line, result.path, result.kind) == (7, path, kind)


def test_unknown_key_gets_a_hint(intake):
    assert "did you mean 'license_id'" in intake.accept(b'{"metric":"m","quantity":1,"licence_id":"l"}', 1).message


def test_blank_lines_are_not_errors(intake):
    assert intake.accept(b"   \r", 3) is None


@pytest.mark.parametrize("line", [
    b'{"metric":"m","quantity":1,"license_id":"l","quantity":2}',
    b'{"metric":"m","quantity":1,"license_id":"l","attribution":{"a":"x","a":"y"}}',
    b'{"metric" :"m","metric":"n","quantity":1,"license_id":"l"}',
    b'{"metric":"m","quantity":1,"license_id":"l","metadata":{"note":"a\\":b","k":1,"k":2}}',
    b'{"metric": "m", "quantity": 1, "license_id": "l", "metric": "x"}',
])
def test_duplicate_keys_are_found_in_any_spelling(intake, line):
    result = intake.accept(line, 1)
    assert isinstance(result, Invalid) and "duplicate key" in result.message


def test_colons_inside_strings_are_not_mistaken_for_keys(intake):
    assert isinstance(intake.accept(b'{"metric":"m","quantity":1,"license_id":"lic\\":x","unit":"a\\":"}', 1), Accepted)
