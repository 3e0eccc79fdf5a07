"""Files and directories on a shared host: opened only when nobody else controls them.

Every file the agent or pipe mode writes (pidfile, ``log.file``, outbox,
rejects) is opened through ``open_private``, and every state directory
(socket, spool, pidfile and log directories, with their parents) is checked
by ``ensure_directory``.  Another local user must not be able to make us
write through their symlink, append to their file, or swap our socket or
spool under us; ``fs.protected_symlinks`` and friends are not relied upon.

"Trusted" means owned by the effective user or by root.  A directory is
safe when it is trusted and nobody else can write to it: not writable by
others (nor by a group other than root's or ours) unless it has the sticky
bit, which keeps others from renaming or deleting what we created.
"""

from __future__ import annotations

import errno
import fcntl
import os
import pwd
import stat
from typing import IO, Optional


class UnsafePath(Exception):
    """A path another local user controls; the message names it, its owner and the fix."""


def owner_name(uid: int) -> str:
    """``name (uid N)``, or ``uid N`` for a uid without a passwd entry."""
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


def trusted_uid(uid: int) -> bool:
    return uid in (0, os.geteuid())


def _writable_by_others(info: os.stat_result) -> bool:
    if info.st_mode & stat.S_ISVTX:
        return False
    group_writes = info.st_mode & stat.S_IWGRP and info.st_gid not in (0, os.getegid())
    return bool(info.st_mode & stat.S_IWOTH or group_writes)


def check_directory(path: str, what: str) -> None:
    """Refuse ``path`` (an existing directory) when another user controls it or any directory above it.

    Symlinks on the way are followed only when root or we own them.
    Raises UnsafePath naming the directory, its owner and how to fix it.
    """
    current = "/"
    for part in [p for p in os.path.abspath(path).split("/") if p]:
        current = os.path.join(current, part)
        link = os.lstat(current)
        if stat.S_ISLNK(link.st_mode) and not trusted_uid(link.st_uid):
            raise UnsafePath(f"{what} {path}: {current} is a symlink owned by {owner_name(link.st_uid)}; "
                             "use a path without it")
    real = os.path.realpath(path)
    current = "/"
    for part in [""] + [p for p in real.split("/") if p]:
        current = os.path.join(current, part)
        info = os.stat(current)
        if not trusted_uid(info.st_uid):
            raise UnsafePath(f"{what} {path}: directory {current} is owned by {owner_name(info.st_uid)}, not by "
                             f"{_trusted_owners()}; remove it or chown it to {_me()}")
        if _writable_by_others(info):
            raise UnsafePath(f"{what} {path}: directory {current} (owner {owner_name(info.st_uid)}, mode "
                             f"{stat.S_IMODE(info.st_mode):04o}) is writable by other users; "
                             f"chmod go-w {current} (or chmod +t for a shared directory such as /tmp)")


def _trusted_owners() -> str:
    return "root" if os.geteuid() == 0 else f"{owner_name(os.geteuid())} or root"


def _me() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


def ensure_directory(path: str, what: str, mode: int = 0o750, group: Optional[int] = None) -> None:
    """Create ``path`` (and missing parents, ``mode``) if needed, then ``check_directory`` it.

    ``group``: a gid given to the directories this call creates (with group
    search permission), so that a group such as ``socket.group`` can reach
    a socket inside.  Raises UnsafePath, or OSError when it cannot be made.
    """
    missing = []
    current = os.path.abspath(path)
    while not os.path.lexists(current):
        missing.append(current)
        current = os.path.dirname(current)
    if missing:
        check_directory(current, what)  # nothing is made inside a directory someone else controls
    for directory in reversed(missing):
        try:
            os.mkdir(directory, mode)
        except FileExistsError:
            continue  # made meanwhile by someone: the check below decides whether it is ours
        if group is not None and group >= 0:
            os.chown(directory, -1, group)
            os.chmod(directory, mode | stat.S_IXGRP)
    check_directory(path, what)


