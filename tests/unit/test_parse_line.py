"""``parse_line`` skips the per-object duplicate-key check when counting keys shows none: it must give what the strict parse gives.

Generated lines cover every JSON type, numbers at the edges of int and double
(big integers, subnormals, the double range, exponents), escapes (lone and
paired surrogates, control characters), non-ASCII text, spacing, duplicate
keys, and bytes that are not JSON or not UTF-8.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doow_track_agent.intake.events import parse_line
from tests.support.json_values import same

EDGE_NUMBERS = ["0", "-0", "-0.0", "1e400", "-1e400", "1e-400", "5e-324", "2.4703282292062328e-324",
                "1.7976931348623157e308", "1.7976931348623159e308", "9007199254740993", "18446744073709551616",
                "-9223372036854775809", "1E5", "1e+5", "0.1", "1.0", "01", "1.", ".5", "NaN", "Infinity", "-Infinity"]
EDGE_STRINGS = ['"\\ud800"', '"\\udc00\\ud800"', '"\\ud83d\\ude00"', '"\\u0000"', '"\x01"', '"\\/"', '"é"',
                '"\\u00e9"', '"\xf0\x9f\x98\x80"', '""']
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2 ** 70), 2 ** 70),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=8)


@st.composite
def lines(draw) -> bytes:
    value = draw(values)
    text = json.dumps(value, ensure_ascii=draw(st.booleans()),
                      separators=draw(st.sampled_from([(",", ":"), (", ", ": "), (",", " :")])))
    if draw(st.booleans()):  # splice an edge token in where a value stands
        token = draw(st.sampled_from(EDGE_NUMBERS + EDGE_STRINGS))
        text = f'{{"a":{token},"b":{text}}}'
    if draw(st.integers(0, 4)) == 0:  # repeat a key
        text = text.replace("{", '{"k":1,"k":2,', 1) if "{" in text else text
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 6)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=2)) + raw[at:]
    return raw


def json_module(raw: bytes):
    """What parse_line gave before msgspec: the json module's strict parse, or its exception type."""
    try:
        text = raw.decode("utf-8")
        pairs_checked = json.loads(text, object_pairs_hook=_unique, parse_constant=_no_constant)
        return pairs_checked, None
    except (ValueError, RecursionError) as exc:
        return None, type(exc)


def _unique(pairs):
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise ValueError("duplicate key")
    return dict(pairs)


def _no_constant(name):
    raise ValueError(name)


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines())
def test_parse_line_gives_what_the_json_module_gives(raw):
    expected, error = json_module(raw)
    if error is None:
        assert same(parse_line(raw), expected), raw
    else:
        with pytest.raises((ValueError, RecursionError)):
            parse_line(raw)


@pytest.mark.parametrize("token", EDGE_NUMBERS + EDGE_STRINGS)
def test_edge_tokens(token):
    raw = f'{{"a":{token}}}'.encode("utf-8", "surrogatepass")
    expected, error = json_module(raw)
    if error is None:
        assert same(parse_line(raw), expected)
    else:
        with pytest.raises(ValueError):
            parse_line(raw)


def test_duplicate_keys_are_refused_at_any_depth():
    for raw in (b'{"a":1,"a":2}', b'{"a":{"b":1,"b":1}}', b'[{"x":1},{"y":1,"y":1}]', b'{"a" :1,"a":2}'):
        with pytest.raises(ValueError, match="duplicate key"):
            parse_line(raw)
