"""The agent's Unix socket: local producers' main way in.

The socket file is created private (umask 0o177) and only then opened up to
``socket.mode`` and ``socket.group``, so it is never reachable by others even
for an instant.  A socket file left by a killed agent is removed; one that
still answers belongs to a live agent and is left alone.
"""

from __future__ import annotations

import asyncio
import grp
import os
import socket
import stat
import struct
from typing import Awaitable, Optional, Tuple

from doow_track_agent.secure_files import ensure_directory
from doow_track_agent.sources import STREAM_LIMIT, SourceError
from doow_track_agent.sources.producers import Producers
from doow_track_agent.stats import Source

_PEERCRED = struct.Struct("3i")


def _remove_stale(path: str) -> None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(mode):
        raise SourceError(f"socket.path {path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)
        return
    finally:
        probe.close()
    raise SourceError(f"another process is already listening on socket.path {path}")


def _group_id(group: Optional[str]) -> int:
    if not group:
        return -1
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise SourceError(f"socket.group {group!r} does not exist") from None


def _peer(writer: asyncio.StreamWriter) -> Tuple[str, str]:
    """(``socket:pid N``, ``uid N``): which local process sent a line (for the log), and whose it is
    (what producers.maxConnectionsPerSource counts)."""
    sock = writer.get_extra_info("socket")
    try:
        pid, uid, _ = _PEERCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size))
    except (OSError, AttributeError):
        return "socket", "socket"
    return f"socket:pid {pid}", f"uid {uid}"


def _serve(producers: Producers, source: Source, reader: asyncio.StreamReader,
           writer: asyncio.StreamWriter) -> Awaitable[None]:
    origin, peer = _peer(writer)
    return producers.serve(reader, writer, source, origin, peer=peer)


class UnixSource:
    """A listening socket file; ``close`` removes the file if it is still ours."""

    def __init__(self, path: str, mode: int, group: Optional[str]) -> None:
        self.path = path
        self.mode = mode
        self.group = group
        self._server: Optional[asyncio.AbstractServer] = None
        self._inode: Optional[int] = None

    async def start(self, producers: Producers) -> None:
        """Bind; raises SourceError, or UnsafePath when another user controls the socket's directory."""
        gid = _group_id(self.group)  # fail before touching the filesystem
        source = Source("socket", self.path)
        try:
            # A directory we create lets socket.group through (0750 + group): the socket's own mode decides.
            ensure_directory(os.path.dirname(os.path.abspath(self.path)), "the directory of socket.path", 0o750, gid)
            _remove_stale(self.path)
            previous = os.umask(0o177)
            try:
                self._server = await asyncio.start_unix_server(
                    lambda r, w: _serve(producers, source, r, w), self.path, limit=STREAM_LIMIT, backlog=128)
            finally:
                os.umask(previous)
            self._inode = os.stat(self.path).st_ino
        except OSError as exc:
            self.close()
            raise SourceError(f"cannot listen on socket.path {self.path}: {exc.strerror}") from None
        try:
            self.set_access(self.mode, self.group)
        except SourceError:
            self.close()
            raise
        producers.stats.add_source(source)

    def set_access(self, mode: int, group: Optional[str]) -> None:
        """Apply ``socket.mode`` and ``socket.group`` (at start, and on reload without rebinding)."""
        gid = _group_id(group)
        try:
            os.chown(self.path, -1, gid)
            os.chmod(self.path, mode)
        except OSError as exc:
            raise SourceError(f"cannot set socket.mode/group on {self.path}: {exc.strerror}") from None
        self.mode, self.group = mode, group

    def close(self) -> None:
        if self._server is not None:
            self._server.close()  # stops listening; open connections stay with Producers
            self._server = None
        try:
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)
        except OSError:
            pass
        self._inode = None
