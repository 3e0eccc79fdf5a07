"""Check records and how they are printed: one line per check, or one JSON object.

A check is ``ok``, ``warn`` (works, but the production checklist says
otherwise), ``fail`` (a reason events do not arrive) or ``skip`` (does not
apply here, or an earlier failure makes it meaningless).  Only ``fail``
changes the exit status, so a check that cannot apply never fails a run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Dict, Iterable, List, Optional, Sequence

from doow_track_agent.exits import EX_FAILED, EX_OK

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
STATUSES = (OK, WARN, FAIL, SKIP)


@dataclass(frozen=True)
class Check:
    """One finding: what was checked, how it went, what was seen, and what to do about it."""

    name: str
    status: str
    detail: str
    hint: Optional[str] = None


def skipped(names: Iterable[str], reason: str) -> List[Check]:
    """Checks an earlier failure makes meaningless: skipped, so one cause is reported once."""
    return [Check(name, SKIP, reason) for name in names]


def verdict(checks: Sequence[Check]) -> str:
    """The worst status that counts: fail, else warn, else ok."""
    statuses = {check.status for check in checks}
    return FAIL if FAIL in statuses else WARN if WARN in statuses else OK


def exit_code(checks: Sequence[Check]) -> int:
    return EX_FAILED if verdict(checks) == FAIL else EX_OK


def counts(checks: Sequence[Check]) -> Dict[str, int]:
    return {status: sum(1 for check in checks if check.status == status) for status in STATUSES}


def as_json(checks: Sequence[Check], facts: dict) -> str:
    """The ``--json`` document: the overall result, the facts doctor worked from, every check."""
    document = {"result": verdict(checks), "exit_code": exit_code(checks), "counts": counts(checks),
                **facts, "checks": [asdict(check) for check in checks]}
    return json.dumps(document)


def as_text(checks: Sequence[Check]) -> str:
    """Aligned lines, warnings and failures in capitals so that they stand out, hints under them."""
    shown = _collapse_skips(checks)
    width = max(len(check.name) for check in shown)
    lines: List[str] = []
    for check in shown:
        label = check.status.upper() if check.status in (WARN, FAIL) else check.status
        lines.append(f"{label:<4}  {check.name:<{width}}  {check.detail}")
        if check.hint:
            lines.append(f"{'':<4}  {'':<{width}}  hint: {check.hint}")
    tally = ", ".join(f"{number} {status}" for status, number in counts(checks).items())
    lines.append(f"doctor: {tally}: {verdict(checks).upper()}")
    return "\n".join(lines)


def _collapse_skips(checks: Sequence[Check]) -> List[Check]:
    """``agent.*`` for a run of a group's checks skipped for one reason: one cause, one line."""
    out: List[Check] = []
    for check in checks:
        group = check.name.split(".", 1)[0]
        last = out[-1] if out else None
        if (last and check.status == SKIP and last.status == SKIP and last.detail == check.detail
                and last.name.split(".", 1)[0] == group):
            out[-1] = Check(f"{group}.*", SKIP, check.detail, last.hint)
        else:
            out.append(check)
    return out