def open_private(path: str, flags: int, what: str, mode: int = 0o600) -> int:
    """Open a file we write (``flags`` as for os.open) without following a symlink, and only if it is ours.

    The parent directory must pass ``check_directory``.  A FIFO or device is
    refused without blocking; ``os.devnull`` (asked for by name) is opened
    as is.  Returns the descriptor (close-on-exec); raises UnsafePath naming
    the path and its owner, or OSError.
    """
    if os.path.abspath(path) == os.devnull:
        return os.open(os.devnull, (flags & ~os.O_CREAT) | os.O_CLOEXEC)  # the explicit way to discard
    check_directory(os.path.dirname(os.path.abspath(path)), f"the directory of {what}")
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, mode)
    except OSError as error:
        # ELOOP, or EACCES where fs.protected_symlinks / protected_regular stop it first
        if error.errno in (errno.ELOOP, errno.EACCES) and os.path.islink(path):
            owner = owner_name(os.lstat(path).st_uid)
            raise UnsafePath(f"{what} {path} is a symlink (owner {owner}); refusing to write through it: "
                             "remove it or choose another path") from None
        if error.errno == errno.ENXIO:  # a FIFO without a reader, a device without its driver
            raise UnsafePath(f"{what} {path} is not a regular file; remove it or choose another path") from None
        raise
    try:
        _check_open_file(fd, path, what)
    except UnsafePath:
        os.close(fd)
        raise
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return fd


def _check_open_file(fd: int, path: str, what: str) -> None:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(f"{what} {path} is not a regular file; remove it or choose another path")
    if not trusted_uid(info.st_uid):
        raise UnsafePath(f"{what} {path} belongs to {owner_name(info.st_uid)}, not to {_trusted_owners()}; "
                         "remove it or choose another path")
    if _writable_by_others(info):
        raise UnsafePath(f"{what} {path} (mode {stat.S_IMODE(info.st_mode):04o}) is writable by other users; "
                         f"chmod go-w {path}")


def opener(what: str, mode: int = 0o600):
    """An ``opener`` for the built-in ``open()`` that goes through ``open_private``."""
    return lambda path, flags: open_private(path, flags, what, mode)


def open_append(path: str, what: str) -> IO[bytes]:
    """A binary append-only handle on a private file (created 0600)."""
    return open(path, "ab", opener=opener(what))


def open_replacing(path: str, what: str, mode: int = 0o600) -> IO[bytes]:
    """A binary write handle on a private file, emptied only once ``open_private`` found it ours.

    (``O_TRUNC`` at open would empty someone else's file before the check refuses it.)
    """
    fd = open_private(path, os.O_WRONLY | os.O_CREAT, what, mode)
    os.ftruncate(fd, 0)
    return os.fdopen(fd, "wb")


def write_atomically(path: str, data: bytes, what: str, mode: int = 0o600) -> None:
    """Write ``data`` to a private temporary file beside ``path``, then rename it over ``path``.

    A reader polling for ``path`` never sees it half written; the rename
    replaces whatever name was there (a planted symlink included) without
    following it.  Raises UnsafePath or OSError.
    """
    temporary = f"{path}.tmp{os.getpid()}"
    with os.fdopen(open_private(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, what, mode), "wb") as handle:
        handle.write(data)
    os.replace(temporary, path)


def open_regular(path: str) -> IO[bytes]:
    """A binary read handle on ``path`` when it is a regular file (an events file: finite, seekable).

    A FIFO is opened without blocking and refused like a device or a
    directory, so a hostile path can neither hang the reader nor feed it
    without end (``/dev/zero``).  Raises OSError; its ``strerror`` says
    "not a regular file ..." for those.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file (a FIFO, device or directory); give a file", path)
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    return os.fdopen(fd, "rb")


def open_trusted_input(path: str, what: str) -> int:
    """Open a file we read and count as ours (a tailed file): only one that we or root own.

    Another user's file would be billed as ours; their symlink to our file
    would read our data out under their name, so a symlink is followed only
    when we or root own it, and the file reached must be ours too (fstat
    after open: no race).  Opened with O_NONBLOCK, so that a FIFO cannot
    block; whether it is a regular file is the caller's to judge.  Returns a
    read-only, non-blocking descriptor (close-on-exec); raises UnsafePath
    naming the path and the owner, or OSError.
    """
    link = os.lstat(path)
    follow = stat.S_ISLNK(link.st_mode)
    if follow and not trusted_uid(link.st_uid):
        raise UnsafePath(f"{what} {path} is a symlink owned by {owner_name(link.st_uid)}, not by "
                         f"{_trusted_owners()}; refusing to read through it")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW))
    owner = os.fstat(fd).st_uid
    if not trusted_uid(owner):
        os.close(fd)
        raise UnsafePath(f"{what} {path} belongs to {owner_name(owner)}, not to {_trusted_owners()}; "
                         "its lines are not read (chown it to the agent's user if they are yours)")
    return fd


def require_regular(*paths: Optional[str]) -> None:
    """Raise OSError (as ``open_regular``) unless each given path is a regular file: for files a library
    reads by name (OpenSSL's PEM files), which would block on a FIFO or read a device without end."""
    for path in paths:
        if path:
            open_regular(path).close()
