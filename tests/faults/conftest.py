"""The fault suite's ledger: every fault test records what it sent, what was acknowledged and what
arrived, and the run ends with one table (fault, iterations, sent, acknowledged, stored,
duplicates absorbed, lost, seconds)."""

from __future__ import annotations

import time
from typing import Iterator, List

import pytest

ROWS: List[dict] = []


class FaultLedger:
    """Collects one row for the table; ``lost`` is acknowledged events that never arrived."""

    def __init__(self, fault: str) -> None:
        self.row = {"fault": fault, "iterations": 0, "sent": 0, "acknowledged": 0, "stored": 0,
                    "duplicates": 0, "lost": 0, "seconds": 0.0}
        self._started = time.monotonic()

    def record(self, *, sent: int, acknowledged: int, stored: int, duplicates: int, lost: int,
               iterations: int = 1) -> None:
        self.row.update(iterations=self.row["iterations"] + iterations, sent=self.row["sent"] + sent,
                        acknowledged=self.row["acknowledged"] + acknowledged, stored=self.row["stored"] + stored,
                        duplicates=self.row["duplicates"] + duplicates, lost=self.row["lost"] + lost)


@pytest.fixture
def ledger(request) -> Iterator[FaultLedger]:
    entry = FaultLedger(request.node.name.replace("test_", "", 1))
    yield entry
    entry.row["seconds"] = time.monotonic() - entry._started
    if entry.row["iterations"]:
        ROWS.append(entry.row)


def table(rows: List[dict]) -> List[str]:
    """The fault table's lines (also printed by bench/soak.py)."""
    lines = [f"{'fault':<52} {'iter':>5} {'sent':>8} {'acked':>8} {'stored':>8} {'dups':>6} {'lost':>5} {'secs':>7}"]
    for row in rows:
        lines.append(f"{row['fault'][:52]:<52} {row['iterations']:>5} {row['sent']:>8} {row['acknowledged']:>8} "
                     f"{row['stored']:>8} {row['duplicates']:>6} {row['lost']:>5} {row['seconds']:>7.1f}")
    return lines


def pytest_terminal_summary(terminalreporter) -> None:
    if not ROWS:
        return
    terminalreporter.write_line("")
    for line in table(ROWS):
        terminalreporter.write_line(line)
