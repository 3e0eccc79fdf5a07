"""Events check: ``--events FILE`` validated line by line by a dry run of pipe mode (``doow-track check``'s)."""

from __future__ import annotations

from typing import Iterator

from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.modes.pipe.check import check_events

SHOWN_ERRORS = 3


def checks(subject: Subject) -> Iterator[Check]:
    path = subject.events_path
    if not path:
        yield Check("events.file", SKIP, "no --events FILE given")
        return
    result = check_events(path)
    if result is None:
        yield Check("events.file", FAIL, f"{path}: cannot be read", "check the path and its permissions")
        return
    counted = f"{path}: {result['lines_read']} lines, {result['valid']} valid, {result['invalid']} invalid"
    if result["invalid"]:
        kinds = ", ".join(f"{kind} {number}" for kind, number in sorted(result["invalid_by_kind"].items()))
        shown = "; ".join(f"line {error['line']}: {error['path']}: {error['message']}"
                          for error in result["errors"][:SHOWN_ERRORS])
        yield Check("events.file", FAIL, f"{counted} ({kinds}); {shown}",
                    "every line needs metric, quantity (a number > 0) and license_id; "
                    f"doow-track check --events {path} lists every bad line")
    elif not result["lines_read"]:
        yield Check("events.file", WARN, f"{path}: empty")
    else:
        yield Check("events.file", OK, counted)
