"""Where raw lines come from: stdin, the agent's socket, TCP, tailed files.

This module holds what the agent's stream sources (Unix socket, TCP) share:
the NDJSON request/reply protocol with local producers.  A producer writes
event lines; it gets one reply line per non-blank input line, in order, and
only once the event is committed to the spool:

    {"ok": true, "line": 1, "event_id": "..."}
    {"ok": false, "line": 2, "error": "$.quantity: ...", "kind": "schema"}
    {"ok": false, "line": 3, "error": "spool full: ...", "kind": "spool_full"}

Each connection is its own task that takes every line already received,
judges them with intake, and awaits a single commit for the lot: a producer
that writes ahead is pipelined into large group commits, and a slow or dead
producer only ever stalls its own task.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from typing import List, Optional, Set, Tuple, Union

from doow_track_agent.intake import Accepted, Intake, Invalid
from doow_track_agent.sources.lines import Line, LineSplitter
from doow_track_agent.spool import Spool, SpoolError
from doow_track_agent.stats import Stats

log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
STREAM_LIMIT = 1024 * 1024

Verdict = Union[Accepted, Invalid]


class SourceError(Exception):
    """A source cannot listen (address in use, bad path or permissions, missing token)."""


def _reply_ok(line: int, event_id: str) -> bytes:
    return b'{"ok":true,"line":%d,"event_id":%s}\n' % (line, json.dumps(event_id).encode("ascii"))


def _reply_error(line: int, error: str, kind: str) -> bytes:
    reply = {"ok": False, "line": line, "error": error, "kind": kind}
    return json.dumps(reply, separators=(",", ":")).encode("ascii") + b"\n"


def _invalid_reply(invalid: Invalid) -> bytes:
    return _reply_error(invalid.line, f"{invalid.path}: {invalid.message}", invalid.kind)


class _Connection:
    """One producer: its task, and whether it is in the middle of a chunk (not to be cancelled)."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.task = asyncio.current_task()
        self.busy = False


class Producers:
    """Serves producer connections for every source; ``intake`` is swapped on reload."""

    def __init__(self, spool: Spool, stats: Stats, intake: Intake) -> None:
        self.spool = spool
        self.stats = stats
        self.intake = intake
        self.closing = False
        self._connections: Set[_Connection] = set()
        self._warned_full = False

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    origin: str, token: Optional[str] = None) -> None:
        """Handle one producer until it disconnects or the agent stops accepting."""
        conn = _Connection(origin)
        self._connections.add(conn)
        try:
            await self._converse(conn, reader, writer, token)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: connection lost: %s", origin, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(conn)
            writer.close()

    async def _converse(self, conn: _Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, token: Optional[str]) -> None:
        splitter = LineSplitter()
        authenticated = token is None
        while not self.closing:
            data = await reader.read(READ_SIZE)
            conn.busy = True
            lines = splitter.feed(data) if data else splitter.finish()
            if not authenticated and lines:
                authenticated = self._check_token(lines.pop(0)[1], token or "")
                if not authenticated:
                    writer.write(_reply_error(1, "the first line must be the configured tcp.token", "auth"))
                    await writer.drain()
                    log.warning("%s: refused a producer without the right token", conn.origin)
                    return
            replies = await self.handle(lines)
            if replies:
                writer.write(replies)
                await writer.drain()
            conn.busy = False
            if not data:
                return

    @staticmethod
    def _check_token(line: bytes, token: str) -> bool:
        return hmac.compare_digest(line.strip(), token.encode("utf-8"))

    async def handle(self, lines: List[Line]) -> bytes:
        """Judge, spool and answer a chunk of numbered lines."""
        verdicts = self._judge(lines)
        accepted = [verdict for _, verdict in verdicts if isinstance(verdict, Accepted)]
        fitting, committed = self.spool.append(accepted)
        failure: Optional[str] = None
        try:
            await committed
        except SpoolError as exc:
            failure = str(exc)
            log.error("refusing %d event(s): %s", fitting, exc)
        return self._replies(verdicts, fitting, failure)

    def _judge(self, lines: List[Line]) -> List[Tuple[int, Verdict]]:
        intake = self.intake
        verdicts: List[Tuple[int, Verdict]] = []
        for line, raw in lines:
            verdict = intake.accept(raw, line)
            if verdict is None:
                continue
            if isinstance(verdict, Invalid):
                self.stats.invalid += 1
            verdicts.append((line, verdict))
        return verdicts

    def _replies(self, verdicts: List[Tuple[int, Verdict]], fitting: int, failure: Optional[str]) -> bytes:
        out: List[bytes] = []
        index = 0
        for line, verdict in verdicts:
            if isinstance(verdict, Invalid):
                out.append(_invalid_reply(verdict))
                continue
            index += 1
            if failure is not None:
                out.append(_reply_error(line, failure, "spool_error"))
            elif index > fitting:
                out.append(_reply_error(line, self._full_message(), "spool_full"))
            else:
                out.append(_reply_ok(line, verdict.event_id))
        if index <= fitting:
            self._warned_full = False
        return b"".join(out)

    def _full_message(self) -> str:
        if not self._warned_full:
            log.warning("spool full (%d bytes, spool.maxBytes): refusing new events until deliveries free space",
                        self.spool.max_bytes)
            self._warned_full = True
        return f"spool full: spool.maxBytes ({self.spool.max_bytes} bytes) reached; event not accepted"

    async def close(self, timeout: float) -> None:
        """Stop accepting: idle producers are disconnected, busy ones finish their chunk first."""
        self.closing = True
        for conn in list(self._connections):
            if not conn.busy and conn.task is not None:
                conn.task.cancel()
        tasks = [conn.task for conn in self._connections if conn.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
