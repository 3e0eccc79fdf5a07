"""The ``doow-track`` command line: a thin dispatcher that imports only what a command needs.

``doow-track`` with no command runs ``commands/run.py``: pipe mode, or the
agent when ``--pidfile``/``--daemon`` is given.  Each named command lives in
its own module under ``commands/`` exposing ``register(subparsers)``; only
the one being run is imported (see ``registry``).  ``options`` and ``pipe``
hold what several commands share.
"""

from __future__ import annotations

import os
import sys
from importlib import import_module
from typing import List, Optional

from doow_track_agent import __version__, collector, coredumps, stopping, streams
from doow_track_agent.cli.registry import COMMANDS, DEFAULT_COMMAND, REPORTS_DELIVERY
from doow_track_agent.cli.usage import UsageParser
from doow_track_agent.exits import EX_INTERRUPTED, EX_IOERR, EX_OK, EX_SOFTWARE, CommandError


def _run_command(name: str, argv: List[str]) -> int:
    parser = UsageParser(prog="doow-track")
    subparsers = parser.add_subparsers(dest="command", required=True)
    import_module(COMMANDS[name][0]).register(subparsers)
    args = parser.parse_args([name, *argv])
    status = int(args.func(args) or 0)
    failed = getattr(sys.stdout, "failed", None)
    # A command's output is its result, except where the status reports delivery (`send`, like pipe mode):
    # there a lost report must not invite a re-send.
    if status == EX_OK and failed and name not in REPORTS_DELIVERY:
        raise CommandError(EX_IOERR, f"cannot write stdout: {failed}; the output is incomplete")
    return status


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the console script and of ``python -m doow_track_agent``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    streams.guard()
    coredumps.disable()
    if argv[:1] in (["--version"], ["-v"]):
        print(f"doow-track {__version__}")
        return EX_OK
    try:
        if argv and argv[0] in COMMANDS:
            return _run_command(argv[0], argv[1:])
        # Pipe mode and the agent act on every stop signal (outbox, drain); noted from here, before the
        # imports and start-up work, so that one arriving meanwhile is acted on too (see ``stopping``).
        stopping.note_early()
        collector.starting()  # pipe mode and the agent call collector.settled() once started
        try:
            return int(import_module(DEFAULT_COMMAND).main(argv))
        finally:
            collector.at_exit()
    except CommandError as error:
        sys.stderr.write(f"doow-track: {error}\n")
        return error.code
    except KeyboardInterrupt:
        return EX_INTERRUPTED
    except Exception as error:  # a bug: say so with its own status, never one a check or a line could mean
        if os.environ.get("DOOW_TRACK_DEBUG"):
            import traceback

            traceback.print_exc()
        sys.stderr.write(f"doow-track: internal error: {type(error).__name__}: {error} "
                         "(set DOOW_TRACK_DEBUG=1 for the traceback)\n")
        return EX_SOFTWARE
