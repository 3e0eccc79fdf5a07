"""JSON Schema validation, with the gaps of plain jsonschema closed.

The schema files in ``schemas/`` are the single source of truth for what an
event and a config may look like.  Plain ``jsonschema`` has three gaps that
matter for billing data, closed here rather than in each caller:

* ``format: date-time`` is only enforced with a format checker and an
  optional third-party package; we register a strict RFC 3339 checker.
* ``NaN`` and ``Infinity`` are instances of ``type: number``; our type
  checker only counts finite numbers as numbers.
* A ``pattern`` ending in ``$`` lets a trailing newline through under
  Python's ``re``; we anchor such patterns at the true end of the string.

jsonschema itself is imported only when something may be invalid: valid
input is recognized by ``certainly_valid`` (and, for events, by intake's
pre-check), which keeps it out of a one-event run's start-up.
"""

from __future__ import annotations

import json
import math
import os
import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterator, List, NamedTuple, Optional, Union

if TYPE_CHECKING:
    import jsonschema

# RFC 3339 section 5.6: DIGIT is ASCII (re's \d alone also takes "٢٠٢٦"), and time-secfrac is
# "." 1*DIGIT: any number of fraction digits (the line limit bounds them; beyond microseconds they are cut).
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?"
    r"([Zz]|[+-]\d{2}:\d{2})\Z", re.ASCII
)


def parse_rfc3339(value: str) -> Optional[datetime]:
    """Return the aware UTC datetime of an RFC 3339 timestamp, or None.

    Stricter than ``datetime.fromisoformat``: a time zone is required, since an
    event without one would be billed at a guessed time.
    """
    parsed = _parse_rfc3339(value)
    return parsed if isinstance(parsed, datetime) else None


def rfc3339_problem(value: str) -> Optional[str]:
    """Why ``value`` is not a usable RFC 3339 timestamp (the message quotes it), or None."""
    parsed = _parse_rfc3339(value)
    return None if isinstance(parsed, datetime) else parsed


@lru_cache(maxsize=4096)  # bulk input repeats its timestamps (a replayed outbox: one per millisecond of the run)
def _parse_rfc3339(value: str) -> Union[datetime, str]:
    """The UTC datetime, or the reason there is none."""
    match = _RFC3339.match(value)
    if match is None:
        return f"{value!r} is not an RFC 3339 date-time with a time zone (e.g. 2026-11-24T10:00:00Z)"
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    micros = int((fraction or ".0")[1:7].ljust(6, "0"))
    if zone in ("Z", "z"):
        offset = timedelta(0)
    else:
        sign = -1 if zone[0] == "-" else 1
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            return f"{value!r} has an impossible time zone offset {zone}"
        offset = sign * timedelta(hours=hours, minutes=minutes)
    if int(second) > 60:
        return f"{value!r} is not a valid date or time"
    try:
        local = datetime(int(year), int(month), int(day), int(hour), int(minute),
                         min(int(second), 59), micros, tzinfo=timezone(offset))
    except ValueError:
        return f"{value!r} is not a valid date or time"
    try:
        return local.astimezone(timezone.utc)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is a year-0 instant in UTC
        return f"{value!r} is out of range: in UTC it falls outside 0001-01-01 to 9999-12-31"


def _is_finite_number(_checker: Any, instance: Any) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, int):
        return True
    return isinstance(instance, float) and math.isfinite(instance)


def _is_finite_integer(_checker: Any, instance: Any) -> bool:
    if isinstance(instance, bool):
        return False
    if isinstance(instance, float):
        return math.isfinite(instance) and instance.is_integer()
    return isinstance(instance, int)


@lru_cache(maxsize=None)
def anchored(pattern: str) -> "re.Pattern[str]":
    """A schema ``pattern`` compiled as validation reads it: a final ``$`` means the true end (``\\Z``)."""
    if pattern.endswith("$") and not pattern.endswith("\\$"):
        pattern = pattern[:-1] + r"\Z"
    return re.compile(pattern)


def _strict_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[Any]:
    if validator.is_type(instance, "string") and not anchored(pattern).search(instance):
        from jsonschema import ValidationError

        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@lru_cache(maxsize=None)
def _strict_validator() -> Any:
    """The jsonschema validator class with the gaps closed; jsonschema is imported here, on first need.

    Importing jsonschema costs more than the rest of a one-event run's own
    code, and valid input and config never need it (see ``certainly_valid``).
    """
    import jsonschema
    from jsonschema import Draft202012Validator

    types = Draft202012Validator.TYPE_CHECKER.redefine_many(
        {"number": _is_finite_number, "integer": _is_finite_integer})
    return jsonschema.validators.extend(Draft202012Validator, validators={"pattern": _strict_pattern},
                                        type_checker=types)


