"""What the receiver stored, as a table a person reads: per license and metric, then the totals."""

from __future__ import annotations

import sys
from typing import Any, Dict, List, Optional, TextIO, Tuple


def print_summary(summary: Dict[str, Any], out: Optional[TextIO] = None) -> None:
    """Store.summary() as a table per license and metric, then the totals."""
    out = out or sys.stdout
    rows = [
        (row["license_id"], row["metric"], str(row["events"]), _number(row["quantity"]),
         str(row["duplicates"]), row["last_seen"])
        for row in summary["by_license_metric"]
    ]
    if rows:
        _print_table(("LICENSE", "METRIC", "EVENTS", "QUANTITY", "DUPLICATES", "LAST SEEN"), rows, out)
    else:
        print("no events stored", file=out)
    statuses = ", ".join(f"{status}: {n}" for status, n in summary["requests_by_status"].items())
    print(
        f"total: {_count(summary['events'], 'event')}, quantity {_number(summary['quantity'])}, "
        f"{_count(summary['duplicates'], 'duplicate')}, {summary['rejected']} rejected; "
        f"{_count(summary['requests_total'], 'request')}" + (f" ({statuses})" if statuses else ""),
        file=out,
    )


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _print_table(header: Tuple[str, ...], rows: List[Tuple[str, ...]], out: TextIO) -> None:
    """Names left-aligned, counts right-aligned, columns as wide as their content."""
    widths = [max(len(line[i]) for line in (header, *rows)) for i in range(len(header))]
    numeric = {2, 3, 4}
    for line in (header, *rows):
        cells = [cell.rjust(w) if i in numeric else cell.ljust(w) for i, (cell, w) in enumerate(zip(line, widths))]
        print("  ".join(cells).rstrip(), file=out)


def _number(value: float) -> str:
    """Quantities as people write them: 1200, not 1200.0; 0.25 stays 0.25."""
    return str(int(value)) if float(value).is_integer() else format(value, ".10g")
