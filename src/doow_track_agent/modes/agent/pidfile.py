"""The agent's pidfile, held with a kernel lock (``fcntl.flock``) for the life of the process.

A lock rather than "the file exists" is what tells a running agent from a
stale pidfile: the kernel drops the lock when the process dies, even after
``kill -9``, so a leftover file is recognised and taken over, and a second
agent is refused while the first one lives.  (python-daemon's own
``TimeoutPIDLockFile`` needs the deprecated ``lockfile`` package and cannot
tell a stale file after ``kill -9``.)
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import time
from typing import Optional

from doow_track_agent import identity
from doow_track_agent.secure_files import open_private

log = logging.getLogger(__name__)

_RETRY_SECONDS = 1.0


class PidfileLocked(Exception):
    """Another live process holds the pidfile."""

    def __init__(self, path: str, pid: Optional[int]) -> None:
        self.path = path
        self.pid = pid
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"another doow-track agent ({holder}) is running with pidfile {path}")


def _read_pid(fd: int) -> Optional[int]:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 64).decode("ascii", "replace").strip()
    return int(text) if text.isdigit() else None


def _same_file(fd: int, path: str) -> bool:
    """False when the path was unlinked or replaced after we opened it (a racing agent's exit)."""
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (mine.st_dev, mine.st_ino) == (on_disk.st_dev, on_disk.st_ino)


class PidFile:
    """Context manager (the shape python-daemon's ``pidfile`` option expects)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.stale_pid: Optional[int] = None  # set when a dead agent's pidfile was taken over
        self._fd: Optional[int] = None

    def __enter__(self) -> "PidFile":
        self.acquire()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Lock the pidfile and write our pid; raise PidfileLocked if a live agent holds it."""
        deadline = time.monotonic() + _RETRY_SECONDS
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o755, exist_ok=True)
        while True:
            fd = open_private(self.path, os.O_RDWR | os.O_CREAT, "pidfile", 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _read_pid(fd)
                os.close(fd)
                # An empty file means its holder is starting, or a reader probes it: ask again briefly.
                if pid is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise PidfileLocked(self.path, pid) from None
            if _same_file(fd, self.path):
                break
            os.close(fd)
        stale = _read_pid(fd)
        if stale != os.getpid():
            self.stale_pid = stale  # reported by the agent once its log is open
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the file while still holding the lock, so no newcomer sees it half-gone."""
        if self._fd is None:
            return
        try:
            if _same_file(self._fd, self.path):
                os.unlink(self.path)
        except OSError as exc:
            log.warning("could not remove pidfile %s: %s", self.path, exc.strerror)
        os.close(self._fd)
        self._fd = None


def running_pid(path: str) -> Optional[int]:
    """The pid written in ``path`` while something holds its lock, or None (no file, or a stale one).

    Taken on trust: what is to be signalled comes from ``trusted_pid``.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.EACCES):
            return None
        if exc.errno == errno.ELOOP:
            raise identity.Untrusted(f"pidfile {path} is a symlink; not used to find the agent") from None
        raise
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def trusted_pid(path: str) -> Optional[int]:
    """``running_pid``, once ``identity`` vouches for it; None when that process is already exiting.

    Raises identity.Untrusted when the file names a pid that must not be
    signalled: one that does not hold the lock, is not doow-track, or runs
    as neither the file's owner nor root.
    """
    pid = running_pid(path)
    if pid is None or not process_alive(pid):
        return None
    identity.check_pidfile_holder(path, pid, os.stat(path).st_uid)
    return pid


def process_alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie (exited, not yet reaped) counts as gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            state = handle.read().rpartition(b")")[2].split()[0]
    except (OSError, IndexError):
        return True
    return state != b"Z"