@lru_cache(maxsize=None)
def _format_checker() -> Any:
    from jsonschema import FormatChecker

    formats = FormatChecker(formats=())
    formats.checks("date-time")(lambda value: not isinstance(value, str) or parse_rfc3339(value) is not None)
    return formats


_SCHEMAS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "schemas")


def schema_text(name: str) -> str:
    """Return the shipped schema file ``schemas/{name}.schema.json`` as text.

    Read as a plain file next to the package (setuptools installs package
    data there): importlib.resources would add its own import to every run.
    """
    with open(os.path.join(_SCHEMAS, f"{name}.schema.json"), encoding="utf-8") as handle:
        return handle.read()


@lru_cache(maxsize=None)
def load_schema(name: str) -> dict:
    """Return a shipped schema as a dict."""
    return json.loads(schema_text(name))


@lru_cache(maxsize=None)
def validator_for(name: str) -> Any:
    """Return the (cached) strict validator of a shipped schema."""
    return _strict_validator()(load_schema(name), format_checker=_format_checker())


# Keywords that only annotate; ``certainly_valid`` ignores them, as validation does.
_ANNOTATIONS = frozenset(("$schema", "$id", "$defs", "title", "description", "default", "examples", "$comment"))
_TYPES = {
    "object": lambda v: type(v) is dict,
    "array": lambda v: type(v) is list,
    "string": lambda v: type(v) is str,
    "boolean": lambda v: type(v) is bool,
    "null": lambda v: v is None,
    "integer": lambda v: type(v) is int,
    "number": lambda v: type(v) is int or (type(v) is float and math.isfinite(v)),
}


def certainly_valid(name: str, instance: Any) -> bool:
    """True only when the shipped schema ``name`` accepts ``instance``; a fraction of jsonschema's cost.

    An interpreter of the keywords our schemas use, each read at least as
    strictly as the strict validator does (an integral float is not taken
    for an integer, ``enum`` compares types too); any other keyword, or a
    ``$ref`` outside the document, makes it answer False, and the caller
    asks jsonschema, which also words every error.  The property tests
    check that it never says True where jsonschema finds a problem.
    """
    schema = load_schema(name)
    return _fits(schema, schema, instance)


def _fits(root: dict, schema: Any, value: Any) -> bool:
    if schema is True:
        return True
    if type(schema) is not dict:
        return False
    for keyword, rule in schema.items():
        if keyword in _ANNOTATIONS:
            continue
        if keyword == "additionalProperties":
            if not _fits_additional(root, schema, rule, value):
                return False
            continue
        check = _KEYWORDS.get(keyword)
        if check is None or not check(root, rule, value):
            return False
    return True


def _fits_ref(root: dict, ref: Any, value: Any) -> bool:
    if type(ref) is not str or not ref.startswith("#/$defs/"):
        return False
    target = root.get("$defs", {}).get(ref[len("#/$defs/"):])
    return target is not None and _fits(root, target, value)


def _fits_type(_root: dict, names: Any, value: Any) -> bool:
    return any(_TYPES.get(name, lambda v: False)(value) for name in ([names] if type(names) is str else names))


def _fits_properties(root: dict, rules: dict, value: Any) -> bool:
    return type(value) is not dict or all(_fits(root, rules[key], item) for key, item in value.items()
                                          if key in rules)


def _fits_additional(root: dict, schema: dict, rule: Any, value: Any) -> bool:
    """``additionalProperties`` reads its sibling ``properties`` (a ``patternProperties`` sibling is unknown here)."""
    if type(value) is not dict:
        return True
    known = schema.get("properties", {})
    return all(_fits(root, rule, item) for key, item in value.items() if key not in known)


_ENUM_SCALARS = (str, int, float, bool, type(None))


def _fits_enum(_root: dict, options: list, value: Any) -> bool:
    # Same type as well as equal: jsonschema tells 1 from True and from 1.0; containers are left to it.
    return type(value) in _ENUM_SCALARS and any(type(option) is type(value) and option == value
                                                 for option in options)


def _length(bound: Any, value: Any, longest: bool) -> bool:
    if type(value) is not str:
        return True
    return len(value) <= bound if longest else len(value) >= bound


