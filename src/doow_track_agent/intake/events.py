"""Intake: one raw line in, one wire-ready event (or one precise error) out.

Every source (stdin, the agent's socket, TCP, a tailed file) hands its lines
here, so a line is judged the same way whichever way it came.  The order is
parse -> schema -> policy -> enrich: the schema decides validity, a fast
pre-check only short-cuts the common valid case (see ``precheck``), and the
event gets its ``event_id`` and ``occurred_at`` here, once, never later.
A source that reads blocks of lines (pipe mode) hands each block to
``accept_block``, which judges the common lines in one loop and gives every
other line to ``accept``, the one full judge.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from functools import lru_cache
from itertools import compress, count, repeat
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Iterable, List, NamedTuple, Optional, Sequence, Tuple, Union

from doow_track_agent import redact
from doow_track_agent.intake import keys, policy, wire
from doow_track_agent.intake.wire import MAX_QUANTITY
from doow_track_agent.intake.validation import keep_infinite_text, load_schema, parse_rfc3339, problems

if TYPE_CHECKING:
    from doow_track_agent.intake.fast_path import FastPath

_NAME = re.compile(r"[A-Za-z0-9_.:-]{1,128}\Z")
_LICENSE = re.compile(r"[^\x00-\x1f\x7f]{1,128}\Z")
_EVENT_KEYS = frozenset(load_schema("event")["properties"])
_HINT_KEYS = frozenset(("app_name", "license_name", "metric_name"))
_INF = math.inf
_new = tuple.__new__
# Billing APIs de-duplicate on event_id for about a day; a replay older than that may count twice.
DEDUP_WINDOW_SECONDS = 24 * 3600
_BOM = b"\xef\xbb\xbf"
# Lines after which a source counts as bulk and intake takes the fast path.  Building it costs about
# 9 ms of CPU (msgspec's import about 6 ms, the types from the schema), and each line judged the fast way
# saves about 4.5 us: it pays for itself after about 2,000 lines (measured, issue 16), so a run switches
# there, and a short run (a cron job's few lines) never pays for it.
BULK_LINES = 2000
# A block read at once that holds this many lines is bulk input from its start: intake takes the fast path for
# it at once, instead of judging its first BULK_LINES lines the slow way (a 100,000-line run: about 14 ms saved).
BULK_BLOCK = 200
log = logging.getLogger(__name__)
_LIMIT = policy.MAX_LINE_BYTES
_first, _second = itemgetter(0), itemgetter(1)


class Accepted(NamedTuple):
    """A valid event, serialized for the wire (the spool stores these tuples as its rows)."""

    event_id: str
    body: bytes


class OwnId(Accepted):
    """An Accepted event whose ``event_id`` the line itself gave (so it may repeat an earlier line's)."""

    __slots__ = ()


class Invalid(NamedTuple):
    """A line that will not be sent, and exactly why."""

    line: int
    path: str
    message: str
    kind: str  # json | schema | secret | size | encoding | internal | event_id (reused in one run)


def _text(value: Any, longest: int) -> bool:
    return type(value) is str and 0 < len(value) <= longest


def _positive(value: Any) -> bool:
    kind = type(value)
    return (kind is int or kind is float) and 0 < value <= MAX_QUANTITY


def _scalar(value: Any) -> bool:
    kind = type(value)
    if kind is str:
        return len(value) <= 256
    return kind is bool or kind is int or (kind is float and -_INF < value < _INF)


def _flat(value: Any) -> bool:
    if value is None:
        return True
    if type(value) is not dict or len(value) > 32:
        return False
    for key, item in value.items():
        if not (_text(key, 64) and _scalar(item)):
            return False
    return True


def _hint(value: Any) -> bool:
    if value is None:
        return True
    return (type(value) is dict and _HINT_KEYS.issuperset(value)
            and all(type(item) is str and len(item) <= 128 for item in value.values()))


_OPTIONAL = {
    "unit": lambda v: v is None or _text(v, 64),
    "kind": lambda v: v == "USAGE" or v == "ADJUSTMENT",
    "timestamp": lambda v: type(v) is str and parse_rfc3339(v) is not None,
    "source_system": lambda v: _text(v, 64),
    "attribution": _flat,
    "metadata": lambda v: v is None or type(v) is dict,
    "metric_tuple_hint": _hint,
    "event_id": lambda v: type(v) is str and _NAME.match(v) is not None,
}


def precheck(event: Any) -> bool:
    """True only for events the schema certainly accepts.

    About 25 times cheaper than jsonschema.  It may say False for a valid
    event (jsonschema then decides); it must never say True for an invalid
    one, which the property tests check against the schema itself.
    """
    if type(event) is not dict or not _EVENT_KEYS.issuperset(event):
        return False
    metric = event.get("metric")
    license_id = event.get("license_id")
    if type(metric) is not str or _NAME.match(metric) is None or not _positive(event.get("quantity")):
        return False
    if type(license_id) is not str or _LICENSE.match(license_id) is None:
        return False
    if len(event) > 3:
        for key, value in event.items():
            check = _OPTIONAL.get(key)
            if check is not None and not check(value):
                return False
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number in JSON")


def _unique_keys(pairs: list) -> dict:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise ValueError(f"duplicate key {duplicate!r}")
    return obj


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_STRICT_DECODER = json.JSONDecoder(parse_constant=_reject_constant, object_pairs_hook=_unique_keys)
_scan = _DECODER.scan_once  # the C scanner itself: json.loads' checks cost more than the parse of a short line


def parse_line(raw: bytes) -> Any:
    """Parse one JSON line strictly: no NaN/Infinity, no duplicate keys.

    Checking every object for duplicate keys doubles the cost of parsing, so
    it only happens when counting keys (see ``keys``) cannot prove there is
    none: then the line is parsed again with the per-object check.
    """
    text = raw.decode("utf-8")
    try:
        value, end = _scan(text, 0)
    except StopIteration:
        end = -1
    if end != len(text):
        value = _DECODER.decode(text)  # raises the precise error (or accepts leading blanks)
    if type(value) in (dict, list) and (raw.count(b'":') != keys.key_count(value) or keys.SPACED_COLON.search(raw)):
        _STRICT_DECODER.decode(text)
    return value


MAX_PROBLEMS_SHOWN = 3  # per line: enough to fix a line in one go, few enough to read


def _listed(found: list) -> str:
    """The first problem's message, then up to ``MAX_PROBLEMS_SHOWN`` - 1 more with their paths."""
    shown = [found[0][1]] + [f"{path}: {message}" for path, message in found[1:MAX_PROBLEMS_SHOWN]]
    more = len(found) - MAX_PROBLEMS_SHOWN
    return "; ".join(shown) + (f" (and {more} more)" if more > 0 else "")


def _with_spelled_numbers(event: Any, raw: bytes) -> Any:
    """The event again with infinite numbers as written (``1e400``), for messages; only on the error path."""
    if b"e" not in raw.lower() or not _has_infinite(event):
        return event
    try:
        return json.loads(raw, parse_float=keep_infinite_text)
    except ValueError:
        return event


def _has_infinite(value: Any) -> bool:
    kind = type(value)
    if kind is float:
        return not math.isfinite(value)
    if kind is dict:
        return any(_has_infinite(item) for item in value.values())
    if kind is list:
        return any(_has_infinite(item) for item in value)
    return False


def _fast_path() -> "Optional[FastPath]":
    # Imported here, once a run is bulk: msgspec's import would cost a one-event run more than it saves.
    from doow_track_agent.intake import fast_path

    return fast_path.for_events()


@lru_cache(maxsize=4096)
def _occurred_at(stamp: str) -> Tuple[str, float]:
    """A valid timestamp's wire text and its Unix time (seconds), remembered as ``parse_rfc3339`` remembers."""
    moment = parse_rfc3339(stamp)
    return wire.format_timestamp(moment), moment.timestamp()


def _is_common(event: Optional[dict], raw: bytes) -> bool:
    """Whether ``Intake.accept_block`` makes the body of a line the fast path decoded itself (else ``accept`` does)."""
    return (event is not None and len(raw) <= _LIMIT and event.get("metadata") is None
            and event.get("metric_tuple_hint") is None)


def _all_common(columns: dict, raws: List[bytes]) -> bool:
    """``_is_common`` of every line of a block whose events are all there (``columns``: theirs), in C."""
    count = len(raws)
    return (max(map(len, raws), default=0) <= _LIMIT and columns["metadata"].count(None) == count
            and columns["metric_tuple_hint"].count(None) == count)


def _occurred(stamps: List[Optional[str]], owns: List[Optional[str]], formats: List[Optional[bytes]],
              now: bytes) -> Tuple[Iterable[bytes], int]:
    """Each line's occurred_at as bytes (its timestamp's, or ``now``), and how many of the lines with a body
    (``formats``) are stale replays (an own event_id, a timestamp older than ``DEDUP_WINDOW_SECONDS``)."""
    if stamps.count(None) == len(stamps):
        return repeat(now), 0
    if None in stamps:
        moments = [_occurred_at(stamp) if stamp is not None else (None, _INF) for stamp in stamps]
        occurred: Iterable[bytes] = [now if text is None else text.encode("ascii") for text, _ in moments]
    else:  # bulk input with its own times
        moments = list(map(_occurred_at, stamps))
        occurred = list(map(str.encode, map(_first, moments)))
    sent = owns if None not in formats else [format and own for own, format in zip(owns, formats)]
    oldest = time.time() - DEDUP_WINDOW_SECONDS
    return occurred, sum(map(oldest.__gt__, compress(map(_second, moments), sent)))


class Intake:
    """Turns raw lines into wire events, with the configured default attribution."""

    def __init__(self, attribution: Optional[dict] = None, bulk_after: int = BULK_LINES) -> None:
        """``bulk_after``: lines judged the slow way before intake takes the fast path (0: from the first); up to
        ``BULK_LINES``, a block of ``BULK_BLOCK`` lines takes it at once (above it: a test's never)."""
        self.attribution = dict(attribution or {})
        self.stale_replays = 0
        self._attributions = wire.AttributionTexts(self.attribution)
        self._clock = wire.Clock()
        self._lines = 0  # judged the slow way, until the run turns out to be bulk
        self._bulk_after = bulk_after
        self._fast: "Optional[FastPath]" = _fast_path() if bulk_after <= 0 else None
        self._shapes = wire.BoundedMemo()  # see ``_format``

    def accept_block(self, lines: Sequence[Tuple[int, bytes]], row: type = tuple,
                     default_ids: Optional[List[str]] = None) -> Tuple[List[tuple], List[tuple]]:
        """Judge a block of numbered lines as ``accept`` judges each: ``(rows, others)``.

        ``rows``: ``(line, event_id, body)`` as a ``row`` (a tuple type, such as
        ``Queued``) for every Accepted and OwnId, in line order.  ``others``: ``(index, line, raw, verdict)`` for every
        OwnId (at ``rows[index]``) and Invalid (``index``: where its row would
        have been), in line order; blank lines are in neither.  ``default_ids``
        (one per line) are the ids of lines without one; by default fresh UUID4s.
        Lines of the common shape are judged here together (see ``_common``); any other line goes through
        ``accept``, which stays the one full judge.
        """
        fast = self._fast
        if fast is None and len(lines) >= BULK_BLOCK and self._bulk_after <= BULK_LINES:
            fast = self._fast = _fast_path()
        drawn = default_ids is None
        if drawn:
            default_ids = wire.new_uuid4s(len(lines))
        made = None
        if fast is not None:
            try:  # the fast path can only send lines the slow way: a surprise in it must cost speed, never lines
                made = self._common(fast, list(map(_second, lines)), default_ids, drawn)
            except Exception:
                log.debug("fast path failed on a block; judging it line by line", exc_info=True)
        event_ids, bodies, owns = made or (default_ids, [None] * len(lines), [None] * len(lines))
        if None not in bodies:  # every line of the common shape: rows and others made in C
            numbers = list(map(_first, lines))
            rows = list(map(_new, repeat(row), zip(numbers, event_ids, bodies)))
            if owns.count(None) == len(owns):
                return rows, []
            return rows, list(compress(zip(count(), numbers, map(_second, lines),
                                           map(_new, repeat(OwnId), zip(event_ids, bodies))), owns))
        rows: List[tuple] = []
        others: List[tuple] = []
        keep, accept = rows.append, self.accept
        for (number, raw), event_id, body, own, default_id in zip(lines, event_ids, bodies, owns, default_ids):
            if body is not None:
                keep(_new(row, (number, event_id, body)))
                if own:
                    others.append((len(rows) - 1, number, raw, _new(OwnId, (event_id, body))))
                continue
            verdict = accept(raw, number, default_id)
            kind = type(verdict)
            if kind is Accepted or kind is OwnId:
                keep(_new(row, (number,) + verdict))
                if kind is OwnId:
                    others.append((len(rows) - 1, number, raw, verdict))
            elif verdict is not None:
                others.append((len(rows), number, raw, verdict))
        return rows, others

    def _common(self, fast: "FastPath", raws: List[bytes], default_ids: List[str], drawn: bool
                ) -> Optional[Tuple[List[str], List[Optional[bytes]], List[Optional[str]]]]:
        """``(event_ids, bodies, owns)`` of a block's lines, one of each per line: the event_id, the wire bytes of
        a line of the common shape (None: ``accept`` must judge it; its event_id is then the default one) and
        the line's own event_id (or None).  ``drawn``: the default ids are ``wire.new_uuid4s``' (JSON writes them
        as they are).  None: ``accept`` must judge every line.

        Made column by column (a field of every event at once, in C), not event by event.  Metadata (to size)
        and hints are rare: accept takes them.  A shape is only remembered with a printable license_id; and the
        fast path let no secret through: what ``_admit`` checks is done.
        """
        events, columns = fast.block(raws)
        picked = None if columns is not None and _all_common(columns, raws) else [
            index for index, (event, raw) in enumerate(zip(events, raws)) if _is_common(event, raw)]
        if picked is not None:
            from doow_track_agent.intake.fast_path import Columns  # imported already: the fast path is there

            events = [events[index] for index in picked]
            columns = Columns(events)
        column = columns.__getitem__
        attributions = column("attribution")
        shapes = list(zip(column("license_id"), column("metric"), column("unit"), column("source_system"),
                          column("kind"), map(fast.key, attributions)))
        formats = list(map(self._shapes.get, shapes))
        if None in formats:
            formats = list(map(self._format, formats, shapes, events, attributions))
        owns = column("event_id")
        ids = default_ids if picked is None else [default_ids[index] for index in picked]
        if owns.count(None) != len(owns):
            ids = [own or default for own, default in zip(owns, ids)]
        given = "".join(filter(None, owns) if drawn else ids)
        if len(wire.quoted(given)) != len(given) + 2:
            return None  # body_format writes ids as they are: an id JSON must escape sends its block the slow way
        now = self._clock.now().encode("ascii")  # the block was read at once: its lines' read time
        stamps = column("timestamp")
        occurred, stale = _occurred(stamps, owns, formats, now)
        values = zip(map(str.encode, ids), occurred, column("quantity"))
        if None in formats:
            bodies = [None if format is None else format % value for format, value in zip(formats, values)]
        else:
            bodies = list(map(bytes.__mod__, formats, values))
        self.stale_replays += stale
        if picked is None:
            return ids, bodies, owns
        every_id, every_body, every_own = list(default_ids), [None] * len(raws), [None] * len(raws)  # see the loop
        for index, event_id, body, own in zip(picked, ids, bodies, owns):
            if body is not None:
                every_id[index], every_body[index], every_own[index] = event_id, body, own
        return every_id, every_body, every_own

    def _format(self, known: Optional[bytes], shape: tuple, event: dict, attribution: Optional[dict]
                ) -> Optional[bytes]:
        """``known``, or ``wire.body_format`` of an event of this ``shape``, remembered (bulk input repeats a few).

        ``shape``: the fields the body depends on, the attribution as ``AttributionTexts``' key.  None when
        the license_id is not printable (``accept`` words the error).
        """
        if known is not None:
            return known
        if not shape[0].isprintable():
            return None
        key = shape[-1]
        format = wire.body_format(wire.event_parts(event, self._attributions.text(attribution, key)))
        size = len(format) + len(key) + sum(len(field) for field in shape[:5] if field)
        return self._shapes.keep(shape, format, size)

    def accept(self, raw: bytes, line: int, event_id: Optional[str] = None) -> Union[Accepted, Invalid, None]:
        """Judge one line; None for a blank line (blank lines are not errors).

        ``event_id`` is the id the event gets when the line has none (a tailed
        file derives one from the line's place, so a re-read gets it again).
        Never raises: whatever goes wrong while one line is judged makes that
        line Invalid (kind ``internal`` for the unforeseen), never its neighbours.
        """
        try:
            return self._judge(raw, line, event_id)
        except RecursionError:
            return Invalid(line, "$", "invalid JSON: nested too deeply", "json")
        except Exception as exc:  # a bug in intake costs this one line, reported, never the run
            log.error("line %d: internal error while judging it: %r", line, exc, exc_info=True)
            return Invalid(line, "$", f"internal error while judging this line: {type(exc).__name__}: {exc}",
                           "internal")

    def _judge(self, raw: bytes, line: int, event_id: Optional[str]) -> Union[Accepted, Invalid, None]:
        raw = raw.strip()
        if raw.startswith(_BOM):  # editors on Windows start files with one; concatenated files carry it mid-stream
            raw = raw[3:].lstrip()
        if not raw:
            return None
        if len(raw) > policy.MAX_LINE_BYTES:
            # Sources keep only the first limit + 1 bytes of an overlong line: its real length is unknown here.
            return Invalid(line, "$", f"line is longer than {policy.MAX_LINE_BYTES // 1024} KiB "
                                      f"(at most {policy.MAX_LINE_BYTES} bytes allowed)", "size")
        fast = self._fast
        if fast is not None:
            event = fast.event(raw)
            if event is not None:  # no escape, no secret marker in the line (see fast_path): no scan for them
                return self._admit(event, raw, line, event_id, fast)
        else:
            self._lines += 1
            if self._lines == self._bulk_after:
                self._fast = _fast_path()
        try:
            event = parse_line(raw)
        except UnicodeDecodeError as exc:
            return Invalid(line, "$", f"not UTF-8 ({exc.reason} at byte {exc.start})", "encoding")
        except ValueError as exc:
            return Invalid(line, "$", f"invalid JSON: {exc}", "json")
        return self.accept_event(event, raw, line, event_id)

    def accept_event(self, event: Any, raw: bytes, line: int,
                     event_id: Optional[str] = None) -> Union[Accepted, Invalid]:
        """Judge an already-parsed event (``raw`` is its text, for the secret and encoding scans)."""
        unencodable = policy.encoding_problem(raw, event)
        if unencodable:
            return Invalid(line, unencodable[0], unencodable[1], "encoding")
        if not precheck(event):
            found = problems("event", _with_spelled_numbers(event, raw))
            if found:
                # Schema messages quote the offending value, which may be a key pasted in the wrong field.
                return Invalid(line, found[0][0], redact.scrub_keys(_listed(found)), "schema")
        return self._admit(event, raw, line, event_id, None)

    def _admit(self, event: dict, raw: bytes, line: int, event_id: Optional[str],
               fast: "Optional[FastPath]") -> Union[Accepted, Invalid]:
        """The policy beyond the schema, then the wire event; ``fast``: the line came the fast way (no secret)."""
        unprintable = policy.name_problem(event)
        if unprintable:
            return Invalid(line, unprintable[0], unprintable[1], "schema")
        secret = None if fast else policy.find_secret(raw, event)
        if secret:
            return Invalid(line, secret[0], f"value looks like {secret[1]}; never send secrets as event data", "secret")
        unsendable = policy.number_problem(event)
        if unsendable:
            return Invalid(line, unsendable[0], unsendable[1], "schema")
        oversized = policy.size_problem(event)
        if oversized:
            return Invalid(line, oversized[0], oversized[1], "size")
        return self._enrich(event, event_id, fast)

    def _enrich(self, event: dict, default_id: Optional[str], fast: "Optional[FastPath]") -> Accepted:
        own_id = event.get("event_id")
        event_id = own_id or default_id or wire.new_uuid4()
        stamp = event.get("timestamp")
        if stamp:
            occurred_at, seconds = _occurred_at(stamp)
            if "event_id" in event and time.time() - seconds > DEDUP_WINDOW_SECONDS:
                self.stale_replays += 1
        else:
            occurred_at = self._clock.now()
        attribution = event.get("attribution")
        text = self._attributions.text(attribution, fast.key(attribution) if fast and attribution else None)
        body = wire.encode_event(event, event_id, occurred_at, text)
        return _new(OwnId if own_id else Accepted, (event_id, body))  # without NamedTuple's Python-level __new__
