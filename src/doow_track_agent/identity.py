"""Is this pid (or socket) really our agent?  What ``stop``, ``reload``, ``status`` and ``send`` check before believing one.

A pid reaches these commands from a pidfile or from the health listener's
``/status``; both can be planted by another local user (a pidfile they
created and lock, a listener they bound first).  A pid is only signalled
when it is a doow-track process and, for a pidfile, holds the file's lock
(``/proc/locks``) and runs as the file's owner or root; for ``/status``,
every socket listening on the health port belongs to the pid's user
(``/proc/net/tcp``); for the agent's Unix socket, the process at the other
end (``SO_PEERCRED``) runs as us or root.  Linux only: elsewhere the /proc checks are skipped,
as there is nothing to read them from.
"""

from __future__ import annotations

import os
import socket
import stat
import struct
from typing import List, Optional, Set

from doow_track_agent.secure_files import owner_name, trusted_uid

_PROC = "/proc"
_TCP_LISTEN = "0A"  # include/net/tcp_states.h: TCP_LISTEN


class Untrusted(Exception):
    """A pid claimed to be the agent's that must not be signalled; the message says why."""


def _linux() -> bool:
    return os.path.isdir(os.path.join(_PROC, "self"))


def command_line(pid: int) -> List[str]:
    """argv of ``pid`` (empty when it is gone or unreadable)."""
    try:
        with open(f"{_PROC}/{pid}/cmdline", "rb") as handle:
            return [arg.decode("utf-8", "replace") for arg in handle.read().split(b"\0") if arg]
    except OSError:
        return []


def is_doow_track(pid: int) -> bool:
    """True when ``pid`` runs the ``doow-track`` script or ``python -m doow_track_agent``."""
    if not _linux():
        return True
    argv = command_line(pid)[:4]
    return any(os.path.basename(arg) == "doow-track" or arg == "doow_track_agent" for arg in argv)


def process_uid(pid: int) -> Optional[int]:
    """The effective uid of ``pid`` (from /proc/PID/status: readable even for non-dumpable processes)."""
    try:
        with open(f"{_PROC}/{pid}/status") as handle:
            for line in handle:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, IndexError, ValueError):
        return None
    return None


def lock_holders(path: str) -> Optional[Set[int]]:
    """Pids holding an flock on ``path``; None when /proc/locks cannot be read (not Linux)."""
    try:
        info = os.stat(path)
        with open(f"{_PROC}/locks") as handle:
            lines = handle.read().splitlines()
    except OSError:
        return None
    device = f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}:{info.st_ino}"
    holders = set()
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            holders.add(int(fields[4]))
    return holders


def listener_uids(port: int) -> Optional[Set[int]]:
    """The uids owning TCP sockets listening on ``port``; None when /proc/net/tcp is missing."""
    uids: Set[int] = set()
    found = False
    for table in ("tcp", "tcp6"):
        try:
            with open(f"{_PROC}/net/{table}") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        found = True
        for row in rows:
            fields = row.split()
            if len(fields) > 7 and fields[3] == _TCP_LISTEN and int(fields[1].rsplit(":", 1)[1], 16) == port:
                uids.add(int(fields[7]))
    return uids if found else None


def check_listener(pid: int, port: int) -> None:
    """Raise Untrusted unless ``pid`` is a doow-track process whose user owns every listener on ``port``."""
    if not _linux():
        return
    uids = listener_uids(port)
    uid = process_uid(pid)
    if uid is None or not is_doow_track(pid):
        raise Untrusted(f"the health listener on port {port} says the agent is pid {pid}, "
                        "which is not a doow-track process")
    if uids is not None and uids != {uid}:
        raise Untrusted(f"the health listener on port {port} is held by uid {sorted(uids)}, not by the user of "
                        f"pid {pid} (uid {uid}) it names: another program answers there")


def check_pidfile_holder(path: str, pid: int, owner: int) -> None:
    """Raise Untrusted unless ``pid`` holds ``path``'s lock, is doow-track, and runs as ``owner`` (or owner is root)."""
    holders = lock_holders(path)
    where = f"pidfile {path} (owner {owner_name(owner)})"
    if holders is not None and pid not in holders:
        raise Untrusted(f"{where} names pid {pid}, which does not hold its lock")
    if not is_doow_track(pid):
        raise Untrusted(f"{where} names pid {pid}, which is not a doow-track process")
    uid = process_uid(pid)
    if owner != 0 and uid is not None and uid != owner:
        raise Untrusted(f"pidfile {path} (owner {owner_name(owner)}) names pid {pid}, which runs as "
                        f"{owner_name(uid)}")


def socket_directory_owner(path: str) -> Optional[int]:
    """The uid that alone (with root) can create ``path``: the owner of its directory, when
    that directory is writable by nobody else; None otherwise (a shared directory)."""
    try:
        info = os.stat(os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return None
    return info.st_uid


def check_socket_peer(sock: socket.socket, path: str) -> None:
    """Raise Untrusted unless the process serving the connected Unix socket ``sock`` runs as us,
    root, or the agent's own user: a doow-track process whose user owns the socket's directory when
    nobody else may create entries there (the Ansible role runs the agent as a system user with such
    a directory).

    A socket at the agent's path may have been bound by another local user
    (a stale path in a shared directory): their program would answer "ok"
    and the events would be lost.
    """
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return
    pid, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    if not trusted_uid(uid) and not (uid == socket_directory_owner(path) and is_doow_track(pid)):
        raise Untrusted(f"the socket {path} is served by {owner_name(uid)} (pid {pid}), not by the agent's user "
                        "or root: another program answers there")
