"""The msgspec fast path (issue 16) judges every line as the slow path does, and takes only what the schema accepts.

Lines are written key by key, so that they can hold what a dict cannot:
duplicate keys (top level and nested), spaced colons, raw number tokens at
the edges (2^53 - 1, 2^53, 1e400, -0.0, 5e-324, 1E5), escapes (lone and
paired surrogates, control characters), raw non-ASCII and DEL, overlong
strings, null and booleans in every field, unknown keys, odd time zone
offsets and fractions, secret markers, a BOM.  For each list of lines, an
intake on the fast path and one on the slow path (same default id, same
clock, same default attribution) must give the same Accepted bytes or the
same Invalid, line after line (so the remembered attribution texts are
checked too).
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
import tracemalloc

import pytest

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doow_track_agent import samples
from doow_track_agent.intake import fast_path, policy, wire
from doow_track_agent.intake.events import Intake, parse_line
from doow_track_agent.intake.validation import load_schema, problems
from tests.support.json_values import same

FAST = fast_path.for_events()
EXAMPLES = int(os.environ.get("FAST_PATH_EXAMPLES", "600"))  # raise it to search harder after changing the fast path
PROPERTIES = sorted(load_schema("event")["properties"])
NUMBER_TOKENS = ["1", "0", "-1", "0.5", "11.39", "2633", "9007199254740991", "9007199254740992", "9007199254740991.0",
                 "1e400", "-1e400", "1e-400", "-0.0", "-0", "5e-324", "2.4703282292062328e-324", "1E5", "1e+5",
                 "1.0", "1.7976931348623157e308", "18446744073709551616", "123456789012345678901234567890",
                 "0.1000000000000000055511151231257827", "true", "false", "null", '"1"']
ODD_TEXT = ["", "a", "lic_1", "api_calls", "é", "\u2028", "\x7f", "\x85", "\U0001f600", "tab\there", "a b",
            "dk_live_0123456789", "Bearer abcdefghijk", "eyJhbGciOi.eyJzdWIiOi.", "AKIAABCDEFGHIJKLMNOP", "x\":y",
            "a" * 64, "a" * 65, "a" * 128, "a" * 129, "a" * 256, "a" * 257, "é" * 129, "k_", "yJ",
            "100%", "%s%r", "%%"]
STRING_TOKENS = ['"\\ud800"', '"\\udc00x"', '"\\ud83d\\ude00"', '"\\u0000"', '"\\u001f"', '"\\/"', '"\\u0041"']
OFFSETS = ["Z", "z", "+00:00", "-00:00", "+05:30", "-12:45", "+23:59", "+24:00", "-01:60", ""]
NAMES = st.text(alphabet=string.ascii_letters + string.digits + "_.:-", min_size=1, max_size=12)
STAMPS = st.builds(lambda date, time, fraction, offset: f"{date}T{time}{fraction}{offset}",
                   st.sampled_from(["2026-11-24", "0001-01-01", "9999-12-31", "2024-02-29", "2026-02-29",
                                    "2026-13-01"]),
                   st.sampled_from(["10:00:00", "00:00:00", "23:59:59", "23:59:60", "24:00:00"]),
                   st.sampled_from(["", ".5", ".123", ".999999999", ".1234567891", "."]),
                   st.sampled_from(OFFSETS))


def _string(text: str, ascii_only: bool) -> str:
    return json.dumps(text, ensure_ascii=ascii_only)


@st.composite
def tokens(draw, key: str) -> str:
    """A JSON value (as text) for ``key``: fitting it, or at the edges of any type."""
    ascii_only = draw(st.booleans())
    odd = draw(st.integers(0, 9)) == 0  # most values fit, so that the fast path is reached; some never do
    names = st.sampled_from(ODD_TEXT) if odd else NAMES
    scalar = st.one_of(st.sampled_from(NUMBER_TOKENS), st.sampled_from(STRING_TOKENS),
                       names.map(lambda text: _string(text, ascii_only)))
    fitting = {
        "metric": names.map(lambda text: _string(text, ascii_only)),
        "license_id": names.map(lambda text: _string(text, ascii_only)),
        "quantity": st.sampled_from(NUMBER_TOKENS) if odd else st.sampled_from(["1", "0.5", "2633", "1E5", "5e-324"]),
        "unit": st.one_of(st.just("null"), names.map(lambda text: _string(text, ascii_only))),
        "kind": st.sampled_from(['"USAGE"', '"ADJUSTMENT"', '"usage"', "null"] if odd else ['"USAGE"', '"ADJUSTMENT"']),
        "timestamp": STAMPS.map(lambda text: _string(text, True)),
        "source_system": names.map(lambda text: _string(text, ascii_only)),
        "event_id": names.map(lambda text: _string(text, ascii_only)),
        "attribution": st.one_of(st.just("null"), objects(names, scalar)),
        "metadata": st.one_of(st.just("null"), objects(names, st.one_of(scalar, objects(names, scalar)))),
        "metric_tuple_hint": st.one_of(st.just("null"), objects(
            st.sampled_from(["app_name", "license_name", "metric_name", "other"]), scalar)),
    }.get(key, scalar)
    return draw(scalar if odd and draw(st.booleans()) else fitting)


def objects(keys, values):
    """A JSON object as text, keys possibly repeated, spaced or not."""
    return st.builds(lambda pairs, colon, comma: "{" + comma.join(f"{json.dumps(k)}{colon}{v}" for k, v in pairs) + "}",
                     st.lists(st.tuples(keys, values), max_size=4), st.sampled_from([":"] * 6 + [" :", ": "]),
                     st.sampled_from([","] * 4 + [", "]))


@st.composite
def lines(draw) -> bytes:
    keys = ["metric", "quantity", "license_id"] + draw(st.lists(st.sampled_from(PROPERTIES * 4 + ["odd"]), max_size=4))
    keys = [key for key in keys if draw(st.integers(0, 30))] or keys  # now and then a required key is missing
    if draw(st.integers(0, 5)) == 0:
        keys = draw(st.permutations(keys))
    colon = draw(st.sampled_from([":"] * 6 + [" :", ": ", "\t:"]))
    comma = draw(st.sampled_from([","] * 4 + [", "]))
    text = "{" + comma.join(f'"{key}"{colon}{draw(tokens(key))}' for key in keys) + "}"
    raw = text.encode("utf-8", "surrogatepass")
    if draw(st.integers(0, 8)) == 0:
        raw = draw(st.sampled_from([b"\xef\xbb\xbf", b"  ", b"\t"])) + raw + draw(st.sampled_from([b"", b" ", b"\r"]))
    if draw(st.integers(0, 30)) == 0:
        at = draw(st.integers(0, len(raw)))
        raw = raw[:at] + draw(st.binary(min_size=1, max_size=2)) + raw[at:]
    return raw


class FixedClock(wire.Clock):
    def now(self) -> str:
        return "2026-11-24T10:00:00.000Z"


def intake(fast: bool, attribution: dict) -> Intake:
    judge = Intake(attribution, bulk_after=0 if fast else 10 ** 9)
    judge._clock = FixedClock()  # both paths stamp the same read time
    return judge


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(lines(), min_size=1, max_size=3), st.sampled_from([{}, {"env": "prod"}, {"env": "prod", "k": 1}]))
def test_the_fast_path_judges_every_line_as_the_slow_path_does(raws, attribution):
    fast, slow = intake(True, attribution), intake(False, attribution)
    for number, raw in enumerate(raws, 1):
        assert fast.accept(raw, number, "fixed-id") == slow.accept(raw, number, "fixed-id"), raw


# Lines that differ in one field the wire text depends on (a remembered shape must tell them apart).
SHAPES = [b'{"metric":"m","quantity":1,"license_id":"l"%s}' % field for field in (
    b"", b',"kind":"ADJUSTMENT"', b',"kind":"USAGE"', b',"unit":"u"', b',"unit":null', b',"source_system":"s"',
    b',"attribution":{"a":1}', b',"attribution":{"a":true}', b',"attribution":null', b',"metric_tuple_hint":{}',
    b',"metadata":{}', b',"event_id":"e"', b',"timestamp":"2020-01-01T00:00:00Z"',
    b',"event_id":"e","timestamp":"2020-01-01T00:00:00Z"')]
SHAPES += [SHAPES[0].replace(b'"m"', b'"n"'), SHAPES[0].replace(b'"l"', b'"k"'), SHAPES[0].replace(b"1", b"2.5"),
           SHAPES[0].replace(b'"l"', b'"100%%"')]  # a body's format must keep a field's % as it is


def expected_block(judge: Intake, numbered, ids):
    """What ``accept_block`` must give, made from ``accept`` line after line."""
    rows, others = [], []
    for (number, raw), default_id in zip(numbered, ids):
        verdict = judge.accept(raw, number, default_id)
        if verdict is not None and type(verdict).__name__ != "Invalid":
            rows.append((number, *verdict))
        if verdict is not None and type(verdict).__name__ != "Accepted":
            others.append((len(rows) - (type(verdict).__name__ == "OwnId"), number, raw, verdict))
    return rows, others


# Ids a caller may give for lines without one: ordinary, and ones JSON must escape (a block writes ids as they are).
DEFAULT_IDS = ["default-%d", 'say "%d"', "back\\slash-%d", "é-%d", "tab\t%d", "%d%%s"]


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(lines(), st.sampled_from([b"", b" ", b"\r", *samples.lines(3), *SHAPES])), min_size=1,
                max_size=6),
       st.sampled_from([{}, {"env": "prod"}]), st.sampled_from([0, 2]), st.sampled_from(DEFAULT_IDS))
def test_a_block_is_judged_as_its_lines_are_one_by_one(raws, attribution, bulk_after, default_id):
    raws = raws + raws[:2]  # repeated lines: remembered shapes and attribution texts are used again
    numbered = list(enumerate(raws, 1))
    ids = [default_id % number for number, _ in numbered]
    block, one_by_one = intake(True, attribution), intake(False, attribution)
    block._bulk_after = one_by_one._bulk_after = bulk_after
    block._fast = one_by_one._fast = FAST if bulk_after == 0 else None
    assert block.accept_block(numbered, tuple, ids) == expected_block(one_by_one, numbered, ids), raws
    assert block.stale_replays == one_by_one.stale_replays


def _plain(raw: bytes) -> bytes:
    """The line without blanks and backslashes: what bulk input looks like, so that blocks are judged at once."""
    return raw.translate(None, b" \t\r\n\x0b\x0c\\")


# Lines of a plain block that are each refused for one reason a whole-block judge could miss.
ODD_ONES_OUT = [b'{"metric":"m","quantity":1,"license_id":"l","timestamp":"2026-13-01T10:00:00Z"}',  # a bad date
                b'{"metric":"m/x","quantity":1,"license_id":"l"}',  # a metric off its pattern
                b'{"metric":"m","quantity":1,"license_id":"l","license_id":"k"}',  # a repeated key
                b'{"metric":"m","quantity":1,"license_id":"l","attribution":{"a":1,"a":2}}',  # a repeated nested key
                b'{"metric":"m","quantity":1,"license_id":"l","metadata":{"x":{"y":1,"y":2}}}',  # deeper
                b'{"metric":"m","quantity":1,"license_id":"l","odd":2}',  # an unknown key
                b'{"metric":"m","quantity":"1","license_id":"l"}',  # msgspec refuses it: the block decodes line by line
                b'{"metric":"m","quantity":1,"license_id":"dk_0123456789"}',  # a secret marker
                b'{"metric":"m",%s"quantity":1,"license_id":"l"}' % (b" " * policy.MAX_LINE_BYTES)]  # overlong
OWN_ID = b'{"metric":"m","quantity":1,"license_id":"l","event_id":"e-1","timestamp":"2020-01-01T00:00:00Z"}'


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.lists(st.one_of(lines().map(_plain), st.sampled_from([*samples.lines(3), *SHAPES, *ODD_ONES_OUT, OWN_ID])),
                min_size=1, max_size=8),
       st.lists(st.sampled_from(samples.lines(20)), max_size=30))
def test_a_plain_block_is_judged_as_its_lines_are_one_by_one(raws, common):
    """Varied and repeated values in one block of lines without blanks: the block's checks agree line by line."""
    raws = common + raws + raws[:3] + common[:2]
    numbered = list(enumerate(raws, 1))
    ids = [f"default-{number}" for number, _ in numbered]
    block, one_by_one = intake(True, {"env": "prod"}), intake(False, {"env": "prod"})
    assert block.accept_block(numbered, tuple, ids) == expected_block(one_by_one, numbered, ids), raws
    assert block.stale_replays == one_by_one.stale_replays


