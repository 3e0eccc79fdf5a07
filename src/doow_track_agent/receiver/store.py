"""SQLite storage for what the local receiver was sent.

Layout (one file, WAL mode, so tests and `receiver summary` can read while the
server writes):

- ``requests``: one row per ingest request with its status (0 = connection
  reset without a response), counts, and for stored batches the body exactly
  as received (gzip stays gzip: a tenth of the bytes to write), which holds
  the raw JSON of every event in it.
- ``events``: one row per distinct ``event_id``, first arrival wins, with the
  billed fields pulled out of ``measurements[0]`` and a pointer
  (request_id, position) to its raw JSON.
- ``duplicates``: one row per repeated arrival of a stored ``event_id``; an
  event's seen count is 1 + its rows here.
- ``rejections``: one row per event refused in a 207, with the reason sent
  back and the license and metric it claimed (when they were strings).

De-duplication is decided against an in-memory set of stored ids, loaded from
the file on first write, and the tables carry no unique index. That is a
measured choice: a unique index over random UUIDs dirties hundreds of pages
per 500-event commit and made SQLite alone cost 8-12 us per event, against
about 3 us append-only, and the receiver must sustain the agent's 50,000
events/s. The consequence: one receiver process per database file.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

STATUS_RESET = 0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    received_at TEXT NOT NULL,
    status INTEGER NOT NULL,
    batch_id TEXT,
    events INTEGER NOT NULL DEFAULT 0,
    accepted INTEGER NOT NULL DEFAULT 0,
    rejected INTEGER NOT NULL DEFAULT 0,
    duplicates INTEGER NOT NULL DEFAULT 0,
    content_encoding TEXT,
    body BLOB
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    request_id INTEGER NOT NULL REFERENCES requests(id),
    position INTEGER NOT NULL,
    license_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    quantity REAL NOT NULL,
    kind TEXT NOT NULL,
    unit TEXT,
    occurred_at TEXT NOT NULL,
    attribution TEXT,
    metadata TEXT,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS duplicates (
    event_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    request_id INTEGER NOT NULL REFERENCES requests(id),
    license_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    received_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rejections (
    event_id TEXT,
    batch_id TEXT NOT NULL,
    request_id INTEGER NOT NULL REFERENCES requests(id),
    license_id TEXT,
    metric TEXT,
    reason TEXT NOT NULL,
    received_at TEXT NOT NULL
);
"""

