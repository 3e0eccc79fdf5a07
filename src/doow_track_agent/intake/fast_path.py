"""The one-pass fast path: the event schema as msgspec types, so a valid line is parsed and checked in C.

The types are built from ``schemas/event.schema.json`` when a run turns out
to be bulk (see ``events.BULK_LINES``), so the JSON Schema stays the one
definition of a valid event.  Each keyword the builder knows becomes a
msgspec constraint read exactly as the strict validator reads it (patterns
anchored by ``validation.anchored``); a property using any other keyword is
left out of the types, and a line that uses it goes the slow way
(``parse_line`` -> ``precheck`` -> jsonschema), which also words every
error.  So does every line msgspec refuses.  A top-level string's
``pattern`` and ``format: date-time`` are checked after the decode, once
per distinct value (bulk input repeats its names and times; msgspec would
call ``re`` for every value).

What msgspec cannot see is checked on the raw line around it:

* duplicate keys: msgspec keeps the last value, so the keys it decoded are
  counted against the line (``keys``), as ``parse_line`` does; a key the
  types leave out (unknown, or using an unknown keyword) is not decoded and
  fails the same count;
* secrets and lone surrogates: a line holding a secret marker or any JSON
  escape goes the slow way, where ``policy`` locates them;
* ``format: date-time``: the same ``parse_rfc3339`` the schema's format
  checker uses.

The types are TypedDicts, so an event decodes to the same dict, keys in
the line's order, that the slow path parses, and both paths encode it with
the one ``wire.encode_event``.
"""

from __future__ import annotations

import math
import re
import types
from functools import lru_cache
from itertools import repeat
from typing import Annotated, Any, Callable, Dict, List, Literal, Optional, Sequence, Tuple, TypedDict, Union

import msgspec

from doow_track_agent.intake import keys, policy
from doow_track_agent.intake.validation import anchored, load_schema, parse_rfc3339

# Keywords that only annotate; validation ignores them, and so does the builder.
_ANNOTATIONS = frozenset(("$schema", "$id", "title", "description", "default", "examples", "$comment"))
_STRING_KEYWORDS = frozenset(("minLength", "maxLength", "pattern"))
_NUMBER_BOUNDS = {"minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt"}
_OBJECT_KEYWORDS = frozenset(("properties", "additionalProperties", "required", "maxProperties", "minProperties",
                              "propertyNames"))
# A prefilter, one pass over the line: no match means no JSON escape, no secret marker (policy's, each
# alternative loosened to start with a character rare in event JSON) and no JSON whitespace (only with
# whitespace can a key be spelt ``"key" :``, which the duplicate-key count would miss).
_MAYBE_SLOW = re.compile(rb"\\|k_|yJ|Bearer|A[KS]IA|PRIVATE KEY| |\t|\r|\n")
_NOT_PLAIN = (b"\\", b" ", b"\t", b"\r", b"\n", b"\x0b", b"\x0c", b"J", b"B", b"I")  # see ``_plain``
_KEY_MARKER = re.compile(rb"dk_")  # sre's literal search: faster here than ``in``


# What decoding a line the fast path cannot take raises.  Invalid UTF-8 in a string is a msgspec.DecodeError in
# msgspec 0.23 but a bare UnicodeDecodeError in 0.20 (what pip installs on Python 3.9 here): both are ValueErrors.
_UNDECODABLE = (msgspec.MsgspecError, ValueError, RecursionError)


class Unsupported(Exception):
    """A keyword (or a combination) the builder does not translate."""


def _meta(**constraints: Any) -> Any:
    given = {name: value for name, value in constraints.items() if value is not None}
    return msgspec.Meta(**given) if given else None


def _constrained(kind: Any, meta: Any) -> Any:
    return Annotated[kind, meta] if meta is not None else kind


def _string(schema: dict) -> Any:
    pattern = schema.get("pattern")
    if pattern is not None and type(pattern) is not str:
        raise Unsupported("pattern")
    return _constrained(str, _meta(min_length=schema.get("minLength"), max_length=schema.get("maxLength"),
                                   pattern=anchored(pattern).pattern if pattern is not None else None))


