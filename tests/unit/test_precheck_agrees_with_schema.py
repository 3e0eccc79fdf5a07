"""The fast pre-check may only ever accept what the JSON Schema accepts."""

from __future__ import annotations

import math

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doow_track_agent.intake.events import precheck
from doow_track_agent.intake.validation import load_schema, validator_for

VALIDATOR = validator_for("event")
KEYS = sorted(load_schema("event")["properties"]) + ["licence_id", "qty", ""]

names = st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{1,130}", fullmatch=True), st.text(max_size=140))
numbers = st.one_of(st.integers(min_value=-(2 ** 70), max_value=2 ** 70),
                    st.floats(allow_nan=True, allow_infinity=True), st.booleans())
timestamps = st.one_of(
    st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat()),
    st.from_regex(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})\n?", fullmatch=True),
    st.text(max_size=40),
)
scalars = st.one_of(st.none(), numbers, names, st.text(max_size=300))
flat = st.dictionaries(st.text(max_size=70), scalars, max_size=35)
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=10), inner, max_size=3), max_leaves=8)
values = {
    "metric": names, "license_id": st.one_of(names, st.text(max_size=140)), "quantity": numbers,
    "unit": st.one_of(st.none(), st.text(max_size=70)), "kind": st.one_of(st.sampled_from(["USAGE", "ADJUSTMENT"]), names),
    "timestamp": timestamps, "source_system": st.text(max_size=70), "attribution": st.one_of(st.none(), flat, anything),
    "metadata": anything, "event_id": names,
    "metric_tuple_hint": st.one_of(st.none(), st.dictionaries(
        st.sampled_from(["app_name", "license_name", "metric_name", "other"]), st.one_of(st.text(max_size=130), numbers))),
}


def events():
    base = st.fixed_dictionaries({"metric": names, "quantity": numbers, "license_id": values["license_id"]})
    extra = st.dictionaries(st.sampled_from(KEYS), st.one_of(*values.values()), max_size=4)
    chosen = st.dictionaries(st.sampled_from(sorted(values)), st.just(None), max_size=4).flatmap(
        lambda keys: st.fixed_dictionaries({key: values[key] for key in keys}))
    return st.one_of(st.tuples(base, chosen, extra).map(lambda t: {**t[0], **t[1], **t[2]}),
                     st.tuples(base, chosen).map(lambda t: {**t[0], **t[1]}), anything)


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events())
def test_precheck_never_accepts_what_the_schema_rejects(event):
    if precheck(event):
        assert VALIDATOR.is_valid(event), event


def test_precheck_accepts_the_common_shapes():
    """Without this, a pre-check that says False to everything would pass the property test."""
    common = [
        {"metric": "api_calls", "quantity": 1, "license_id": "lic_abc123"},
        {"metric": "tokens", "quantity": 512.5, "license_id": "lic_abc123", "attribution": {"model": "gpt-4o"}},
        {"metric": "tokens", "quantity": 2, "license_id": "l", "event_id": "e-1", "timestamp": "2026-11-24T10:00:00Z",
         "kind": "USAGE", "unit": "tokens", "source_system": "sdk", "metadata": {"a": [1]}},
    ]
    assert all(precheck(event) and VALIDATOR.is_valid(event) for event in common)


def test_schema_gaps_are_closed():
    ok = {"metric": "m", "quantity": 1, "license_id": "l"}
    assert VALIDATOR.is_valid(ok)
    assert not VALIDATOR.is_valid({**ok, "quantity": math.nan})
    assert not VALIDATOR.is_valid({**ok, "quantity": math.inf})
    assert not VALIDATOR.is_valid({**ok, "metric": "m\n"})
    assert not VALIDATOR.is_valid({**ok, "timestamp": "2026-11-24 nonsense"})
    assert not VALIDATOR.is_valid({**ok, "timestamp": "2026-11-24T10:00:00"})  # no time zone
    assert not VALIDATOR.is_valid({**ok, "quantity": "1"})
    assert not VALIDATOR.is_valid({**ok, "quantity": True})


def test_precheck_agrees_with_the_schema_at_every_length_bound():
    """One short of, at and one past each bound, every bounded string alone in an otherwise valid event."""
    base = {"metric": "m", "quantity": 1, "license_id": "l"}
    placements = {
        "metric": lambda text: {"metric": text}, "license_id": lambda text: {"license_id": text},
        "event_id": lambda text: {"event_id": text}, "unit": lambda text: {"unit": text},
        "source_system": lambda text: {"source_system": text},
        "attribution key": lambda text: {"attribution": {text: 1}},
        "attribution value": lambda text: {"attribution": {"k": text}},
        "metric_tuple_hint": lambda text: {"metric_tuple_hint": {"app_name": text}},
    }
    for where, place in placements.items():
        for length in (0, 1, 63, 64, 65, 127, 128, 129, 255, 256, 257):
            event = {**base, **place("a" * length)}
            assert precheck(event) == VALIDATOR.is_valid(event), (where, length)