@pytest.mark.parametrize("odd", ODD_ONES_OUT)
def test_one_odd_line_in_a_plain_block_costs_only_itself(odd):
    """Hundreds of common lines around one that must be refused or judged the slow way: the block's judge
    gives each line its own verdict, as one by one (a block judged as a whole must not take or lose it)."""
    raws = samples.lines(150) + [odd] + samples.lines(150, seed=8)
    numbered = list(enumerate(raws, 1))
    ids = [f"default-{number}" for number, _ in numbered]
    rows, others = intake(True, {}).accept_block(numbered, tuple, ids)
    assert (rows, others) == expected_block(intake(False, {}), numbered, ids)
    assert len(rows) == len(raws) - 1 and [(raw, type(verdict).__name__) for _, _, raw, verdict in others] == [
        (odd, "Invalid")]


def test_a_block_with_a_secret_marker_anywhere_is_judged_line_by_line():
    """Every marker policy looks for (its own list, so that a new one is covered) keeps a block from being
    judged at once: the block's judge decodes before policy could see the marker."""
    for marker in policy._MARKERS.pattern.split(b"|"):
        marker = marker.replace(b"\\\\", b"\\")
        assert not fast_path._plain(b"\0".join(samples.lines(3) + [b'{"x":"%s"}' % marker])), marker
    assert fast_path._plain(b"\0".join(samples.lines(300)))