def _bound(value: Any, integral: bool) -> Any:
    if type(value) not in (int, float) or (type(value) is float and not math.isfinite(value)):
        raise Unsupported("bound")
    if integral and type(value) is not int:
        raise Unsupported("non-integral bound on an integer")
    if not integral and float(value) != value:
        raise Unsupported("bound a double cannot hold")  # msgspec compares doubles; the schema compares exactly
    return value


def _number(schema: dict, integral: bool) -> Any:
    bounds = {_NUMBER_BOUNDS[key]: _bound(schema[key], integral) for key in _NUMBER_BOUNDS if key in schema}
    return _constrained(int if integral else float, _meta(**bounds))


def _object(schema: dict) -> Any:
    properties = schema.get("properties")
    extra = schema.get("additionalProperties", True)
    if properties is not None:
        if extra is not False and extra is not True:
            raise Unsupported("additionalProperties with properties")
        if "maxProperties" in schema or "minProperties" in schema or "propertyNames" in schema:
            raise Unsupported("property counts with properties")
        return _record(properties, schema.get("required", []))
    if "required" in schema:
        raise Unsupported("required without properties")
    keys = _property_names(schema.get("propertyNames", True))
    values = Any if extra is True else type_of(extra)
    if extra is False:
        raise Unsupported("an object that must be empty")
    return _constrained(Dict[keys, values], _meta(min_length=schema.get("minProperties"),
                                                  max_length=schema.get("maxProperties")))


def _property_names(schema: Any) -> Any:
    if schema is True:
        return str
    if type(schema) is not dict or set(schema) - _ANNOTATIONS - _STRING_KEYWORDS:
        raise Unsupported("propertyNames")
    return _string(schema)


def _record(properties: dict, required: List[str], checks: Optional[List[Tuple[str, "_Remembered"]]] = None) -> Any:
    """A TypedDict of the properties the builder can translate; the rest are left out (see the module doc).

    ``checks`` (top level only) receives the string checks lifted out of the
    types: ``format: date-time`` (which msgspec cannot check) and ``pattern``
    (which it checks at a Python call per value; remembered here instead).
    """
    fields: Dict[str, Any] = {}
    for name, subschema in properties.items():
        lifted = []
        if checks is not None and type(subschema) is dict:
            subschema, lifted = _lift_string_checks(subschema)
        try:
            fields[name] = type_of(subschema)
        except Unsupported:
            if name in required:
                raise
            continue
        if checks is not None:
            checks.extend((name, check) for check in lifted)
    must = {name: kind for name, kind in fields.items() if name in required}
    may = {name: kind for name, kind in fields.items() if name not in required}
    base = TypedDict("Required", must)  # type: ignore[misc]
    return types.new_class("Event", (base,), {"total": False}, lambda namespace: namespace.update(
        {"__annotations__": may, "__module__": __name__}))


def _lift_string_checks(schema: dict) -> "Tuple[dict, List[_Remembered]]":
    """``schema`` without its pattern and date-time format, and those as checks of a string value."""
    names = schema.get("type")
    names = [names] if type(names) is str else names or []
    if "string" not in names or "object" in names or "array" in names:  # lifted checks take hashable values
        return schema, []
    rest, lifted = dict(schema), []
    pattern = rest.pop("pattern", None)
    if type(pattern) is str:
        lifted.append(_Remembered(anchored(pattern).search))
    elif pattern is not None:
        raise Unsupported("pattern")
    if rest.get("format") == "date-time":
        del rest["format"]
        lifted.append(_Remembered(parse_rfc3339))
    return rest, lifted


class _Remembered:
    """A test of a string value that remembers the values that passed: bulk input repeats its names and times."""

    LIMIT = 1024  # values remembered per test (a few hundred KB at most), then forgotten all at once

    def __init__(self, test: Callable[[str], Any]) -> None:
        self.test = test
        self.passed: set = set()

    def passes(self, value: Any) -> bool:
        """Whether ``value`` passes (the test returns something other than None); a non-string always does."""
        if type(value) is not str or value in self.passed:
            return True
        if self.test(value) is None:
            return False
        if len(self.passed) >= self.LIMIT:
            self.passed.clear()
        self.passed.add(value)
        return True


