"""Exit statuses of every ``doow-track`` command: one table, named as in BSD's sysexits.h.

Scripts tell outcomes apart by these numbers, so each keeps one meaning
across commands.  ``MEANINGS`` is what ``docs/cli-contract.md``'s table is
generated from (``python -m doow_track_agent.docgen docs/cli-contract.md``).
Besides sysexits: 1 is a failed verdict (a check, not an error), 3 is the
LSB init-script status "not running", 130 is the shell's 128 + SIGINT.
"""

from __future__ import annotations

from typing import Dict

EX_OK = 0
EX_FAILED = 1
EX_NOT_RUNNING = 3
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78
EX_INTERRUPTED = 130

MEANINGS: Dict[int, str] = {
    EX_OK: "success",
    EX_FAILED: "`doctor`: at least one check failed; `demo`: not every valid event arrived",
    EX_NOT_RUNNING: "`status`, `reload`: no agent is running",
    EX_USAGE: "usage error",
    EX_DATAERR: "some events invalid or rejected by the API (the rest delivered/spooled)",
    EX_NOINPUT: "input missing: `check --events` file unreadable, `deadletter` without a spool, "
                "`receiver summary` without a database",
    EX_UNAVAILABLE: "no agent reachable (`send`), the agent did not come up (start), or what claims to be the "
                    "agent (a `/status` answer, a pidfile) is not trusted: nothing signalled (`stop`, `reload`, "
                    "`status`)",
    EX_SOFTWARE: "internal error, a bug (the message names it): pipe mode still writes what it read but did not "
                 "deliver to the outbox; the agent stopped because its spool writer or delivery could not go on",
    EX_CANTCREAT: "an output file cannot be created (`deadletter export --output`: a directory, a device, no "
                  "permission; "
                  "the message names the path)",
    EX_IOERR: "output could not be written (a full disk, `> /dev/full`, a closed pipe) by a command whose output "
              "is its result (`deadletter export`, `schema`, `status --json` ...; never pipe mode or `send`, whose "
              "status reports delivery); the message names the path or stdout",
    EX_TEMPFAIL: "delivery failed after retries (outbox written) / spool full; `stop`, `reload`: no answer in time",
    EX_NOPERM: "API key rejected (401/403)",
    EX_CONFIG: "bad configuration, a spool written by a newer doow-track, or a file or state directory another "
               "user controls (the message names it, its owner and the fix)",
    EX_INTERRUPTED: "interrupted (Ctrl-C) before the command finished",
}


class CommandError(Exception):
    """A command cannot go on: ``code`` is its exit status, the message what to tell the user.

    Raised below the command line instead of exiting; ``cli.main`` prints
    ``doow-track: <message>`` on stderr and returns ``code``.
    """

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
