"""The Doow ingest wire format: events, batch bodies, and the way back to input lines.

Events are serialized once, at intake, and travel as bytes from then on: the
spool stores those bytes, batches are those bytes joined, and a retry or a
replay sends exactly what was first acknowledged.  That is what keeps
``event_id`` and ``occurred_at`` stable across retries.  The format and its
limits are Doow's (docs/protocol.md, "Ingest").
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import operator
import os
import threading
import time
from datetime import datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Callable, Iterable, List

from doow_track_agent import __version__

if TYPE_CHECKING:
    import uuid

INGEST_PATH = "/telemetry/events"
USER_AGENT = f"doow-track-agent/{__version__}"
MAX_BATCH_BYTES = 450 * 1024
GZIP_ABOVE = 1024
# The largest quantity: 2**53 - 1, the largest integer every JSON parser holds exactly (RFC 7493, I-JSON
# section 2.2); the event schema says the same, and the receiver refuses more (400), as a double-based API would.
MAX_QUANTITY = 2**53 - 1

_IDS_PER_DRAW = 128
# Applied to 16 random bytes: the version nibble becomes 4, the variant bits 10 (RFC 4122, section 4.4).
_KEEP = int.from_bytes(bytes.fromhex("ffffffffffff0fff3fffffffffffffff") * _IDS_PER_DRAW, "big")
_SET = int.from_bytes(bytes.fromhex("00000000000040008000000000000000") * _IDS_PER_DRAW, "big")


class _Entropy(threading.local):
    """Ids made 128 at a time from one read of random bytes: one system call and one loop in C per 128."""

    def __init__(self) -> None:
        self.ids: List[str] = []


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.__init__)  # a forked child must never reuse its parent's ids


def _draw_ids() -> List[str]:
    size = 16 * _IDS_PER_DRAW
    h = ((int.from_bytes(os.urandom(size), "big") & _KEEP) | _SET).to_bytes(size, "big").hex()
    return [f"{h[i:i + 8]}-{h[i + 8:i + 12]}-{h[i + 12:i + 16]}-{h[i + 16:i + 20]}-{h[i + 20:i + 32]}"
            for i in range(0, 32 * _IDS_PER_DRAW, 32)]


def new_uuid4() -> str:
    """A random UUID4 string, several times faster than ``str(uuid.uuid4())``.

    Intake assigns one per event on the hot path; the layout is the standard
    one (version nibble 4, RFC 4122 variant), from ``os.urandom`` as uuid4's.
    """
    ids = _entropy.ids
    if not ids:
        ids.extend(_draw_ids())
    return ids.pop()


@lru_cache(maxsize=None)
def _derived_namespace() -> "uuid.UUID":
    # uuid is imported on first need: it imports platform, which a one-event run need not pay for.
    import uuid

    return uuid.UUID("6f1c52c4-0d55-4d0c-9a0e-9c1b2d7f4e61")


def derived_id(key: str, place: int, raw: bytes) -> str:
    """An event_id that the same line gets whenever it is read again: a UUIDv5 of where it is and what it says.

    ``key`` names the input (a tailed file's fingerprint, a pipe-mode ``--run-id``),
    ``place`` is where in it (a byte offset, a line number).
    """
    from uuid import uuid5

    return str(uuid5(_derived_namespace(), f"{key}:{place}:{hashlib.sha256(raw).hexdigest()}"))


def format_timestamp(moment: datetime) -> str:
    """Render an aware datetime as the API's ``2026-11-24T10:00:00.000Z``."""
    utc = moment.astimezone(timezone.utc)
    # Not strftime: its %Y drops the zero padding of years before 1000 on glibc ("1-01-01").
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:{utc.second:02d}."
            f"{utc.microsecond // 1000:03d}Z")


class Clock:
    """Read-time timestamps, formatted once per millisecond rather than per event."""

    def __init__(self) -> None:
        self._millis = -1
        self._text = ""

    def now(self) -> str:
        millis = int(time.time() * 1000)
        if millis != self._millis:
            self._millis = millis
            self._text = format_timestamp(datetime.fromtimestamp(millis / 1000, timezone.utc))
        return self._text


_quoted = json.encoder.encode_basestring_ascii  # the json module's own C string encoder


def _unserializable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON text.  json.dumps builds a new C encoder on every call; this builds one, once.

    No cycle check (markers=None): everything encoded here came from parsed JSON.
    """
    make = json.encoder.c_make_encoder
    if make is None:  # an interpreter without the json C accelerator
        return json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    encoder = make(None, _unserializable, _quoted, None, ":", ",", False, False, False)
    return lambda value: "".join(encoder(value, 0))


_compact = _compact_encoder()


def encode_event(event: dict, event_id: str, occurred_at: str, default_attribution: dict) -> bytes:
    """Serialize a validated input event as the wire event the API expects.

    Written out field by field rather than built as a dict and dumped: this
    runs once per event and is twice as fast, and the event has been
    validated, so every scalar is of a known type.  ``unit`` is omitted when
    not set, as the official clients do.
    """
    attribution = event.get("attribution")
    if default_attribution:
        attribution = {**default_attribution, **attribution} if attribution else default_attribution
    metadata = event.get("metadata")
    hint = event.get("metric_tuple_hint")
    unit = event.get("unit")
    text = "".join((
        '{"event_id":', _quoted(event_id),
        ',"license_id":', _quoted(event["license_id"]),
        ',"occurred_at":"', occurred_at,
        '","source_system":', _quoted(event.get("source_system", "sdk")),
        ',"kind":"', event.get("kind", "USAGE"),
        '","attribution":', _compact(attribution) if attribution else "null",
        ',"metadata":', "null" if metadata is None else _compact(metadata),
        ',"measurements":[{"metric_name":', _quoted(event["metric"]),
        ',"quantity":', repr(event["quantity"]),
        ',"metric_tuple_hint":' + _compact(hint) if hint else "",
        "}]",
        ',"unit":' + _quoted(unit) if unit is not None else "",
        "}",
    ))
    return text.encode("ascii")


def encode(obj: Any) -> bytes:
    """Compact JSON, ASCII with escapes: safe in any log and in the spool."""
    return _compact(obj).encode("ascii")


def batch_body(batch_id: str, events: Iterable[bytes]) -> bytes:
    """Join already-encoded events into a request body without re-serializing them."""
    head = b'{"batch_id":"' + batch_id.encode("ascii") + b'","sdk_version":"' + __version__.encode("ascii")
    return head + b'","events":[' + b",".join(events) + b"]}"


BATCH_OVERHEAD = len(batch_body(new_uuid4(), []))


class BatchBudget:
    """A batch body's bytes as events join it: the envelope, then each event and a comma.

    Both queues (pipe mode's memory queue, the agent's spool) lease batches
    through this, so a batch is measured one way.  The first event always
    fits: a single event is bounded by the line limit, far below the API's.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = BATCH_OVERHEAD
        self.events = 0

    def fits(self, body: bytes) -> bool:
        return not self.events or self.size + len(body) + 1 <= self.max_bytes

    def add(self, body: bytes) -> None:
        self.size += len(body) + 1
        self.events += 1

    def fill(self, bodies: Iterable[bytes]) -> int:
        """Add bodies in order while they fit; return how many were added by this call.

        Measured a batch at a time in C (running sums, then a bisection), not
        an event at a time: batches are leased hundreds of events at once.
        """
        ends = list(map(operator.add, itertools.accumulate(map(len, bodies)), itertools.count(1)))
        added = bisect.bisect_right(ends, self.max_bytes - self.size)
        if not added and not self.events and ends:
            added = 1
        if added:
            self.size += ends[added - 1]
            self.events += added
        return added


def to_input_line(wire_event: bytes) -> bytes:
    """Turn a wire event back into an input line that re-sends as the same event.

    Used for the outbox: ``doow-track < outbox.ndjson`` must produce the same
    ``event_id`` and ``occurred_at``, so that the server counts it once.
    """
    wire = json.loads(wire_event)
    measurement = wire["measurements"][0]
    line: dict = {
        "metric": measurement["metric_name"],
        "quantity": measurement["quantity"],
        "license_id": wire["license_id"],
        "event_id": wire["event_id"],
        "timestamp": wire["occurred_at"],
        "kind": wire["kind"],
        "source_system": wire["source_system"],
    }
    for key in ("unit", "attribution", "metadata"):
        if wire.get(key) is not None:
            line[key] = wire[key]
    if measurement.get("metric_tuple_hint"):
        line["metric_tuple_hint"] = measurement["metric_tuple_hint"]
    return encode(line)
