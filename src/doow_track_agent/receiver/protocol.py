"""Request decoding and validation for the ingest protocol (see docs/protocol.md, "Ingest").

Validation is hand-written rather than done with jsonschema: it runs once per
event on the ingest hot path, and the receiver must keep up with the agent at
tens of thousands of events per second. It accepts exactly what the official
clients send (including their ``null`` fields) and rejects what the real API
would refuse, so a CI run against the receiver predicts production.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from typing import Any, Collection, Dict, List, Optional, Tuple

from doow_track_agent.intake.wire import MAX_QUANTITY

MAX_EVENTS = 500
MAX_NAME_CHARS = 255
KINDS = frozenset(("USAGE", "ADJUSTMENT"))

# The official Python SDK appends "Z" even to an aware timestamp's isoformat()
# ("...+00:00Z"), so a trailing Z after an offset is tolerated; a timestamp
# without any zone is not, because its instant is ambiguous.
_ISO_8601 = re.compile(
    r"\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])"
    r"T(?:[01]\d|2[0-3]):[0-5]\d(?::[0-5]\d(?:\.\d{1,9})?)?"
    r"(?:Z|[+-](?:[01]\d|2[0-3]):?[0-5]\dZ?)", re.ASCII)
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_LONE_SURROGATE = "holds a lone UTF-16 surrogate, which cannot be stored as UTF-8"
_NUMBER = (int, float)
_OPTIONAL_STR = (str, type(None))
_OPTIONAL_OBJECT = (dict, type(None))


class ProtocolError(Exception):
    """A request the receiver refuses as a whole, with the HTTP status to answer."""

    def __init__(
        self, status: int, error: str, message: str, headers: Optional[Dict[str, str]] = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.headers = headers or {}


@dataclass
class Batch:
    """A request body whose envelope is valid; events are not yet checked."""

    batch_id: str
    events: List[Any]


def normal_encoding(content_encoding: str) -> str:
    """Content-Encoding as compared and stored: lower case, "" for none."""
    encoding = content_encoding.strip().lower()
    return "" if encoding == "identity" else encoding


def decode_body(body: bytes, encoding: str, max_bytes: int) -> bytes:
    """Undo a normal_encoding(), capping the inflated size so a gzip bomb costs nothing."""
    if not encoding:
        return body
    if encoding != "gzip":
        raise ProtocolError(415, "unsupported_encoding", f"unsupported Content-Encoding {encoding!r}")
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise ProtocolError(400, "bad_gzip", f"body is not valid gzip: {exc}") from None
    if len(data) > max_bytes:
        raise ProtocolError(413, "body_too_large", f"decompressed body exceeds {max_bytes} bytes")
    if not inflater.eof or inflater.unused_data:
        raise ProtocolError(400, "bad_gzip", "gzip body is truncated or has trailing data")
    return data


def parse_batch(data: bytes, max_events: int = MAX_EVENTS) -> Batch:
    """Check the batch envelope; per-event problems are left to event_problem()."""
    try:
        payload = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except ValueError as exc:
        raise ProtocolError(400, "invalid_json", f"body is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(400, "invalid_json", "body is nested too deeply to be read") from None
    if not isinstance(payload, dict):
        raise ProtocolError(400, "invalid_body", "body must be a JSON object")
    batch_id = payload.get("batch_id")
    if not isinstance(batch_id, str) or not batch_id:
        raise ProtocolError(400, "missing_batch_id", "batch_id must be a non-empty string")
    events = payload.get("events")
    if not isinstance(events, list) or not events:
        raise ProtocolError(400, "missing_events", "events must be a non-empty list")
    if len(events) > max_events:
        raise ProtocolError(413, "too_many_events", f"{len(events)} events; at most {max_events} per request")
    if _ESCAPED_SURROGATE.search(data):
        _refuse_unstorable(batch_id, events)
    return Batch(batch_id, events)


def _refuse_constant(name: str) -> Any:
    """NaN and Infinity are Python's extensions, not JSON (RFC 8259 6): the real API refuses the body."""
    raise ValueError(f"{name} is not a JSON value")