@pytest.mark.parametrize("raw", [b'{"metric":"a","quantity":1,"license_id":"\x80"}',
                                 b'{"metric":"a\xff\xfe","quantity":1,"license_id":"l"}'])
def test_invalid_utf_8_is_an_encoding_error_on_the_fast_path_too(raw):
    """Whichever msgspec the Python has (0.20 raises UnicodeDecodeError where 0.23 raises DecodeError)."""
    for judge in (intake(True, {}), intake(False, {})):
        assert judge.accept(raw, 1, "fixed-id").kind == "encoding"
    rows, others = intake(True, {}).accept_block(list(enumerate(samples.lines(250) + [raw], 1)), tuple)
    assert len(rows) == 250 and [verdict.kind for _, _, _, verdict in others] == ["encoding"]


def test_a_fault_in_the_fast_path_costs_speed_never_lines(monkeypatch):
    """A bug the fast path raises on (say, a value of a type a new schema allows and a check cannot hash):
    the block is judged line by line, every line keeps its verdict, and the run goes on."""
    raws = samples.lines(250) + [b'{"metric":"m"}']
    numbered = list(enumerate(raws, 1))
    ids = [f"default-{number}" for number, _ in numbered]

    def broken(self, raws):
        raise TypeError("unhashable type: 'dict'")

    monkeypatch.setattr(fast_path.FastPath, "events", broken)
    assert intake(True, {}).accept_block(numbered, tuple, ids) == expected_block(intake(False, {}), numbered, ids)