_MEMBERS: Dict[str, Callable[[dict], Any]] = {
    "string": _string,
    "number": lambda schema: Union[_number(schema, integral=True), _number(schema, integral=False)],
    "integer": lambda schema: _number(schema, integral=True),
    "boolean": lambda schema: bool,
    "null": lambda schema: type(None),
    "object": _object,
}
_FAMILY = {"string": _STRING_KEYWORDS, "number": frozenset(_NUMBER_BOUNDS), "integer": frozenset(_NUMBER_BOUNDS),
           "object": _OBJECT_KEYWORDS, "boolean": frozenset(), "null": frozenset()}


def type_of(schema: Any) -> Any:
    """The msgspec type that accepts exactly what ``schema`` accepts; raises Unsupported otherwise."""
    if schema is True:
        return Any
    if type(schema) is not dict:
        raise Unsupported("schema")
    keywords = set(schema) - _ANNOTATIONS
    if "enum" in schema:
        options = schema["enum"]
        if keywords != {"enum"} or not options or not all(type(option) is str for option in options):
            raise Unsupported("enum")
        return Literal[tuple(options)]
    names = schema.get("type")
    names = [names] if type(names) is str else names
    if type(names) is not list or not names or not all(name in _MEMBERS for name in names):
        raise Unsupported("type")
    known = {"type"}.union(*(_FAMILY[name] for name in names))
    if keywords - known:
        raise Unsupported(", ".join(sorted(keywords - known)))
    members = tuple(_MEMBERS[name](schema) for name in names)
    return Union[members] if len(members) > 1 else members[0]


class FastPath:
    """The event schema as one msgspec decoder, plus the raw-line checks msgspec cannot make."""

    def __init__(self, schema: dict) -> None:
        """Raises Unsupported when the schema's top level is beyond the builder (then there is no fast path)."""
        if schema.get("type") != "object" or "properties" not in schema:
            raise Unsupported("top level")
        if set(schema) - _ANNOTATIONS - {"type", "properties", "required", "additionalProperties"}:
            raise Unsupported("top-level keyword")
        if schema.get("additionalProperties", True) is not True and schema["additionalProperties"] is not False:
            raise Unsupported("additionalProperties")
        self.key: Callable[[Any], bytes] = msgspec.json.Encoder().encode  # tells apart 1, 1.0 and true
        lifted: List[Tuple[str, _Remembered]] = []
        self._decode = msgspec.json.Decoder(_record(schema["properties"], schema.get("required", []),
                                                    lifted)).decode
        # (name, values that passed, the check): a remembered value costs one set lookup.
        self.checks = [(name, check.passed, check.passes) for name, check in lifted]
        # The properties whose values hold keys, for the duplicate-key count: flat ones (keys of scalars
        # only) are counted by len(), the others walked.
        nesting = [name for name, sub in schema["properties"].items() if _may_nest(sub)]
        self.flat: Tuple[str, ...] = tuple(name for name in nesting if _flat(schema["properties"][name]))
        self.deep: Tuple[str, ...] = tuple(name for name in nesting if name not in self.flat)

    def event(self, raw: bytes) -> Optional[dict]:
        """The event ``raw`` holds when the schema certainly accepts it; None means: take the slow way.

        ``raw`` is one stripped line without BOM.  An event returned has no
        duplicate key, no JSON escape, no secret marker, and every date-time
        parses; what policy checks on the parsed event is still to be done.
        """
        if _MAYBE_SLOW.search(raw) is not None and (policy.may_hide_secret(raw) or keys.SPACED_COLON.search(raw)):
            return None
        return self._decoded(raw)

    def events(self, raws: Sequence[bytes]) -> List[Optional[dict]]:
        """``event`` of each line, in order (for a block of lines); see ``block``."""
        return self.block(raws)[0]

    def block(self, raws: Sequence[bytes]) -> "Tuple[List[Optional[dict]], Optional[Columns]]":
        """``event`` of each line, in order, and their ``Columns`` when every line's event is there.

        A plain block (see ``_plain``: bulk input is) is judged as a whole:
        one scan for what would send a line the slow way, the lines decoded
        in one call, their keys counted together and each distinct value of
        a lifted check tested once.  Anything else in it, and it is judged
        line by line (and there are no columns).
        """
        text = b"\0".join(raws)
        if not _plain(text):
            return list(map(self.event, raws)), None
        try:
            events = list(map(self._decode, raws))
        except _UNDECODABLE:
            return list(map(self._decoded, raws)), None
        columns = Columns(events)
        if self._all_fit(text, events, columns):
            return events, columns
        return [event if self._fits(raw, event) else None for raw, event in zip(raws, events)], None

    def _decoded(self, raw: bytes) -> Optional[dict]:
        """``event`` of a line known to hold no secret marker and no spaced colon."""
        try:
            event = self._decode(raw)
        except _UNDECODABLE:
            return None
        return event if self._fits(raw, event) else None

    def _fits(self, raw: bytes, event: dict) -> bool:
        """Whether the decoded ``event`` holds every key its line spells (none repeated, none left out) and its
        values pass the lifted checks."""
        count = len(event)
        for name in self.flat:
            value = event.get(name)
            if value:
                count += len(value)
        for name in self.deep:
            value = event.get(name)
            if value:
                count += keys.key_count(value)
        if raw.count(b'":') != count:
            return False
        for name, passed, passes in self.checks:
            value = event.get(name)
            if value is not None and value not in passed and not passes(value):
                return False
        return True

    def _all_fit(self, text: bytes, events: List[dict], columns: "Columns") -> bool:
        """``_fits`` of every event of a plain block (``text``: its lines joined), in a few passes in C.

        Without blanks every key counted in an event is spelt ``"key":`` in
        its line, so a line never holds fewer ``":`` than its event's count:
        the block's sums are equal only if every line's are.
        """
        count = sum(map(len, events))
        for name in self.flat:
            count += sum(map(len, filter(None, columns[name])))
        for name in self.deep:
            count += sum(map(keys.key_count, filter(None, columns[name])))
        if text.count(b'":') != count:
            return False
        for name, passed, passes in self.checks:
            for value in set(columns[name]).difference(passed):
                if value is not None and not passes(value):
                    return False
        return True