def _refuse_unstorable(batch_id: str, events: List[Any]) -> None:
    """A lone surrogate (``"\\ud800"``) parses, but no UTF-8 store can keep it: 400, naming where it is."""
    if not _storable(batch_id):
        raise ProtocolError(400, "invalid_unicode", f"batch_id {_LONE_SURROGATE}")
    for position, event in enumerate(events):
        if not _storable(event):
            name = _event_id_of(event)
            named = name and _storable(name) and name.isprintable()
            which = f"event {name!r}" if named else f"event at position {position}"
            raise ProtocolError(400, "invalid_unicode", f"{which} {_LONE_SURROGATE}")


def _storable(value: Any) -> bool:
    """Whether ``value`` encodes as UTF-8 JSON (it holds no lone surrogate)."""
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def event_problem(event: Any, licenses: Optional[Collection[str]] = None) -> Optional[str]:
    """Why the real API would reject this event, or None when it is acceptable.

    Written as straight-line checks because it runs for every event.
    """
    if type(event) is not dict:
        return "event must be a JSON object"
    if not _is_name(event.get("event_id")):
        return "missing or invalid event_id"
    license_id = event.get("license_id")
    if not _is_name(license_id):
        return "missing or invalid license_id"
    if licenses is not None and license_id not in licenses:
        return "unknown license_id"
    occurred_at = event.get("occurred_at")
    if type(occurred_at) is not str or _ISO_8601.fullmatch(occurred_at) is None:
        return "occurred_at must be an ISO 8601 timestamp with a time zone"
    if event.get("kind", "USAGE") not in KINDS:
        return "kind must be USAGE or ADJUSTMENT"
    if type(event.get("unit")) not in _OPTIONAL_STR or type(event.get("source_system")) not in _OPTIONAL_STR:
        return "unit and source_system must be strings or null"
    if type(event.get("attribution")) not in _OPTIONAL_OBJECT or type(event.get("metadata")) not in _OPTIONAL_OBJECT:
        return "attribution and metadata must be objects or null"
    return _measurement_problem(event.get("measurements"))


def _measurement_problem(measurements: Any) -> Optional[str]:
    """Only the first measurement is billed, so it is the one that must be sound."""
    if type(measurements) is not list or not measurements or type(measurements[0]) is not dict:
        return "measurements must be a non-empty list of objects"
    first = measurements[0]
    if not _is_name(first.get("metric_name")):
        return "measurements[0].metric_name must be a non-empty printable name"
    quantity = first.get("quantity")
    # type() rather than isinstance() so that JSON true/false are not numbers.
    if type(quantity) not in _NUMBER or not 0 < quantity <= MAX_QUANTITY:
        return f"measurements[0].quantity must be a number greater than 0 and at most {MAX_QUANTITY}"
    if type(first.get("metric_tuple_hint")) not in _OPTIONAL_OBJECT:
        return "measurements[0].metric_tuple_hint must be an object or null"
    return None


def _is_name(value: Any) -> bool:
    """Ids and names: 1 to 255 printable characters (no control or separator characters)."""
    return type(value) is str and 0 < len(value) <= MAX_NAME_CHARS and value.isprintable()


def split_events(
    events: List[Any], licenses: Optional[Collection[str]] = None
) -> Tuple[List[Tuple[int, dict]], List[dict]]:
    """Partition a batch into (position, event) pairs to store and 207 rejections."""
    accepted: List[Tuple[int, dict]] = []
    rejections: List[dict] = []
    for position, event in enumerate(events):
        problem = event_problem(event, licenses)
        if problem is None:
            accepted.append((position, event))
        else:
            rejections.append({"event_id": _event_id_of(event), "reason": problem})
    return accepted, rejections


def _event_id_of(event: Any) -> Optional[str]:
    """The id to echo in a rejection, when the event carries a usable one."""
    event_id = event.get("event_id") if type(event) is dict else None
    return event_id if type(event_id) is str else None
