"""The file tail source: NDJSON files that other programs append to, read exactly once across restarts.

How "exactly once" holds:

* Position: a file's checkpoint (device, inode, a fingerprint of its first
  line, the offset just past the last complete line read, and a hash of the
  bytes before that offset) is committed in the same spool transaction as the
  events of the lines it covers.  After ``kill -9`` both are there or neither
  is, and reading resumes at the committed offset.
* Identity: a tailed line's ``event_id`` (unless the line brings its own) is a
  UUIDv5 of the file's fingerprint, the line's offset and its bytes.  If a
  checkpoint is ever lost, re-reading produces the same ids, which the API
  de-duplicates: a lost checkpoint costs duplicates on the wire, never a
  double count.
* Rotation by rename: the open descriptor keeps the old file; it is read to
  its end before it is closed, and the new file at the path is read from its
  start.  After a restart, a file rotated away with lines still unread is
  found again by its device and inode in the directory it was in.
* Copy-truncate: the file shrinking below the offset, or the bytes before the
  offset changing (rewritten past the old size while the agent was down),
  means new content: it is read from its start.  New content with the same
  first line as the old gets a new ``epoch`` in its fingerprint, so its lines
  cannot take the ids of the old ones.

A partial last line is never read until its newline arrives.  Invalid lines
are logged as ``path:line`` and skipped, and still covered by the checkpoint.
Polling (a few times a second) rather than inotify: stdlib only, and it
works the same on every filesystem.
"""

from __future__ import annotations

import asyncio
import errno
import glob
import hashlib
import logging
import os
import stat
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

from doow_track_agent.buffers.checkpoints import Checkpoint
from doow_track_agent.buffers.spool import Spool, SpoolError
from doow_track_agent.intake import wire
from doow_track_agent.config import Settings
from doow_track_agent.intake.events import Accepted, Intake, Invalid
from doow_track_agent.intake.policy import MAX_LINE_BYTES
from doow_track_agent.secure_files import UnsafePath, open_trusted_input, owner_name
from doow_track_agent.sources.pacing import pace
from doow_track_agent.stats import Source, Stats
from doow_track_agent.supervise import Supervisor

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
BLOCK = 256 * 1024
FINGERPRINT_BYTES = 1024
TAIL_BYTES = 64
ROTATED_GRACE = 5.0      # seconds a rotated-away file stays open at its end for late writes
RETRY_SECONDS = 1.0      # after a spool error or a full spool
_MAGIC = frozenset("*?[")

Identity = Tuple[int, int]  # (st_dev, st_ino)


def patterns(settings: Settings) -> List[str]:
    """The paths (each possibly a glob) that ``input: {"mode": "file"}`` asks to tail."""
    source = settings.input or {}
    if source.get("mode") != "file":
        return []
    return ([source["path"]] if source.get("path") else []) + list(source.get("paths") or [])


def shared_directories(settings: Settings) -> List[str]:
    """Warnings for tailed paths (globs) in a directory other users can create files in (even sticky).

    The tail refuses their files, but a directory only the agent's user can
    write is what keeps a producer's file from being swapped or imitated.
    """
    warnings = []
    for pattern in patterns(settings):
        directory = os.path.dirname(os.path.abspath(pattern))
        while glob.has_magic(directory):
            directory = os.path.dirname(directory)
        try:
            info = os.stat(directory)
        except OSError:
            continue
        if info.st_mode & stat.S_IWOTH or (info.st_mode & stat.S_IWGRP and info.st_gid not in (0, os.getegid())):
            warnings.append(f"input path {pattern}: directory {directory} (owner {owner_name(info.st_uid)}, mode "
                            f"{stat.S_IMODE(info.st_mode):04o}) lets other users create files there; the agent "
                            "skips files it does not own, but tail files from a directory only it can write")
    return warnings


def line_event_id(key: str, offset: int, raw: bytes) -> str:
    """The id a line gets wherever and however often it is read: its file, its place, its bytes."""
    return wire.derived_id(key, offset, raw)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:32]