def test_a_block_without_ids_given_draws_fresh_uuid4s():
    judge = intake(True, {})
    rows, others = judge.accept_block(list(enumerate(samples.lines(300) + [OWN_ID], 1)))
    assert [number for number, _, _ in rows] == list(range(1, 302)) and judge.stale_replays == 1
    assert others == [(300, 301, OWN_ID, judge.accept(OWN_ID, 301))] and rows[300][1:] == others[0][3]
    assert len({event_id for _, event_id, _ in rows}) == 301
    assert all(json.loads(body)["event_id"] == event_id for _, event_id, body in rows)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines())
def test_what_the_fast_path_takes_the_schema_accepts_with_no_duplicate_key(raw):
    event = FAST.event(raw.strip())
    if event is not None:
        assert problems("event", event) == [], raw
        assert same(parse_line(raw.strip()), event), raw  # the strict parse: no duplicate key, same values


def test_attributions_differing_only_in_type_keep_their_own_text():
    judge = intake(True, {"env": "prod"})
    bodies = [json.loads(judge.accept(b'{"metric":"m","quantity":1,"license_id":"l","attribution":{"a":%s}}' % value,
                                      1).body)["attribution"]["a"] for value in (b"1", b"1.0", b"true", b'"1"', b"1")]
    assert [(type(value), value) for value in bodies] == [(int, 1), (float, 1.0), (bool, True), (str, "1"), (int, 1)]


