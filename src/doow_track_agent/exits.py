"""Exit statuses of every ``doow-track`` command: one table, named as in BSD's sysexits.h.

Scripts tell outcomes apart by these numbers, so each keeps one meaning
across commands; ``docs/cli-contract.md`` lists which command uses which.
"""

from __future__ import annotations

EX_OK = 0            # everything done
EX_FAILED = 1        # the command's check failed (doctor found a failure, demo lost events)
EX_NOT_RUNNING = 3   # status/stop: no agent is running (LSB init-script convention)
EX_USAGE = 64        # bad command line
EX_DATAERR = 65      # some events invalid or refused by the API (the rest were handled)
EX_NOINPUT = 66      # an input file cannot be read
EX_UNAVAILABLE = 69  # no agent reachable, or the agent went away mid-answer
EX_SOFTWARE = 70     # internal error: a bug, reported as such
EX_TEMPFAIL = 75     # not delivered for now: retry later (outbox, full spool, agent still draining)
EX_NOPERM = 77       # the API refused the key
EX_CONFIG = 78       # bad configuration (or a spool this version cannot read)
EX_INTERRUPTED = 130  # interrupted by SIGINT (128 + 2), the shell's convention