def _fingerprint(fd: int) -> Optional[str]:
    """A hash of the first line (at most 1 KiB); None until that much is written."""
    head = os.pread(fd, FINGERPRINT_BYTES, 0)
    end = head.find(b"\n")
    if end < 0 and len(head) < FINGERPRINT_BYTES:
        return None
    return _digest(head if end < 0 else head[:end + 1])


def _tail_hash(fd: int, offset: int) -> str:
    start = max(0, offset - TAIL_BYTES)
    return _digest(os.pread(fd, offset - start, start))


class _File:
    """One open file and how far it is spooled (the committed checkpoint)."""

    def __init__(self, fd: int, path: str, identity: Identity, fingerprint: str) -> None:
        self.fd = fd
        self.path = path
        self.identity = identity
        self.fingerprint = fingerprint
        self.epoch = 0
        self.offset = 0
        self.line = 0
        self.tail = _tail_hash(fd, 0)
        self.matched = True          # still at one of the configured paths (False: rotated away)
        self.idle_since = time.monotonic()
        self.scanned = 0             # an overlong line: how far its newline was looked for

    @property
    def key(self) -> str:
        """What event ids derive from: the fingerprint, and the epoch once content was replaced."""
        return self.fingerprint if not self.epoch else f"{self.fingerprint}+{self.epoch}"

    def checkpoint(self, offset: int, line: int) -> Checkpoint:
        return Checkpoint(self.identity[0], self.identity[1], self.fingerprint, self.epoch, offset, line,
                          _tail_hash(self.fd, offset), self.path)

    def resume(self, saved: Checkpoint) -> None:
        """Continue where ``saved`` stopped, unless the content is not the one it describes."""
        size = os.fstat(self.fd).st_size
        if saved.fingerprint == self.fingerprint and saved.offset <= size \
                and saved.tail == _tail_hash(self.fd, saved.offset):
            self.epoch, self.offset, self.line, self.tail = saved.epoch, saved.offset, saved.line, saved.tail
            return
        self.restart(saved.fingerprint, saved.epoch)
        if saved.offset:
            log.warning("%s was rewritten since its checkpoint (copy-truncate?): reading it from the start",
                        self.path)

    def restart(self, old_fingerprint: str, old_epoch: int) -> None:
        """New content in the same file: from the start, with a new epoch if it starts like the old."""
        self.epoch = old_epoch + 1 if old_fingerprint == self.fingerprint else 0
        self.offset = self.line = self.scanned = 0
        self.tail = _tail_hash(self.fd, 0)

    def advance(self, checkpoint: Checkpoint) -> None:
        """The checkpoint is committed: this is where reading goes on."""
        self.offset, self.line, self.tail = checkpoint.offset, checkpoint.line, checkpoint.tail
        self.scanned = 0
        self.idle_since = time.monotonic()

    def close(self) -> None:
        os.close(self.fd)