class Columns(dict):
    """A field of every event of a block, as a list in line order (None where an event lacks it), by the field's
    name; each taken once, in C, when first asked for (the fast path's checks and intake ask for the same)."""

    def __init__(self, events: List[dict]) -> None:
        super().__init__()
        self.events = events

    def __missing__(self, name: str) -> list:
        column = self[name] = list(map(dict.get, self.events, repeat(name)))
        return column


def _plain(text: bytes) -> bool:
    """Whether no line of a block (``text``: its lines joined by NUL) needs the slow way before decoding: no
    blank (JSON's, or the ``\\s`` of ``keys.SPACED_COLON``), no JSON escape and no secret marker of ``policy``.

    Single bytes are found at memchr's speed: a marker is excluded by a rare letter of it (J of eyJ, B of
    Bearer, I of AKIA, ASIA and PRIVATE KEY), dk_ by a search of its own.
    """
    for byte in _NOT_PLAIN:
        if byte in text:
            return False
    return _KEY_MARKER.search(text) is None


def _may_nest(schema: Any) -> bool:
    """Whether a value ``schema`` accepts may be an object or an array (for the builder's types: string enums)."""
    if type(schema) is not dict:
        return True
    if "enum" in schema:
        return False
    names = schema.get("type", ["object"])
    return bool({"object", "array"}.intersection([names] if type(names) is str else names))


def _flat(schema: dict) -> bool:
    """An object schema whose values are all scalars (its key count is its length)."""
    children = list(schema.get("properties", {}).values()) + [schema.get("additionalProperties", True)]
    return "array" not in str(schema.get("type")) and not any(_may_nest(child) for child in children
                                                              if child is not False)


@lru_cache(maxsize=None)
def for_events() -> Optional[FastPath]:
    """The fast path of the shipped event schema, built once per process; None if the schema is beyond it."""
    try:
        return FastPath(load_schema("event"))
    except Unsupported:
        return None
