"""What a user reads about an invalid line: the values as the JSON they wrote, and every problem (up to 3)."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doow_track_agent.intake.events import Intake, Invalid

BASE = {"metric": "m", "quantity": 1, "license_id": "lic_1"}


def judge(line: bytes) -> Invalid:
    result = Intake().accept(line, 1)
    assert isinstance(result, Invalid), result
    return result


@pytest.mark.parametrize("line,said", [
    (b'{"metric":"m","quantity":1e400,"license_id":"l"}', '1e400 (infinite) is not of type'),
    (b'{"metric":"m","quantity":-1E+999,"license_id":"l"}', '-1E+999 (infinite) is not of type'),
    (b'{"metric":"m","quantity":true,"license_id":"l"}', 'true is not of type'),
    (b'{"metric":"m","quantity":1,"license_id":null}', 'null is not of type'),
    (b'{"metric":"m","quantity":"512","license_id":"l"}', '"512" is not of type'),
])
def test_a_value_is_shown_as_the_json_the_line_holds(line, said):
    assert said in judge(line).message


def test_up_to_three_problems_are_shown_with_their_paths():
    three = judge(b'{"metric":7,"quantity":"x","license_id":null}')
    assert three.path == "$.license_id"
    assert "$.metric: 7 is not of type" in three.message and '$.quantity: "x" is not of type' in three.message
    assert "more)" not in three.message
    five = judge(b'{"metric":7,"quantity":"x","license_id":null,"unit":5,"kind":"x"}')
    assert five.message.count("; ") == 2 and five.message.endswith("(and 2 more)")


_wrong = st.one_of(st.booleans(), st.none(), st.text(alphabet="ab xy\"\\é", max_size=10),
                   st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=200, deadline=None)
@given(value=_wrong)
def test_a_wrong_type_is_quoted_in_json_never_as_a_python_repr(value):
    message = judge(json.dumps({**BASE, "quantity": value}).encode()).message
    spelled = json.dumps(value, ensure_ascii=False)
    assert message.startswith(spelled[:80]), message
