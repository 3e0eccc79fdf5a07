"""An events file judged by a dry run of pipe mode: what ``check --events`` and doctor's events check report.

The dry run uses the same intake as a real run, so a file that checks clean
is exactly a file pipe mode would accept (nothing is sent).
"""

from __future__ import annotations

import os
import sys
from typing import Optional

from doow_track_agent import config
from doow_track_agent.modes.pipe.run import PipeOptions, PipeRun
from doow_track_agent.secure_files import open_regular


def check_events(path: str) -> Optional[dict]:
    """Validate an events file (a regular file) as a dry run of pipe mode; None when it cannot be read."""
    try:
        stream = open_regular(path)
    except OSError as error:
        sys.stderr.write(f"doow-track: cannot read {path}: {error.strerror}\n")
        return None
    with stream:
        options = PipeOptions(outbox_path=os.devnull, rejects_path=os.devnull, dry_run=True, quiet=True,
                              origin=path)
        summary = PipeRun(config.load(None, {}), stream, options, sys.stderr).execute()
    return {"lines_read": summary.lines_read, "valid": summary.valid, "invalid": summary.invalid,
            "invalid_by_kind": summary.invalid_by_kind, "errors": summary.errors}
