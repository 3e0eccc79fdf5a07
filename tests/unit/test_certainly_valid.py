"""``certainly_valid`` (the jsonschema-free check of valid config and events) may only accept what jsonschema accepts.

Instances are generated from the shipped schemas themselves: for each
subschema either a value meant to fit (its type, enum, pattern, the edge
values of its bounds) or one of any JSON shape, so both sides of every
keyword are reached.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doow_track_agent.intake.validation import certainly_valid, load_schema, problems, validator_for

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 66), 2 ** 66),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
                    st.sampled_from(["", " ", "dk_", "dk_x\n", "1", "0660", "\x00", "é" * 65, "a" * 257]))
ANY_JSON = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=6)


def _numbers(schema: dict):
    edges = [bound + delta for key in ("minimum", "maximum", "exclusiveMinimum") if key in schema
             for bound in [schema[key]] for delta in (-1, 0, 1)]
    return st.one_of(st.sampled_from(edges or [0]), st.sampled_from([float(e) for e in edges] or [0.0]),
                     st.integers(-10, 10 ** 6), st.floats(allow_nan=True, allow_infinity=True), st.booleans())


def _strings(schema: dict):
    options = [st.text(max_size=70)]
    if "pattern" in schema:
        pattern = schema["pattern"]
        options.append(st.from_regex(pattern, fullmatch=True).filter(lambda s: len(s) < 300))
        options.append(st.from_regex(pattern, fullmatch=True).map(lambda s: s + "\n"))
    for key in ("minLength", "maxLength"):
        if key in schema:
            options.append(st.sampled_from(["a" * max(0, schema[key] + delta) for delta in (-1, 0, 1)]))
    return st.one_of(*options)


def fitting(root: dict, schema, depth: int = 0):
    """Values meant to fit ``schema``, mixed with values of any shape."""
    if not isinstance(schema, dict) or depth > 4:
        return ANY_JSON
    if "$ref" in schema:
        return fitting(root, root["$defs"][schema["$ref"].rsplit("/", 1)[1]], depth + 1)
    if "enum" in schema:
        return st.one_of(st.sampled_from(schema["enum"]), SCALARS)
    types = schema.get("type", ["object", "string", "number"])
    types = [types] if isinstance(types, str) else types
    options = [SCALARS]
    for name in types:
        if name == "object":
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties", True)
            known = st.fixed_dictionaries({}, optional={key: fitting(root, sub, depth + 1)
                                                        for key, sub in properties.items()})
            others = st.dictionaries(st.one_of(st.text(max_size=70), st.sampled_from(sorted(properties) or ["x"])),
                                     fitting(root, extra, depth + 1), max_size=3)
            options.append(st.tuples(known, others).map(lambda pair: {**pair[1], **pair[0]}))
            options.append(known)
        elif name == "array":
            options.append(st.lists(fitting(root, schema.get("items", {}), depth + 1), max_size=3))
        elif name == "string":
            options.append(_strings(schema))
        elif name in ("number", "integer"):
            options.append(_numbers(schema))
        elif name == "boolean":
            options.append(st.booleans())
    return st.one_of(*options)


@pytest.mark.parametrize("name", ["config", "event"])
def test_never_accepts_what_jsonschema_rejects(name):
    schema = load_schema(name)
    validator = validator_for(name)

    @settings(max_examples=800, deadline=None, suppress_health_check=list(HealthCheck))
    @given(fitting(schema, schema))
    def check(instance):
        if certainly_valid(name, instance):
            assert validator.is_valid(instance), instance

    check()


def test_accepts_the_common_config_layers():
    """Without this, a check that says False to everything would pass the property test."""
    common = [{}, {"apiKey": "dk_abc"}, {"apiKey": "dk_abc", "endpoint": "http://127.0.0.1:8080"},
              {"flushAt": 500, "flushInterval": 200, "socket": {"path": "/run/x.sock"}, "spool": {"fsync": "batch"},
               "health": {"listen": "127.0.0.1:9000"}, "log": {"level": "warning"}, "attribution": {"team": "a"}}]
    assert all(certainly_valid("config", layer) and problems("config", layer) == [] for layer in common)
    assert certainly_valid("event", {"metric": "m", "quantity": 1, "license_id": "l",
                                     "timestamp": "2026-11-24T10:00:00Z"})


def test_edge_values_go_to_jsonschema():
    for layer in ({"flushAt": 1.0}, {"flushAt": True}, {"flushAt": 501}, {"apiKey": "dk_x\n"},
                  {"timeout": math.nan}, {"attribution": {"": 1}}, {"unknown": 1}):
        assert not certainly_valid("config", layer), layer
    assert problems("config", {"flushAt": 501})  # and jsonschema words the error