_INSERT_REQUEST = (
    "INSERT INTO requests (received_at, status, batch_id, events, accepted, rejected, duplicates,"
    " content_encoding, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_DUPLICATE = "INSERT INTO duplicates VALUES (?, ?, ?, ?, ?, ?)"
_INSERT_REJECTION = "INSERT INTO rejections VALUES (?, ?, ?, ?, ?, ?, ?)"
_RECENT = {
    "events": "SELECT received_at, license_id, metric, quantity, kind, event_id FROM events"
    " ORDER BY rowid DESC LIMIT ?",
    "duplicates": "SELECT received_at, license_id, metric, event_id FROM duplicates ORDER BY rowid DESC LIMIT ?",
    "rejections": "SELECT received_at, license_id, metric, event_id, reason FROM rejections"
    " ORDER BY rowid DESC LIMIT ?",
}
_LAST_REQUEST = ("SELECT received_at, status, batch_id, events, accepted, rejected, duplicates FROM requests"
                 " ORDER BY id DESC LIMIT 1")
_GROUPS = {
    "events": "SELECT license_id, metric, count(*), sum(quantity), max(received_at)"
    " FROM events GROUP BY license_id, metric",
    "duplicates": "SELECT license_id, metric, count(*), 0, max(received_at)"
    " FROM duplicates GROUP BY license_id, metric",
}

_to_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class _JsonMemo:
    """JSON text of attribution and metadata objects, remembered when all values are strings.

    Producers send the same few attribution objects again and again; encoding
    one costs about a microsecond, a lookup a fifth of that, and that is 10%
    of the receiver's per-event budget. Only all-string objects are
    remembered, so a lookup can never confuse 1, 1.0 and true.
    """

    LIMIT = 4096

    def __init__(self) -> None:
        self._texts: Dict[tuple, str] = {}

    def __call__(self, value: Optional[dict]) -> Optional[str]:
        if value is None:
            return None
        key = tuple(value.items())
        try:
            text = self._texts.get(key)
        except TypeError:  # unhashable values (lists, objects) are never remembered
            return _to_json(value)
        if text is None:
            text = _to_json(value)
            if all(type(item) is str for item in value.values()):
                if len(self._texts) >= self.LIMIT:
                    self._texts.clear()
                self._texts[key] = text
        return text


@dataclass(frozen=True)
class Request:
    """What one ingest request amounted to, for its row in ``requests``."""

    status: int
    batch_id: Optional[str] = None
    events: int = 0
    rejected: int = 0
    content_encoding: str = ""
    body: Optional[bytes] = None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Store:
    """The receiver's database: thread-safe writes, read methods for tests and the CLI.

    Read methods open a short-lived connection each, so ``Store(path).count()``
    leaves nothing open; the write connection is opened on first write and
    released by close().
    """

    def __init__(self, path: str) -> None:
        self._path = str(path)
        self._lock = threading.Lock()
        self._writer: Optional[sqlite3.Connection] = None
        self._ids: Optional[Set[str]] = None
        self._json = _JsonMemo()
        with closing(self._connect()) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self._path, timeout=30, isolation_level=None, check_same_thread=False)

    # -- writes ---------------------------------------------------------------

    def record_request(self, request: Request) -> None:
        """Log a request that stored nothing (refused, failed by a fault, reset)."""
        with self._lock, self._transaction() as conn:
            conn.execute(_INSERT_REQUEST, _request_row(request, utc_now(), accepted=0, duplicates=0))

    def record_batch(self, request: Request, events: Sequence[Tuple[int, dict]],
                     refused: Sequence[Tuple[Any, str]] = ()) -> int:
        """Store a batch's acceptable (position, event) pairs, and its refused (event, reason) pairs, in one transaction.

        Returns how many of the acceptable ones were duplicates (already
        stored, or repeated within the batch): those are counted, not stored again.
        """
        received_at = utc_now()
        with self._lock:
            known = self._known_ids()
            fresh: Set[str] = set()
            new_events, repeats = [], []
            for position, event in events:
                event_id = event["event_id"]
                if event_id in known or event_id in fresh:
                    repeats.append(event)
                else:
                    fresh.add(event_id)
                    new_events.append((position, event))
            with self._transaction() as conn:
                row = _request_row(request, received_at, accepted=len(events), duplicates=len(repeats))
                request_id = conn.execute(_INSERT_REQUEST, row).lastrowid
                conn.executemany(
                    _INSERT_EVENT,
                    [self._event_row(e, p, request, request_id, received_at) for p, e in new_events],
                )
                conn.executemany(
                    _INSERT_DUPLICATE,
                    [_duplicate_row(e, request, request_id, received_at) for e in repeats],
                )
                conn.executemany(
                    _INSERT_REJECTION,
                    [_rejection_row(e, reason, request, request_id, received_at) for e, reason in refused],
                )
            known |= fresh
        return len(repeats)

    def _event_row(self, event: dict, position: int, request: Request, request_id: int, received_at: str) -> tuple:
        measurement = event["measurements"][0]
        return (
            event["event_id"], request.batch_id, request_id, position,
            event["license_id"], measurement["metric_name"], measurement["quantity"],
            event.get("kind", "USAGE"), event.get("unit"), event["occurred_at"],
            self._json(event.get("attribution")), self._json(event.get("metadata")),
            received_at,
        )

    def _known_ids(self) -> Set[str]:
        if self._ids is None:
            self._ids = self.event_ids()
        return self._ids

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self._writer is None:
            self._writer = self._connect()
            self._writer.execute("PRAGMA synchronous=NORMAL")
        conn = self._writer
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    # -- reads ----------------------------------------------------------------

    @contextmanager
    def _reader(self) -> Iterator[sqlite3.Connection]:
        """One read transaction, so that several queries see the same snapshot."""
        with closing(self._connect()) as conn:
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                conn.execute("COMMIT")

    def count(self) -> int:
        """Distinct events stored."""
        with self._reader() as conn:
            return conn.execute("SELECT count(*) FROM events").fetchone()[0]

    def duplicates(self) -> int:
        """Arrivals of an already stored event_id."""
        with self._reader() as conn:
            return conn.execute("SELECT count(*) FROM duplicates").fetchone()[0]

    def event_ids(self) -> Set[str]:
        with self._reader() as conn:
            return {row[0] for row in conn.execute("SELECT event_id FROM events")}

    def attributions(self) -> List[Optional[dict]]:
        """The attribution of every stored event, in arrival order."""
        with self._reader() as conn:
            rows = conn.execute("SELECT attribution FROM events ORDER BY rowid").fetchall()
        return [None if text is None else json.loads(text) for (text,) in rows]

    def raw_event(self, event_id: str) -> Optional[dict]:
        """The event exactly as its first request carried it, or None if never stored."""
        with self._reader() as conn:
            row = conn.execute(
                "SELECT r.content_encoding, r.body, e.position FROM events e"
                " JOIN requests r ON r.id = e.request_id WHERE e.event_id = ?",
                (event_id,),
            ).fetchone()
        if row is None:
            return None
        encoding, body, position = row
        data = gzip.decompress(body) if encoding == "gzip" else body
        return json.loads(data)["events"][position]

    def stats(self) -> Dict[str, Any]:
        """Overall counts: what GET /_receiver/stats answers.

        events, quantity (their sum), duplicates, rejected (events refused in
        207s), requests_total, requests_by_status ({"202": n, "reset": n, ...}:
        ingest requests only), gzip_requests.
        """
        with self._reader() as conn:
            return _stats(conn)

    def summary(self) -> Dict[str, Any]:
        """stats() plus totals per license and metric, for `receiver summary`."""
        with self._reader() as conn:
            totals = _stats(conn)
            groups = {kind: conn.execute(sql).fetchall() for kind, sql in _GROUPS.items()}
        totals["by_license_metric"] = _merge_groups(groups["events"], groups["duplicates"])
        return totals

    def recent(self, limit: int = 50) -> Dict[str, Any]:
        """summary() plus the last ``limit`` events, duplicates and rejections (newest first) and the last request.

        Rows are dicts named after their columns; ``last_request`` is None before the first request.
        """
        with self._reader() as conn:
            totals = _stats(conn)
            groups = {kind: conn.execute(sql).fetchall() for kind, sql in _GROUPS.items()}
            for kind, sql in _RECENT.items():
                cursor = conn.execute(sql, (limit,))
                columns = [column[0] for column in cursor.description]
                totals[f"recent_{kind}"] = [dict(zip(columns, row)) for row in cursor]
            cursor = conn.execute(_LAST_REQUEST)
            last = cursor.fetchone()
            totals["last_request"] = dict(zip([column[0] for column in cursor.description], last)) if last else None
        totals["by_license_metric"] = _merge_groups(groups["events"], groups["duplicates"])
        return totals


