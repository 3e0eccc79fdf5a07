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
from typing import TYPE_CHECKING, Callable, List, Tuple

if TYPE_CHECKING:  # imported first thing by the command line: --help and --version pay for neither
    import asyncio
    import socket

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



def hand_over(loop: asyncio.AbstractEventLoop, on_signal: Callable[[int], None],
              signals: Tuple[int, ...] = TERMINATING) -> Callable[[], None]:
    """From now on each of ``signals`` calls ``on_signal(signum)`` in ``loop``; returns the undo.

    What ``loop.add_signal_handler`` does, without its cost: asyncio checks
    ``signal.valid_signals()`` on every add and remove, 7 ms of a one-event
    run for our 44 signals.  As asyncio does, a wake-up descriptor makes the
    loop's poll return even when the kernel delivers the signal to another
    thread (pipe mode's reader).  The undo puts back the noting handler of
    ``note_early``: a signal after the run is remembered, not fatal.  Call
    both from the main thread (Python's rule for signal handlers).
    """
    import socket

    wake_read, wake_write = socket.socketpair()
    for end in (wake_read, wake_write):
        end.setblocking(False)
    loop.add_reader(wake_read.fileno(), _drain, wake_read)
    previous_wakeup = signal.set_wakeup_fd(wake_write.fileno(), warn_on_full_buffer=False)

    def forward(signum: int, _frame: object) -> None:
        loop.call_soon_threadsafe(on_signal, signum)

    for signum in signals:
        signal.signal(signum, forward)

    def undo() -> None:
        note_early(signals)
        signal.set_wakeup_fd(previous_wakeup)
        loop.remove_reader(wake_read.fileno())
        wake_read.close()
        wake_write.close()

    return undo


def _drain(wake_read: "socket.socket") -> None:
    """The bytes are only the wake-up; the Python-level handler does the work."""
    try:
        while wake_read.recv(4096):
            pass
    except OSError:  # BlockingIOError: drained
        pass