class FileTail:
    """Polls the configured paths and spools every complete line of every file exactly once."""

    def __init__(self, paths: Sequence[str], spool: Spool, stats: Stats, intake: Intake,
                 poll: float = POLL_SECONDS) -> None:
        self.paths = list(paths)
        self.spool = spool
        self.stats = stats
        self.intake = intake
        self.poll = poll
        self._files: Dict[Identity, _File] = {}
        self._saved: Dict[Identity, Checkpoint] = {}
        self._refused: Set[Tuple[str, Identity]] = set()  # files another user controls, warned about
        self._stop = asyncio.Event()
        self._task: Optional["asyncio.Future[None]"] = None
        self._paused = False
        self._problems: Dict[str, str] = {}  # path -> why it cannot be followed, this poll round
        self.failure: Optional[str] = None  # why the last poll failed, for /status and /readyz

    # -- life cycle -------------------------------------------------------------

    def start(self, tasks: Optional[Supervisor] = None) -> None:
        """Start polling, as a task of ``tasks`` (whose owner learns if it dies)."""
        self._saved = {(row.dev, row.ino): row for row in self.spool.checkpoints()}
        work = self._run()
        self._task = tasks.start(work, "file tail") if tasks is not None else asyncio.ensure_future(work)
        self._task.add_done_callback(self._ended)

    def _ended(self, task: "asyncio.Future[None]") -> None:
        if not task.cancelled() and task.exception() is not None:
            self.failure = f"stopped: {type(task.exception()).__name__}: {task.exception()}"

    async def stop(self) -> None:
        """Stop after the chunk being committed, if any; close every file."""
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        for tailed in self._files.values():
            tailed.close()
        self._files.clear()

    def set_paths(self, paths: Sequence[str]) -> None:
        """Reload: files no longer matched are finished like rotated ones, new paths picked up."""
        self.paths = list(paths)

    def figures(self) -> List[dict]:
        """One entry per open file, for ``/status``."""
        out = []
        for tailed in self._files.values():
            try:
                size = os.fstat(tailed.fd).st_size
            except OSError:
                size = None
            out.append({"path": tailed.path, "offset": tailed.offset, "size": size, "line": tailed.line,
                        "rotated": not tailed.matched})
        return out

    async def _run(self) -> None:
        recovered = False
        while not self._stop.is_set():
            self._problems = {}
            try:
                if not recovered:
                    self._recover()
                    recovered = True
                self._discover()
                await self._read_all()
                self._close_finished()
                self._failing("; ".join(self._problems.values()) or None)
            except OSError as error:  # a file vanished or became unreadable between two calls
                log.warning("file tail: %s", error)
            except Exception as error:  # a bug here must not silently end the source: shown failing, polled again
                self._failing(f"unexpected error: {type(error).__name__}: {error}", error)
            await self._sleep(self.poll)

    def _failing(self, reason: Optional[str], error: Optional[BaseException] = None) -> None:
        """Record (and log once) why a path cannot be followed or polling fails; None once a round went through."""
        if reason is not None and reason != self.failure:
            log.error("file tail: %s; shown in /status and /readyz, polling again", reason, exc_info=error)
        elif reason is None and self.failure is not None:
            log.info("file tail: every path can be followed again")
        self.failure = reason

    # -- which files ----------------------------------------------------------------

    def _matches(self) -> List[str]:
        found: List[str] = []
        for pattern in self.paths:
            found += sorted(glob.glob(pattern)) if _MAGIC & set(pattern) else [pattern]
        return found

    def _recover(self) -> None:
        """Files with a checkpoint that were rotated away while the agent was down: finish them."""
        directories = {os.path.dirname(path) for path in self.paths}
        at_paths = set()
        for path in self._matches():
            try:
                status = os.stat(path)
            except OSError:
                continue
            at_paths.add((status.st_dev, status.st_ino))
        gone = []
        for identity, saved in self._saved.items():
            if identity in at_paths:
                continue
            path = self._find(identity, directories | {os.path.dirname(saved.path)})
            if path is None:
                gone.append(identity)
            else:
                tailed = self._open(path, identity)
                if tailed is not None:
                    tailed.matched = False
                    log.info("finishing %s (rotated from %s while the agent was stopped)", path, saved.path)
        for identity in gone:
            del self._saved[identity]
        self.spool.forget_checkpoints(gone)

    @staticmethod
    def _find(identity: Identity, directories: set) -> Optional[str]:
        for directory in sorted(directories):
            try:
                entries = list(os.scandir(directory or "."))
            except OSError:
                continue
            for entry in entries:
                try:
                    status = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (status.st_dev, status.st_ino) == identity and entry.is_file(follow_symlinks=False):
                    return entry.path
        return None

    def _discover(self) -> None:
        """Open files that appeared at the configured paths; mark the ones that moved away."""
        present = set()
        for path in self._matches():
            try:
                status = os.stat(path)
            except OSError as error:
                self._unreachable(path, error)
                continue
            identity = (status.st_dev, status.st_ino)
            present.add(identity)
            tailed = self._files.get(identity)
            if tailed is None:
                tailed = self._open(path, identity)
            if tailed is not None:
                tailed.path, tailed.matched = path, True
        for identity, tailed in self._files.items():
            if identity not in present and tailed.matched:
                tailed.matched = False
                tailed.idle_since = time.monotonic()
                log.info("%s was rotated away: reading the rest of it", tailed.path)

    def _unreachable(self, path: str, error: OSError) -> None:
        """A configured path that cannot be looked at: a file not written yet is normal, anything else is not."""
        directory = os.path.dirname(path) or "."
        if error.errno != errno.ENOENT:
            self._problems[path] = f"cannot follow {path}: {error.strerror}"
        elif not os.path.isdir(directory):
            self._problems[path] = f"cannot follow {path}: its directory {directory} is gone"

    def _open(self, path: str, identity: Identity) -> Optional[_File]:
        """Start tailing a file once its first line is complete (its fingerprint needs it)."""
        try:
            fd = open_trusted_input(path, "input file")
        except UnsafePath as error:
            if (path, identity) not in self._refused:  # once per file, not once per poll
                self._refused.add((path, identity))
                log.warning("%s", error)
            return None
        except OSError as error:
            self._problems[path] = f"cannot open {path}: {error.strerror}"
            return None
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            os.close(fd)
            self._problems[path] = f"cannot follow {path}: not a regular file"
            return None
        fingerprint = _fingerprint(fd)
        if (status.st_dev, status.st_ino) != identity or fingerprint is None:
            os.close(fd)  # replaced in between, or no complete first line yet: next poll
            return None
        tailed = _File(fd, path, identity, fingerprint)
        saved = self._saved.get(identity)
        if saved is not None:
            tailed.resume(saved)
        self._files[identity] = tailed
        self.stats.add_source(Source("file", path))
        log.info("tailing %s from offset %d (line %d)", path, tailed.offset, tailed.line + 1)
        return tailed

    def _close_finished(self) -> None:
        """Rotated-away files at their end and quiet for a while are done."""
        now = time.monotonic()
        for identity, tailed in list(self._files.items()):
            if not tailed.matched and now - tailed.idle_since > ROTATED_GRACE \
                    and os.fstat(tailed.fd).st_size <= tailed.offset:
                log.info("finished %s at line %d", tailed.path, tailed.line)
                tailed.close()
                del self._files[identity]

    # -- reading --------------------------------------------------------------------

    async def _read_all(self) -> None:
        """Rotated-away files first: the old file is finished before the new one is read."""
        for tailed in sorted(self._files.values(), key=lambda item: item.matched):
            while not self._stop.is_set() and await self._read_chunk(tailed):
                pass
            if not tailed.matched and time.monotonic() - tailed.idle_since > ROTATED_GRACE:
                await self._finish_unterminated(tailed)

    async def _finish_unterminated(self, tailed: _File) -> None:
        """A rotated file whose last line never got its newline: after the grace it never will.

        The bytes are judged as a line: a whole valid event is delivered (a
        writer that omits the final newline is common; a torn write does not
        parse), anything else is reported as that line's error.  Either way a
        warning names the file, the offset and the byte count, and the file
        can then be closed.
        """
        size = os.fstat(tailed.fd).st_size
        if size <= tailed.offset or size - tailed.offset > MAX_LINE_BYTES:
            return  # nothing left, or an overlong line still being looked at by _read_chunk
        rest = os.pread(tailed.fd, size - tailed.offset, tailed.offset)
        if b"\n" in rest:
            return
        log.warning("%s: %d byte(s) at offset %d have no final newline %.0fs after the file was rotated; "
                    "judging them as the last line (delivered if they are a whole valid event)",
                    self._rotated_name(tailed), len(rest), tailed.offset, ROTATED_GRACE)
        accepted, line = self._judge(tailed, rest + b"\n")
        rotated_idle_since = tailed.idle_since
        if await self._commit(tailed, accepted, size, line):
            tailed.idle_since = rotated_idle_since  # the grace is over: closed this round, not one grace later

    def _rotated_name(self, tailed: _File) -> str:
        """A rotated file as a user finds it: its name now, and the path it was tailed at."""
        now = self._find(tailed.identity, {os.path.dirname(tailed.path)})
        return f"{now} (rotated from {tailed.path})" if now and now != tailed.path else tailed.path

    async def _read_chunk(self, tailed: _File) -> bool:
        """Spool the next block of complete lines with its checkpoint; False when nothing more now."""
        if not self._same_content(tailed):
            return False
        data = os.pread(tailed.fd, BLOCK, tailed.offset)
        end = data.rfind(b"\n") + 1
        if end:
            accepted, line = self._judge(tailed, data[:end])
            return await self._commit(tailed, accepted, tailed.offset + end, line)
        if len(data) <= MAX_LINE_BYTES:
            return False  # a partial last line: wait for its newline
        newline = self._find_newline(tailed, tailed.offset + len(data))
        if newline is None:
            return False
        accepted, line = self._judge(tailed, data[:MAX_LINE_BYTES + 1] + b"\n")  # reported as too long
        return await self._commit(tailed, accepted, newline + 1, line)

    def _same_content(self, tailed: _File) -> bool:
        """False while there is nothing to read; restarts the file when it was truncated or rewritten."""
        size = os.fstat(tailed.fd).st_size
        if size == tailed.offset:
            return False
        if size > tailed.offset and (not tailed.offset or _tail_hash(tailed.fd, tailed.offset) == tailed.tail):
            return True
        fingerprint = _fingerprint(tailed.fd)
        if fingerprint is None:
            return False  # new content without a complete first line yet
        old_fingerprint, old_epoch = tailed.fingerprint, tailed.epoch
        tailed.fingerprint = fingerprint
        tailed.restart(old_fingerprint, old_epoch)
        log.warning("%s was truncated or rewritten (copy-truncate?): reading it from the start", tailed.path)
        return True

    @staticmethod
    def _find_newline(tailed: _File, start: int) -> Optional[int]:
        """Where an overlong line ends, looking one block at a time (memory stays bounded)."""
        position = max(start, tailed.scanned)
        while True:
            block = os.pread(tailed.fd, BLOCK, position)
            found = block.find(b"\n")
            if found >= 0:
                return position + found
            if not block:
                tailed.scanned = position
                return None
            position += len(block)

    def _judge(self, tailed: _File, chunk: bytes) -> Tuple[List[Accepted], int]:
        """The events of complete lines (``chunk`` ends with a newline); invalid lines are logged."""
        accepted: List[Accepted] = []
        intake, key, path = self.intake, tailed.key, tailed.path
        offset, line = tailed.offset, tailed.line
        for raw in chunk[:-1].split(b"\n"):
            line += 1
            verdict = intake.accept(raw, line, line_event_id(key, offset, raw))
            offset += len(raw) + 1
            if isinstance(verdict, Invalid):
                self.stats.count_invalid(Source("file", path))
                log.warning("%s:%d: %s: %s (line skipped)", path, line, verdict.path, verdict.message)
            elif verdict is not None:
                accepted.append(verdict)
        return accepted, line

    async def _commit(self, tailed: _File, accepted: List[Accepted], offset: int, line: int) -> bool:
        """Spool the events with the checkpoint past them, in one transaction; False to retry later."""
        await pace(self.spool, self.stats)
        checkpoint = tailed.checkpoint(offset, line)
        fitting, committed = self.spool.append(accepted, checkpoint, Source("file", tailed.path))
        try:
            if fitting < len(accepted):
                raise SpoolError("spool full (spool.maxBytes): file reading paused until deliveries free space")
            await committed
        except SpoolError as error:
            if not self._paused:
                log.error("%s: %s; retrying from line %d", tailed.path, error, tailed.line + 1)
                self._paused = True
            await self._sleep(RETRY_SECONDS)
            return False
        self._paused = False
        tailed.advance(checkpoint)
        self._saved[tailed.identity] = checkpoint
        return True

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass
