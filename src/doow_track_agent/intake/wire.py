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
from typing import TYPE_CHECKING, Any, Callable, Iterable, List, Optional

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

_IDS_PER_DRAW = 256
_HEX = b"0123456789abcdef"
# The variant digit (RFC 4122, section 4.4: bits 10xx) from a random hex digit: its two low bits stay random.
_VARIANT = bytes.maketrans(_HEX, bytes(b"89ab"[digit & 3] for digit in range(16)))


class _Entropy(threading.local):
    """Ids made 256 at a time from one read of random bytes: one system call and a few loops in C per 256."""

    def __init__(self) -> None:
        self.ids: List[str] = []


_entropy = _Entropy()
os.register_at_fork(after_in_child=_entropy.__init__)  # a forked child must never reuse its parent's ids


def _draw_ids() -> List[str]:
    # 16 random bytes per id as 8 groups of 4 hex digits, each followed by a dash (40 characters per id); the
    # version digit (12th) becomes 4, the variant digit (16th) 8, 9, a or b, and three strided deletions
    # leave the 8-4-4-4-12 text: all in C, a few copies per 256 ids.
    text = bytearray(os.urandom(16 * _IDS_PER_DRAW).hex("-", 2) + "-", "ascii")
    text[15::40] = b"4" * _IDS_PER_DRAW
    text[20::40] = text[20::40].translate(_VARIANT)
    text[39::40] = b"\n" * _IDS_PER_DRAW
    del text[34::40]
    del text[29::39]
    del text[4::38]
    return text.decode("ascii").split("\n")[:-1]


def new_uuid4() -> str:
    """A random UUID4 string, several times faster than ``str(uuid.uuid4())``.

    Intake assigns one per event on the hot path; the layout is the standard
    one (version nibble 4, RFC 4122 variant), from ``os.urandom`` as uuid4's.
    """
    ids = _entropy.ids
    if not ids:
        ids.extend(_draw_ids())
    return ids.pop()


def new_uuid4s(count: int) -> List[str]:
    """``count`` ids as ``new_uuid4`` makes them, for a block of lines."""
    ids = _entropy.ids
    while len(ids) < count:
        ids.extend(_draw_ids())
    taken = ids[-count:] if count else []
    del ids[len(ids) - count:]
    return taken


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


quoted = json.encoder.encode_basestring_ascii  # JSON string text, ASCII with escapes: the json module's own C encoder


def _unserializable(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _compact_encoder() -> Callable[[Any], str]:
    """Compact JSON text.  json.dumps builds a new C encoder on every call; this builds one, once.

    No cycle check (markers=None): everything encoded here came from parsed JSON.
    """
    make = json.encoder.c_make_encoder
    if make is None:  # an interpreter without the json C accelerator
        return json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    encoder = make(None, _unserializable, quoted, None, ":", ",", False, False, False)
    return lambda value: "".join(encoder(value, 0))


_compact = _compact_encoder()


# An event's wire text is the event_id, then PARTS[0], occurred_at, PARTS[1], the quantity and PARTS[2] (see
# ``event_parts``): the parts depend only on the event's other fields, which bulk input repeats line after line.
# Every slot takes JSON text as it is (the event_id quoted, the quantity as ``repr`` writes it, as json does).
BODY = '{"event_id":%s%s%s%s%s%s'
_PARTS = (',"license_id":%s,"occurred_at":"', '","source_system":%s,"kind":"%s","attribution":%s,"metadata":%s,'
          '"measurements":[{"metric_name":%s,"quantity":', '%s}]%s}')
_SDK = quoted("sdk")


def event_parts(event: dict, attribution: str) -> "tuple[str, str, str]":
    """The wire text of a validated input event around its event_id, occurred_at and quantity (see ``BODY``).

    ``attribution`` is the wire text of its attribution (``attribution_text``).
    Every scalar has been validated, so it is of a known type; ``unit`` is
    omitted when not set, as the official clients do.
    """
    get = event.get
    metadata = get("metadata")
    hint = get("metric_tuple_hint")
    unit = get("unit")
    source = get("source_system")
    return (_PARTS[0] % quoted(event["license_id"]),
            _PARTS[1] % (_SDK if source is None else quoted(source), get("kind", "USAGE"), attribution,
                         "null" if metadata is None else _compact(metadata), quoted(event["metric"])),
            _PARTS[2] % (',"metric_tuple_hint":' + _compact(hint) if hint else "",
                         ',"unit":' + quoted(unit) if unit is not None else ""))


def encode_event(event: dict, event_id: str, occurred_at: str, attribution: str) -> bytes:
    """Serialize a validated input event as the wire event the API expects; ``attribution`` as ``event_parts``
    takes it."""
    head, middle, tail = event_parts(event, attribution)
    return (BODY % (quoted(event_id), head, occurred_at, middle, repr(event["quantity"]), tail)).encode("ascii")


def body_format(parts: "tuple[str, str, str]") -> bytes:
    """``BODY`` with an event's ``event_parts`` filled in, as bytes: ``% (event_id, occurred_at, quantity)`` (the
    first two ASCII bytes, the event_id one that JSON writes without escapes, the quantity a number) gives the
    bytes ``encode_event`` makes.  Formatting bytes with three values costs about half of ``encode_event``'s
    formatting and encoding (bulk input, issue 16)."""
    head, middle, tail = (part.replace("%", "%%") for part in parts)
    return (BODY % ('"%s"', head, "%s", middle, "%r", tail)).encode("ascii")  # bytes' %r: ascii(), repr of a number


def attribution_text(attribution: Optional[dict], default: dict) -> str:
    """The wire text of an event's attribution merged over the configured default (the event wins); "null" if none."""
    if default:
        attribution = {**default, **attribution} if attribution else default
    return _compact(attribution) if attribution else "null"


class BoundedMemo:
    """Values remembered by key up to ``limit`` characters in all (the caller gives each entry's size),
    then all forgotten at once: bulk input repeats a few shapes, and memory stays bounded whatever comes."""

    def __init__(self, limit: int = 1 << 20) -> None:
        self.limit = limit
        self._known: dict = {}
        self._size = 0
        # The value remembered under a key, or None: the dict's own get (a lookup per line; it is never replaced).
        self.get: Callable[[Any], Any] = self._known.get

    def keep(self, key: Any, value: Any, size: int) -> Any:
        """Remember ``value`` (``size`` characters with its key) under ``key``; returns ``value``."""
        self._size += size
        if self._size > self.limit:
            self._known.clear()
            self._size = size
        self._known[key] = value
        return value


class AttributionTexts:
    """``attribution_text`` for one default attribution, remembering the texts of repeated attributions.

    Bulk input repeats a few attributions (a service, a model) over and over;
    encoding one costs more than the rest of its event's fields.  A text is
    remembered under a key the caller makes, which must tell apart every two
    attributions that differ in any key, value or type (``1``, ``1.0`` and
    ``true`` included): the fast path uses msgspec's JSON of the attribution.
    """

    def __init__(self, default: dict) -> None:
        self.default = default
        self.bare = attribution_text(None, default)  # an event without attribution of its own
        self._known = BoundedMemo()

    def text(self, attribution: Optional[dict], key: Optional[bytes] = None) -> str:
        """The wire text; ``key`` (or None: nothing remembered) as the class says."""
        if not attribution:
            return self.bare
        if key is None:
            return attribution_text(attribution, self.default)
        known = self._known.get(key)
        if known is None:
            known = attribution_text(attribution, self.default)
            self._known.keep(key, known, len(known) + len(key))
        return known


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
