"""The receiver's page (``GET /``): what arrived, as Doow's integration page shows it, refreshed live.

Recent events by metric and license, counts, duplicates, rejected events
with their reasons, and the last request's status.  Plain HTML: a meta
refresh instead of a script, one inline stylesheet allowed by its hash in
the Content-Security-Policy, and nothing else may load.  Every value comes
from producers (license ids may hold almost any printable character), so
each is escaped with ``html.escape``; the page is read-only and answers only
loopback clients that name a loopback host (a DNS-rebound name is refused).
"""

from __future__ import annotations

import base64
import hashlib
from html import escape
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

REFRESH_SECONDS = 2
RECENT_ROWS = 50

_STYLE = (
    "body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}"
    "h1{font-size:1.3em}h2{font-size:1.05em;margin-top:1.6em}"
    "table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:.2em .6em;border-bottom:1px solid #ddd}"
    "td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}"
    ".meta{color:#666}.bad{color:#b00020}.ok{color:#1b5e20}dl{display:flex;gap:2em;flex-wrap:wrap}"
    "dt{color:#666}dd{margin:0;font-size:1.4em}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")

HEADERS = {
    "Content-Type": "text/html; charset=utf-8",
    "Content-Security-Policy": (f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
                                "form-action 'none'; frame-ancestors 'none'"),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _text(value: Any) -> str:
    return "" if value is None else escape(str(value), quote=True)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else _text(value)


def _table(element_id: str, columns: Sequence[Tuple[str, str]], rows: Iterable[Dict[str, Any]],
           empty: str) -> str:
    """Columns are (key, heading); keys of numbers end in ``#`` to align right."""
    head = "".join(f'<th class="n">{_text(title)}</th>' if key.endswith("#") else f"<th>{_text(title)}</th>"
                   for key, title in columns)
    body: List[str] = []
    for row in rows:
        cells = "".join(f'<td class="n">{_number(row.get(key[:-1]))}</td>' if key.endswith("#")
                        else f"<td>{_text(row.get(key))}</td>" for key, _ in columns)
        body.append(f"<tr>{cells}</tr>")
    if not body:
        body.append(f'<tr><td colspan="{len(columns)}" class="meta">{_text(empty)}</td></tr>')
    return f'<table id="{element_id}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _last_request(last: Optional[Dict[str, Any]]) -> str:
    if last is None:
        return '<p id="last-request" class="meta">No request yet.</p>'
    status = last["status"]
    label = "connection reset" if status == 0 else f"HTTP {status}"
    css = "ok" if 200 <= status < 300 else "bad"
    return (f'<p id="last-request">Last request: <strong class="{css}">{_text(label)}</strong> at '
            f'{_text(last["received_at"])}, batch {_text(last["batch_id"] or "-")}: {_number(last["events"])} '
            f'events, {_number(last["accepted"])} accepted, {_number(last["rejected"])} rejected, '
            f'{_number(last["duplicates"])} duplicates.</p>')


def render(snapshot: Dict[str, Any], now: str) -> bytes:
    """The page for ``Store.recent()``'s ``snapshot``; ``now`` is the time shown as refreshed."""
    statuses = ", ".join(f"{_text(status)}: {_number(count)}" for status, count in
                         snapshot["requests_by_status"].items())
    totals = "".join(f"<div><dt>{title}</dt><dd>{_number(snapshot[key])}</dd></div>" for key, title in (
        ("events", "Events"), ("quantity", "Quantity"), ("duplicates", "Duplicates"),
        ("rejected", "Rejected"), ("requests_total", "Requests")))
    sections = [
        "<h2>By license and metric</h2>",
        _table("by-license-metric", (("license_id", "License"), ("metric", "Metric"), ("events#", "Events"),
                                     ("quantity#", "Quantity"), ("duplicates#", "Duplicates"),
                                     ("last_seen", "Last seen")),
               snapshot["by_license_metric"], "No events yet."),
        f"<h2>Recent events (last {RECENT_ROWS})</h2>",
        _table("recent-events", (("received_at", "Received"), ("license_id", "License"), ("metric", "Metric"),
                                 ("quantity#", "Quantity"), ("kind", "Kind"), ("event_id", "Event id")),
               snapshot["recent_events"], "No events yet."),
        "<h2>Rejected events</h2>",
        _table("rejections", (("received_at", "Received"), ("license_id", "License"), ("metric", "Metric"),
                              ("event_id", "Event id"), ("reason", "Reason")),
               snapshot["recent_rejections"], "No event rejected."),
        "<h2>Duplicates (counted once)</h2>",
        _table("duplicates", (("received_at", "Received"), ("license_id", "License"), ("metric", "Metric"),
                              ("event_id", "Event id")),
               snapshot["recent_duplicates"], "No duplicate."),
    ]
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="refresh" content="{REFRESH_SECONDS}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>doow-track receiver</title><style>{_STYLE}</style></head><body>"
        "<h1>doow-track receiver</h1>"
        f'<p class="meta">What this receiver stored, refreshed every {REFRESH_SECONDS} s (last {_text(now)}). '
        "Read-only.</p>"
        f'<dl id="totals">{totals}</dl>'
        f'<p class="meta">Requests by status: {statuses or "none"}</p>'
        f"{_last_request(snapshot['last_request'])}{''.join(sections)}</body></html>"
    )
    return page.encode("utf-8")
