"""No core dumps: a process holding the API key must not leave it in a core file.

Set once at start by every command (pipe mode, the agent, ``send``,
``doctor`` ...): ``RLIMIT_CORE`` 0 stops the kernel writing a core, and
``PR_SET_DUMPABLE`` 0 (Linux) also keeps other processes of the same user
from reading our memory or environment through /proc or ptrace.  Both are
best effort: where they do not exist nothing happens.
"""

from __future__ import annotations

import resource
import sys

_PR_SET_DUMPABLE = 4  # linux/prctl.h


def disable() -> None:
    """Turn core dumps off for this process and its children (never raises)."""
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    except (ValueError, OSError):
        pass
    if not sys.platform.startswith("linux"):
        return
    import ctypes  # here: only Linux has prctl

    try:
        # The process's own symbols, which include libc's: ctypes.util.find_library would run
        # ldconfig in a subprocess on every command, --version included.
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        pass
