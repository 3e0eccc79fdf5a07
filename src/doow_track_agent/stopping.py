"""The signals that ask a long-running ``doow-track`` to stop, and noting them before anyone can act on them.

Every signal whose default action ends the process (signal(7): "Term" and
"Core") and that another process can send is a request to stop: left to its
default it would end pipe mode with nothing written to the outbox and no
summary, or end the agent without draining.  Left out, on purpose:

- SIGKILL and SIGSTOP, which cannot be caught;
- SIGPIPE and SIGXFSZ, which Python ignores from start-up (writes fail with
  EPIPE / EFBIG instead, and each writer reports that);
- SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP and SIGSYS: raised by a faulting
  instruction or seccomp, where returning from a handler re-runs the fault;
- SIGABRT: ``abort(3)``'s, the crash path (a handler cannot stop it, and
  ``coredumps`` keeps it from writing the key into a core file).
"""

from __future__ import annotations

import signal
from typing import List, Tuple

_NAMES = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGTERM", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGVTALRM",
          "SIGPROF", "SIGIO", "SIGPOLL", "SIGPWR", "SIGSTKFLT", "SIGXCPU", "SIGLOST", "SIGEMT", "SIGINFO")


def _terminating() -> Tuple[int, ...]:
    found = {int(getattr(signal, name)) for name in _NAMES if hasattr(signal, name)}
    if hasattr(signal, "SIGRTMIN"):
        found.update(range(int(signal.SIGRTMIN), int(signal.SIGRTMAX) + 1))
    return tuple(sorted(found))


TERMINATING: Tuple[int, ...] = _terminating()

_early: List[int] = []


def name(signum: int) -> str:
    """``SIGHUP``; ``SIGRTMIN+3`` for a real-time signal (which has no name of its own)."""
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIGRTMIN+{signum - int(signal.SIGRTMIN)}"


def note_early(signals: Tuple[int, ...] = TERMINATING) -> None:
    """From now on, ``signals`` are only remembered, until a run takes them over with ``take_early``.

    Called first thing, before imports and start-up work, so that a signal
    during start-up is acted on by the run (drain, outbox) instead of killing
    the process on the spot.
    """
    for signum in signals:
        signal.signal(signum, _remember)


def _remember(signum: int, _frame: object) -> None:
    _early.append(signum)


def take_early() -> List[int]:
    """The signals noted so far (oldest first), forgotten here: the caller now owns them."""
    taken = list(_early)
    del _early[:]
    return taken

