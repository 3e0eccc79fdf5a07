"""What ``doow-track top`` shows: one frame from two samples of the agent's ``/status``.

Rates are derived here, from the agent's counters and the time between two
samples, so the agent keeps nothing but plain counters.  A frame fits an
80x24 terminal: long names are shortened from the left (a path's end is
what tells files apart) and surplus sources are summarised in one line.
The frame never shows the key, not even masked, and every string that
came from the agent is shown as literal text with control characters
escaped: a file name may be chosen by anyone who can write to a tailed
directory.
"""

from __future__ import annotations

import calendar
import time
from typing import Iterable, List, NamedTuple, Optional, Tuple

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

# Lines the frame needs besides the source rows: header, state, blank, table heads, out rows, spool, error, footer.
FIXED_LINES = 17
_OUT_ROWS = (("delivered", "delivered"), ("rejected (dead-lettered)", "rejected"),
             ("requests", "requests"), ("retries", "retries"))


class Sample(NamedTuple):
    """One look at the agent: when (``time.monotonic()`` seconds), its ``/status`` (None: no answer), and why
    what answered is not trusted (``identity``), if it is not."""

    at: float
    document: Optional[dict]
    untrusted: Optional[str] = None


def literal(value: object) -> str:
    """``value`` as printable text: control characters (terminal escapes among them) shown as ``\\xNN``."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def shorten(text: str, width: int) -> str:
    """At most ``width`` characters, keeping the end."""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def duration(seconds: Optional[float]) -> str:
    """``45s``, ``12m05s``, ``3h04m``, ``2d05h``; ``-`` when unknown."""
    if seconds is None:
        return "-"
    whole = max(0, int(seconds))
    for unit, size, small, small_size in (("d", 86400, "h", 3600), ("h", 3600, "m", 60), ("m", 60, "s", 1)):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // small_size:02d}{small}"
    return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"


def byte_size(count: float) -> str:
    """Bytes in binary units: ``512 B``, ``4.5 KiB``, ``100.0 MiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")


def age_of(iso: Optional[str], now: float) -> Optional[float]:
    """Seconds since an RFC 3339 UTC timestamp of the agent (``2024-05-01T12:00:00Z``)."""
    if not iso:
        return None
    return now - calendar.timegm(time.strptime(iso, "%Y-%m-%dT%H:%M:%SZ"))


def _rate(before: Optional[float], after: float, elapsed: float) -> Optional[float]:
    if before is None or elapsed <= 0 or after < before:
        return None
    return (after - before) / elapsed


def _fmt_rate(rate: Optional[float]) -> str:
    return "-" if rate is None else f"{rate:,.1f}"


def comparable(previous: Optional[Sample], current: Sample) -> Optional[Sample]:
    """``previous`` when rates can be taken against it: the same agent process, answering both times."""
    if previous is None or previous.document is None or current.document is None:
        return None
    same = previous.document.get("pid") == current.document.get("pid")
    younger = current.document.get("uptime_seconds", 0) < previous.document.get("uptime_seconds", 0)
    return previous if same and not younger else None


def frame(previous: Optional[Sample], current: Sample, where: str, size: Tuple[int, int] = (80, 24),
          wall: Optional[float] = None) -> RenderableType:
    """The screen for ``current`` (rates against ``previous``) on a terminal of ``size`` (columns, lines).

    ``where`` names the agent's health address; ``wall`` is now (Unix time) for ages.
    """
    wall = time.time() if wall is None else wall
    if current.untrusted is not None:
        return _not_trusted(current.untrusted, wall)
    if current.document is None:
        return _not_running(previous, where, wall)
    document = current.document
    base = comparable(previous, current)
    elapsed = current.at - base.at if base is not None else 0.0
    before = base.document if base is not None and base.document is not None else None
    width, height = size
    rows = max(1, height - FIXED_LINES)
    parts: List[RenderableType] = [_header(document, where, wall), Text(""),
                                   _sources(document, before, elapsed, rows, width), Text(""),
                                   _out(document, before, elapsed), Text(""),
                                   _spool(document), _last_error(document, wall),
                                   Text("q quits · figures every second · rates are per second", style="dim")]
    return Group(*parts)


def _header(document: dict, where: str, wall: float) -> Text:
    reload = document.get("reload") or {}
    if reload.get("ok") is False:
        reload_text = Text(f"reload REFUSED {duration(age_of(reload.get('at'), wall))} ago: "
                           f"{literal(reload.get('error'))}", style="bold red")
    elif reload.get("ok"):
        reload_text = Text(f"reload ok {duration(age_of(reload.get('at'), wall))} ago")
    else:
        reload_text = Text("not reloaded")
    title = Text.assemble(
        ("doow-track top", "bold"),
        f" · pid {document.get('pid')} · v{literal(document.get('version', '?'))}"
        f" · up {duration(document.get('uptime_seconds'))} · {literal(where)}")
    ready = Text("ready", style="green") if document.get("ready") else Text(
        "NOT READY: " + "; ".join(literal(reason) for reason in document.get("not_ready") or []), style="bold red")
    key = Text("key rejected", style="bold red") if document.get("key_rejected") else Text("key accepted")
    state = Text(" · ").join([ready, key, Text(f"config generation {document.get('generation')}"), reload_text])
    return Text("\n").join([title, state])