def _request_row(request: Request, received_at: str, accepted: int, duplicates: int) -> tuple:
    return (
        received_at, request.status, request.batch_id, request.events,
        accepted, request.rejected, duplicates, request.content_encoding, request.body,
    )


def _duplicate_row(event: dict, request: Request, request_id: int, received_at: str) -> tuple:
    metric = event["measurements"][0]["metric_name"]
    return (event["event_id"], request.batch_id, request_id, event["license_id"], metric, received_at)


def _rejection_row(event: Any, reason: str, request: Request, request_id: int, received_at: str) -> tuple:
    """A refused event may be anything: license and metric are kept only when they are strings."""
    event = event if isinstance(event, dict) else {}
    measurements = event.get("measurements")
    first = measurements[0] if isinstance(measurements, list) and measurements else None
    metric = first.get("metric_name") if isinstance(first, dict) else None
    return (_text_or_none(event.get("event_id")), request.batch_id, request_id,
            _text_or_none(event.get("license_id")), _text_or_none(metric), reason, received_at)


def _text_or_none(value: Any) -> Optional[str]:
    return value if isinstance(value, str) else None


def _stats(conn: sqlite3.Connection) -> Dict[str, Any]:
    events, quantity = conn.execute("SELECT count(*), coalesce(sum(quantity), 0) FROM events").fetchone()
    duplicates = conn.execute("SELECT count(*) FROM duplicates").fetchone()[0]
    rejected, gzip_requests = conn.execute(
        "SELECT coalesce(sum(rejected), 0), count(CASE content_encoding WHEN 'gzip' THEN 1 END) FROM requests"
    ).fetchone()
    by_status = {
        status_label(status): n
        for status, n in conn.execute("SELECT status, count(*) FROM requests GROUP BY status ORDER BY status")
    }
    return {
        "events": events,
        "quantity": quantity,
        "duplicates": duplicates,
        "rejected": rejected,
        "requests_total": sum(by_status.values()),
        "requests_by_status": by_status,
        "gzip_requests": gzip_requests,
    }


def status_label(status: int) -> str:
    """How a request status is keyed in stats: the code, or "reset"."""
    return "reset" if status == STATUS_RESET else str(status)


def _merge_groups(stored: List[tuple], repeated: List[tuple]) -> List[Dict[str, Any]]:
    """Join per-(license, metric) rows of events and duplicates into one table."""
    rows: Dict[Tuple[str, str], Dict[str, Any]] = {}
    for kind, groups in (("events", stored), ("duplicates", repeated)):
        for license_id, metric, n, quantity, last_seen in groups:
            row = rows.setdefault(
                (license_id, metric),
                {"license_id": license_id, "metric": metric, "events": 0,
                 "quantity": 0, "duplicates": 0, "last_seen": last_seen},
            )
            row[kind] = n
            row["quantity"] += quantity
            row["last_seen"] = max(row["last_seen"], last_seen)
    return [rows[key] for key in sorted(rows)]