_KEYWORDS = {
    "type": _fits_type,
    "$ref": _fits_ref,
    "properties": _fits_properties,
    "enum": _fits_enum,
    "pattern": lambda _r, pattern, v: type(v) is not str or anchored(pattern).search(v) is not None,
    "minLength": lambda _r, bound, v: _length(bound, v, longest=False),
    "maxLength": lambda _r, bound, v: _length(bound, v, longest=True),
    "minimum": lambda _r, bound, v: type(v) not in (int, float) or v >= bound,
    "maximum": lambda _r, bound, v: type(v) not in (int, float) or v <= bound,
    "maxProperties": lambda _r, bound, v: type(v) is not dict or len(v) <= bound,
    "required": lambda _r, keys, v: type(v) is not dict or all(key in v for key in keys),
    "propertyNames": lambda r, rule, v: type(v) is not dict or all(_fits(r, rule, key) for key in v),
    "items": lambda r, rule, v: type(v) is not list or all(_fits(r, rule, item) for item in v),
    "exclusiveMinimum": lambda _r, bound, v: type(v) not in (int, float) or v > bound,
    "format": lambda _r, name, v: name == "date-time" and (type(v) is not str or parse_rfc3339(v) is not None),
}


class Problem(NamedTuple):
    """One reason an instance is invalid, with where it is (``$.attribution.env``)."""

    path: str
    message: str


def json_path(parts: Any) -> str:
    """Render a jsonschema path deque as ``$.a.b[0]``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _problems(error: "jsonschema.ValidationError") -> List[Problem]:
    where = json_path(error.absolute_path)
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(error.schema.get("properties", {}))
        return [Problem(f"{where}.{key}", _unknown_key_message(key, allowed))
                for key in error.instance if key not in allowed]
    if error.validator == "format":
        return [Problem(where, rfc3339_problem(error.instance) or f"{error.instance!r} is not a date-time")]
    return [Problem(where, _json_spelled(error.message, error.instance))]


class SpelledNumber(float):
    """A JSON number Python reads as infinite (``1e400``), keeping how the line spelled it, for messages."""

    text: str = ""


def keep_infinite_text(text: str) -> float:
    """A ``parse_float`` hook: floats as usual, an infinite one as a ``SpelledNumber`` remembering ``text``."""
    value = float(text)
    if math.isfinite(value):
        return value
    spelled = SpelledNumber(value)
    spelled.text = text
    return spelled


def json_text(value: Any, longest: int = 80) -> str:
    """``value`` as the JSON it came from: ``true``, ``null``, ``"text"``, ``1e400 (infinite)``; capped."""
    if isinstance(value, SpelledNumber):
        return f"{value.text[:longest]} (infinite)"
    if isinstance(value, float) and not math.isfinite(value):
        return "an infinite number"
    try:
        text = json.dumps(value, ensure_ascii=False)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= longest else text[:longest] + "…"


def _json_spelled(message: str, instance: Any) -> str:
    """jsonschema starts most messages with the instance's Python repr (``True``, ``None``, ``inf``, ``'x'``):
    spell it as the JSON the user wrote instead."""
    shown = repr(instance)
    return json_text(instance) + message[len(shown):] if message.startswith(shown) else message


def _unknown_key_message(key: str, allowed: list) -> str:
    import difflib  # error paths only

    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}"


def _explained_by_a_typo(error: "jsonschema.ValidationError", typos: set) -> bool:
    """A missing required key that a misspelt key next to it stands for: one mistake, one message."""
    if error.validator != "required" or not isinstance(error.instance, dict):
        return False
    missing = {key for key in error.validator_value if key not in error.instance}
    return bool(missing) and missing <= typos


def _typo_targets(errors: "List[jsonschema.ValidationError]") -> set:
    import difflib  # error paths only

    targets = set()
    for error in errors:
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            allowed = list(error.schema.get("properties", {}))
            for key in error.instance:
                if key not in allowed:
                    targets.update(difflib.get_close_matches(key, allowed, n=1, cutoff=0.6))
    return targets


def problems(name: str, instance: Any) -> list:
    """Return every schema problem of ``instance``, most useful first (a typo explains a missing key).

    What ``certainly_valid`` accepts has none, and jsonschema is not asked.
    """
    if certainly_valid(name, instance):
        return []
    errors = sorted(validator_for(name).iter_errors(instance),
                    key=lambda e: (e.validator != "additionalProperties", len(e.path), [str(p) for p in e.path]))
    typos = _typo_targets(errors)
    return [problem for error in errors if not _explained_by_a_typo(error, typos) for problem in _problems(error)]
