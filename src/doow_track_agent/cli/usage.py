"""The usage rule every ``doow-track`` parser follows: bad usage exits 64, not argparse's 2.

Kept apart (stdlib only) so that the dispatcher stays fast to import.
"""

from __future__ import annotations

import argparse
import sys

from doow_track_agent.exits import EX_USAGE


class UsageParser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; sysexits says 64, which scripts can tell from 65.

    Subparsers inherit the class, so every command gets the same rule.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EX_USAGE, f"{self.prog}: error: {message}\n")