def _table(*columns: Tuple[str, str, Optional[int]]) -> Table:
    """Columns of (heading, justify, width); the one without a width takes the rest."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), expand=True)
    for name, justify, width in columns:
        table.add_column(name, justify=justify, no_wrap=True, width=width,  # type: ignore[arg-type]
                         ratio=None if width else 1)
    return table


# SOURCE, IN/s, ACCEPTED, INVALID: wide enough for "socket", "123,456.7", "1,234,567,890", "1,234,567".
_SOURCE_WIDTHS = (6, 9, 13, 9)
_SOURCE_PADDING = (2 * 5 - 2) + 4  # one space each side of a cell, not at the edges, and 4 column separators


def _sources(document: dict, before: Optional[dict], elapsed: float, rows: int, width: int) -> Table:
    kind, rate, accepted, invalid = _SOURCE_WIDTHS
    table = _table(("SOURCE", "left", kind), ("NAME", "left", None), ("IN/s", "right", rate),
                   ("ACCEPTED", "right", accepted), ("INVALID", "right", invalid))
    name_width = max(8, width - sum(_SOURCE_WIDTHS) - _SOURCE_PADDING)
    earlier = {(item["source"], item["name"]): item for item in (before or {}).get("sources", [])}
    entries = []
    for item in document.get("sources", []):
        old = earlier.get((item["source"], item["name"]))
        entries.append((_rate(old and old["accepted"], item["accepted"], elapsed), item))
    entries.sort(key=lambda entry: -(entry[0] or 0.0))
    shown, hidden = (entries, []) if len(entries) <= rows else (entries[:rows - 1], entries[rows - 1:])
    for accepted_rate, item in shown:
        table.add_row(literal(item["source"]), shorten(literal(item["name"]), name_width), _fmt_rate(accepted_rate),
                      f"{item['accepted']:,}", f"{item['invalid']:,}")
    if hidden:
        table.add_row("…", f"{len(hidden)} more", _fmt_rate(_total(entry[0] for entry in hidden)),
                      f"{sum(entry[1]['accepted'] for entry in hidden):,}",
                      f"{sum(entry[1]['invalid'] for entry in hidden):,}")
    if not entries:
        table.add_row("-", "no source has reported yet", "", "", "")
    return table


def _total(rates: Iterable[Optional[float]]) -> Optional[float]:
    known = list(rates)
    return None if any(rate is None for rate in known) else sum(known)  # type: ignore[misc]


def _out(document: dict, before: Optional[dict], elapsed: float) -> Table:
    table = _table(("OUT", "left", None), ("PER SECOND", "right", 12), ("TOTAL", "right", 15))
    counters = document.get("counters", {})
    earlier = (before or {}).get("counters", {})
    for label, name in _OUT_ROWS:
        table.add_row(label, _fmt_rate(_rate(earlier.get(name), counters.get(name, 0), elapsed)),
                      f"{counters.get(name, 0):,}")
    return table


def _spool(document: dict) -> Text:
    spool = document.get("spool", {})
    oldest = spool.get("oldest_age_seconds")
    text = Text(f"spool: {spool.get('events', 0):,} events, {byte_size(spool.get('bytes', 0))} of "
                f"{byte_size(spool.get('max_bytes', 0))}, oldest {duration(oldest) if oldest is not None else 'none'}")
    if spool.get("full"):
        text.append(" FULL: new events refused", style="bold red")
    dead = spool.get("dead_letters", 0)
    text.append(f" · dead letters: {dead:,}", style="bold yellow" if dead else "")
    return text


def _last_error(document: dict, wall: float) -> Text:
    error = document.get("last_error")
    if not error:
        return Text("last error: none")
    age = duration(age_of(document.get("last_error_at"), wall))
    return Text(f"last error ({age} ago): {literal(error)}", style="red" if document.get("failing") else "")


def _not_running(previous: Optional[Sample], where: str, wall: float) -> Text:
    text = Text.assemble(("doow-track top", "bold"), " · ", ("agent not running", "bold red"),
                         f": no answer from {literal(where)}; retrying every second")
    if previous is not None and previous.document is not None:
        text.append(f"\nlast seen: pid {previous.document.get('pid')}")
    text.append(f"\n{time.strftime('%H:%M:%S', time.localtime(wall))} · q quits", style="dim")
    return text


def _not_trusted(reason: str, wall: float) -> Text:
    text = Text.assemble(("doow-track top", "bold"), " · ", ("not trusted", "bold red"), f": {reason}",
                         "\nnone of its figures are shown; find what answers in the agent's place (ss -ltnp)")
    text.append(f"\n{time.strftime('%H:%M:%S', time.localtime(wall))} · q quits", style="dim")
    return text