def test_the_common_shapes_take_the_fast_path():
    """Without this, a fast path that refused everything would pass the properties above."""
    every_field = (b'{"metric":"tokens","quantity":2.5,"license_id":"lic_\xc3\xa9","unit":"tokens","kind":"ADJUSTMENT",'
                   b'"timestamp":"2026-11-24T10:00:00.123+05:30","source_system":"billing","event_id":"e-1",'
                   b'"attribution":{"model":"gpt-4o","n":3,"on":true},"metadata":{"job":{"id":[1,2]}},'
                   b'"metric_tuple_hint":{"app_name":"a","license_name":"b"},"unit":null}')
    for raw in samples.lines(200) + [every_field.replace(b',"unit":null', b"")]:
        assert FAST.event(raw) is not None, raw
    assert FAST.event(every_field) is None  # a repeated key goes the slow way


def test_a_keyword_the_builder_does_not_know_leaves_its_property_to_the_slow_path():
    schema = json.loads(json.dumps(load_schema("event")))
    schema["properties"]["unit"]["multipleOf"] = 2
    path = fast_path.FastPath(schema)
    assert path.event(b'{"metric":"m","quantity":1,"license_id":"l"}') is not None
    assert path.event(b'{"metric":"m","quantity":1,"license_id":"l","unit":"u"}') is None
    schema["properties"]["quantity"]["multipleOf"] = 2  # a required property: no fast path at all
    try:
        fast_path.FastPath(schema)
    except fast_path.Unsupported:
        return
    raise AssertionError("a schema beyond the builder was taken")


def test_a_short_run_never_imports_msgspec():
    code = ("import sys; from doow_track_agent.intake.events import Intake; judge = Intake();"
            "[judge.accept(b'{\"metric\":\"m\",\"quantity\":1,\"license_id\":\"l\"}', n) for n in range(1, 100)];"
            "print('msgspec' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"


def test_remembered_attribution_texts_keep_memory_bounded():
    """600 distinct attributions of 32 escaped 256-character values (about 50 KB of text each): under 8 MB held."""
    judge = intake(True, {})
    values = "é" * 255
    lines = [json.dumps({"metric": "m", "quantity": 1, "license_id": "l",
                         "attribution": {f"k{key}": values + str(n % 10) for key in range(31)} | {"n": n}},
                        ensure_ascii=False).encode() for n in range(600)]
    tracemalloc.start()
    try:
        for number, raw in enumerate(lines, 1):
            assert judge.accept(raw, number, "fixed-id").body
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2 ** 20, peak


def test_a_block_of_bulk_size_takes_the_fast_path_at_once_and_is_judged_the_same():
    """A first block read at once that holds BULK_BLOCK lines is bulk input: no BULK_LINES lines the slow way."""
    from doow_track_agent.intake.events import BULK_BLOCK

    raws = samples.lines(BULK_BLOCK, invalid_every=40)[:BULK_BLOCK - 1]
    numbered = list(enumerate(raws, 1))
    ids = [f"default-{number}" for number, _ in numbered]
    short, bulk = Intake(), Intake()
    short._clock = bulk._clock = FixedClock()
    assert short.accept_block(numbered, tuple, ids) == expected_block(intake(False, {}), numbered, ids)
    assert short._fast is None  # a cron job's few lines never pay for the fast path
    numbered.append((len(raws) + 1, raws[0]))
    ids.append("default-last")
    assert bulk.accept_block(numbered, tuple, ids) == expected_block(intake(False, {}), numbered, ids)
    assert bulk._fast is FAST
