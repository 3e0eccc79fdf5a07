"""What the agent's stream sources (Unix socket, TCP) share: the request/reply protocol with producers.

A producer writes event lines; it gets one reply line per non-blank input
line, in order, and only once the event is committed to the spool (see
docs/protocol.md, "Local producers"):

    {"ok": true, "line": 1, "event_id": "..."}
    {"ok": false, "line": 2, "error": "$.quantity: ...", "kind": "schema"}
    {"ok": false, "line": 3, "error": "spool full: ...", "kind": "spool_full"}

Each connection is its own task that takes every line already received,
judges them with intake, and awaits a single commit for the lot: a producer
that writes ahead is pipelined into large group commits, and a slow or dead
producer only ever stalls its own task.

No local user can hold the agent's descriptors: a connection silent for
``producers.idleTimeout`` (or without its TCP token after TOKEN_TIMEOUT) is
closed, each source (a peer uid, a TCP address) may hold at most
``producers.maxConnectionsPerSource``, and all of them together stay
CONNECTION_RESERVE descriptors below the process's RLIMIT_NOFILE.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import resource
import time
from collections import Counter
from typing import List, NamedTuple, Optional, Set, Tuple

from doow_track_agent.buffers.spool import Spool, SpoolError
from doow_track_agent.intake.events import Intake, Invalid
from doow_track_agent.log_throttle import Throttled
from doow_track_agent.sources.lines import Line, LineSplitter
from doow_track_agent.sources.pacing import pace
from doow_track_agent.stats import Source, Stats

log = logging.getLogger(__name__)

READ_SIZE = 16 * 1024
CHUNKS_IN_FLIGHT = 4      # per connection: read ahead while earlier chunks commit
TOKEN_TIMEOUT = 10.0      # seconds a TCP connection has to send its token line
CONNECTION_RESERVE = 64   # descriptors kept for the spool, logs, health and delivery


def _reply_ok(line: int, event_id: str) -> bytes:
    # The schema limits event_ids to [A-Za-z0-9_.:-]: nothing to escape (generated ones are UUIDs).
    return b'{"ok":true,"line":%d,"event_id":"%s"}\n' % (line, event_id.encode("ascii"))


def _reply_error(line: int, error: str, kind: str) -> bytes:
    reply = {"ok": False, "line": line, "error": error, "kind": kind}
    return json.dumps(reply, separators=(",", ":")).encode("ascii") + b"\n"


def _invalid_reply(invalid: Invalid) -> bytes:
    return _reply_error(invalid.line, f"{invalid.path}: {invalid.message}", invalid.kind)


class _Row(NamedTuple):
    """A valid line of a chunk, as the spool takes it (its ``event_id`` and ``body``) and as its reply names it."""

    line: int
    event_id: str
    body: bytes


class _Chunk(NamedTuple):
    """Lines read together: their valid rows, their invalid lines, how many rows fitted in the spool, their commit.

    ``invalid`` holds ``(index, Invalid)`` in line order, ``index`` being how
    many rows came before that line (its reply goes before ``rows[index]``'s).
    """

    rows: List[_Row]
    invalid: List[Tuple[int, Invalid]]
    fitting: int
    committed: "Optional[asyncio.Future[None]]"


_AUTH_FAILED = Invalid(1, "$", "the first line must be the configured tcp.token", "auth")


class _Connection:
    """One producer: its task, whether it is in the middle of a chunk (not to be cancelled), and
    when it was last heard from (monotonic seconds)."""

    def __init__(self, source: Source, origin: str, peer: str, authenticated: bool) -> None:
        self.source = source
        self.origin = origin
        self.peer = peer
        self.task = asyncio.current_task()
        self.busy = False
        self.authenticated = authenticated
        self.active = time.monotonic()


def descriptor_budget() -> int:
    """How many producer connections the process's RLIMIT_NOFILE leaves room for."""
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return max(1, (soft if soft != resource.RLIM_INFINITY else 65536) - CONNECTION_RESERVE)


class Producers:
    """Serves producer connections for every source; ``intake`` and the limits are swapped on reload."""

    def __init__(self, spool: Spool, stats: Stats, intake: Intake, idle_timeout: float = 60.0,
                 per_source: int = 256) -> None:
        self.spool = spool
        self.stats = stats
        self.intake = intake
        self.idle_timeout = idle_timeout
        self.per_source = per_source
        self.closing = False
        self._connections: Set[_Connection] = set()
        self._peers: "Counter[str]" = Counter()
        self._budget = descriptor_budget()
        self._warned_full = False
        self._throttled = Throttled(log)
        self._sweeper: "Optional[asyncio.Task[None]]" = None

    def set_limits(self, idle_timeout: float, per_source: int) -> None:
        """``producers.idleTimeout`` (seconds) and ``producers.maxConnectionsPerSource``."""
        self.idle_timeout, self.per_source = idle_timeout, per_source

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    source: Source, origin: str, token: Optional[str] = None, peer: Optional[str] = None) -> None:
        """Handle one producer of ``source`` until it disconnects, falls silent, or the agent stops accepting.

        ``peer`` is what the per-source limit counts (a peer uid, a TCP address).
        """
        peer = peer or origin
        if self._peers[peer] >= self.per_source or len(self._connections) >= self._budget:
            self._throttled.warning(f"refused {peer}", "%s: connection refused: %d open from this source "
                                    "(producers.maxConnectionsPerSource %d), %d in all (limit %d from "
                                    "RLIMIT_NOFILE)", origin, self._peers[peer], self.per_source,
                                    len(self._connections), self._budget)
            writer.close()
            return
        conn = _Connection(source, origin, peer, token is None)
        self._connections.add(conn)
        self._peers[peer] += 1
        self._start_sweeper()
        try:
            await self._converse(conn, reader, writer, token)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            log.debug("%s: connection lost: %s", origin, exc)
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(conn)
            self._peers[peer] -= 1
            if not self._peers[peer]:
                del self._peers[peer]
            writer.close()

    def _start_sweeper(self) -> None:
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.ensure_future(self._sweep())

    async def _sweep(self) -> None:
        """Close connections silent past their deadline (a timestamp per read beats a timer per read)."""
        while self._connections and not self.closing:
            await asyncio.sleep(min(1.0, self.idle_timeout / 2))
            now = time.monotonic()
            for conn in list(self._connections):
                limit = self.idle_timeout if conn.authenticated else min(self.idle_timeout, TOKEN_TIMEOUT)
                if not conn.busy and now - conn.active > limit and conn.task is not None:
                    log.debug("%s: closing a connection silent for %.0fs", conn.origin, now - conn.active)
                    conn.task.cancel()

    async def _converse(self, conn: _Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, token: Optional[str]) -> None:
        """Read and spool chunks while earlier ones are still committing; replies go out in order."""
        chunks: "asyncio.Queue[Optional[_Chunk]]" = asyncio.Queue(CHUNKS_IN_FLIGHT)
        replier = asyncio.ensure_future(self._reply(chunks, writer, conn.origin))
        try:
            await self._read(conn, reader, chunks, token)
        finally:
            await chunks.put(None)
            await replier

    async def _read(self, conn: _Connection, reader: asyncio.StreamReader,
                    chunks: "asyncio.Queue[Optional[_Chunk]]", token: Optional[str]) -> None:
        splitter = LineSplitter()
        authenticated = token is None
        while not self.closing:
            data = await reader.read(READ_SIZE)
            conn.active = time.monotonic()
            conn.busy = True  # from here until the chunk is queued for its reply, never cancelled
            await pace(self.spool, self.stats)
            lines = splitter.feed(data) if data else splitter.finish()
            if not authenticated and lines:
                authenticated = conn.authenticated = self._check_token(lines.pop(0)[1], token or "")
                if not authenticated:
                    log.warning("%s: refused a producer without the right token", conn.origin)
                    await chunks.put(_Chunk([], [(0, _AUTH_FAILED)], 0, None))
                    return
            await chunks.put(self.submit(lines, conn.source))
            conn.busy = False
            if not data:
                return

    async def _reply(self, chunks: "asyncio.Queue[Optional[_Chunk]]", writer: asyncio.StreamWriter,
                     origin: str) -> None:
        """Answer each chunk once it is committed; after a broken connection, just drain the queue."""
        broken = False
        while True:
            chunk = await chunks.get()
            if chunk is None:
                return
            replies = await self.answer(chunk)
            if broken or not replies:
                continue
            try:
                writer.write(replies)
                transport = writer.transport
                if transport.get_write_buffer_size() or transport.is_closing():
                    # A producer that never reads its replies must not hold the connection (and its reader)
                    # forever.  Only then: a reply the socket took whole leaves nothing to wait for, and
                    # wait_for makes a task and a timer each time (a chunk of events apiece).
                    await asyncio.wait_for(writer.drain(), self.idle_timeout)
            except (ConnectionError, asyncio.TimeoutError) as exc:
                log.debug("%s: connection lost before its replies: %r", origin, exc)
                writer.transport.abort()
                broken = True

    @staticmethod
    def _check_token(line: bytes, token: str) -> bool:
        return hmac.compare_digest(line.strip(), token.encode("utf-8"))

    def submit(self, lines: List[Line], source: Source) -> "_Chunk":
        """Judge a chunk of numbered lines and queue its valid events for the next group commit."""
        rows, others = self.intake.accept_block(lines, _Row)
        # An event_id the line gives itself is the producer's to repeat: the agent sends what it is given.
        invalid = [(index, verdict) for index, _, _, verdict in others if type(verdict) is Invalid]
        for _ in invalid:
            self.stats.count_invalid(source)
        fitting, committed = self.spool.append(rows, source=source)
        return _Chunk(rows, invalid, fitting, committed)

    async def answer(self, chunk: "_Chunk") -> bytes:
        """The replies of a chunk, once its events are committed (or could not be)."""
        failure: Optional[str] = None
        if chunk.committed is not None:
            try:
                await chunk.committed
            except SpoolError as exc:
                failure = str(exc)
                log.error("refusing %d event(s): %s", chunk.fitting, exc)
        return self._replies(chunk, failure)

    def _replies(self, chunk: "_Chunk", failure: Optional[str]) -> bytes:
        """One reply per judged line, in line order: ok with its event_id, or why not."""
        out: List[bytes] = []
        rows, fitting, done = chunk.rows, chunk.fitting, 0
        for until, invalid in [*chunk.invalid, (len(rows), None)]:
            for position in range(done, until):
                row = rows[position]
                if failure is not None:
                    out.append(_reply_error(row.line, failure, "spool_error"))
                elif position >= fitting:
                    out.append(_reply_error(row.line, self._full_message(), "spool_full"))
                else:
                    out.append(_reply_ok(row.line, row.event_id))
            done = until
            if invalid is not None:
                out.append(_invalid_reply(invalid))
        if len(rows) <= fitting:
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
