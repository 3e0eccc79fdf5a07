"""Delivery: batches out of a queue, over one keep-alive httpx client, until each event has an outcome.

One engine serves pipe mode (an in-memory queue, an outbox for what is left)
and the agent (the durable spool).  The queue decides where events wait; the
sink decides what an outcome means there; the pump owns timing, batching,
concurrency and the retry policy of docs/protocol.md ("Responses").  Every
event leased from the queue ends in exactly one sink call: delivered,
rejected or deferred.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import operator
import random
import ssl
import time
import zlib
from typing import Any, Dict, List, NamedTuple, Optional, Protocol, Tuple

import httpx

from doow_track_agent.delivery import http_client
from doow_track_agent.config import Settings
from doow_track_agent.delivery import replies
from doow_track_agent.intake import wire
from doow_track_agent.stats import Stats

KEY_RETRY_SECONDS = 60.0
# ``timeout`` bounds each network step (connect, send, each read); a whole request, answer included, gets this
# many times it, so that an answer sent a byte at a time cannot hold a batch (and a run) without end.
WHOLE_REQUEST_TIMEOUTS = 3
log = logging.getLogger(__name__)


class Queued(NamedTuple):
    """An event waiting for delivery; ``ref`` is the queue's own handle (spool row id)."""

    ref: Any
    event_id: str
    body: bytes


# A batch's fields taken in C (``map(BODY, events)``): batches are hundreds of events, handled per batch.
REF, EVENT_ID, BODY = (operator.itemgetter(index) for index in range(3))
# Queued made from a (ref, event_id, body) row without a Python call per row (what ``Queued._make`` does).
as_queued = functools.partial(tuple.__new__, Queued)


class Sink(Protocol):
    """Where outcomes go.  Called from the event-loop thread."""

    def delivered(self, events: List[Queued]) -> None: ...

    def rejected(self, events: List[Tuple[Queued, str]]) -> None: ...

    def deferred(self, events: List[Queued], reason: str) -> None: ...


class Queue(Protocol):
    """Where events wait.  ``pending`` must be O(1): the pump asks often."""

    changed: asyncio.Event
    closed: bool

    def pending(self) -> Tuple[int, Optional[float]]: ...

    def lease(self, max_events: int, max_bytes: int) -> List[Queued]: ...


def flush_outlook(settings: Settings, queue: Queue, stats: Stats, now: float) -> dict:
    """When the waiting events go out and why they wait: ``/status``'s ``flush`` object.

    ``{"waiting": events not in flight, "flush_at": events, "flush_interval_ms": ms,
    "next_in_seconds": seconds or None, "reason": text}``; ``now`` is a
    ``time.monotonic()`` value, the clock the queue stamps events with.
    """
    count, oldest = queue.pending()
    interval = settings.flush_interval
    outlook = {"waiting": count, "flush_at": settings.flush_at, "flush_interval_ms": int(interval * 1000),
               "next_in_seconds": None}
    if not count:
        return {**outlook, "reason": "nothing waiting"}
    if not stats.healthy:
        return {**outlook, "reason": f"deliveries failing, retried with backoff: {stats.last_error}"}
    if count >= settings.flush_at:
        return {**outlook, "next_in_seconds": 0.0, "reason": f"due now: flushAt ({settings.flush_at}) reached"}
    due = max(0.0, (oldest or 0.0) + interval - now)
    return {**outlook, "next_in_seconds": round(due, 3),
            "reason": f"fewer than flushAt ({settings.flush_at}) events wait, so they go out "
                      f"flushInterval ({int(interval * 1000)} ms) after the first of them arrived"}


def backoff(attempt: int, initial: float, ceiling: float) -> float:
    """Exponential backoff with full jitter (AWS architecture blog's recommendation)."""
    return random.uniform(0, min(ceiling, initial * (2 ** (attempt - 1))))


def new_client(settings: Settings) -> http_client.Sender:
    """One keep-alive client per key, endpoint, proxy and trust; the key lives only in its headers."""
    limits = httpx.Limits(max_connections=settings.concurrency, max_keepalive_connections=settings.concurrency)
    headers = {**http_client.default_headers(settings.api_key), "Content-Type": "application/json"}
    return http_client.Sender(settings, headers=headers, path=wire.INGEST_PATH, limits=limits)


def _connection(settings: Settings) -> tuple:
    """What a client is built from: a change in any of it needs a new client."""
    return (settings.api_key, settings.endpoint, settings.timeout, settings.concurrency, settings.route,
            settings.tls)


class Pump:
    """Moves events from a queue to the API, honouring flushAt/flushInterval and the retry policy.

    ``max_attempts`` bounds the tries per batch (None: until stopped).  With
    ``halt_on_failure`` (pipe mode) a rejected key or a batch that used up
    its attempts ends the whole run at once, so an unreachable endpoint costs
    one retry budget, not one per batch; ``halted`` then says why.  Without it
    (the agent) a rejected key is retried slowly until a reload fixes it.
    """

    def __init__(self, settings: Settings, queue: Queue, sink: Sink, stats: Stats, *,
                 max_attempts: Optional[int], halt_on_failure: bool) -> None:
        self.queue = queue
        self.sink = sink
        self.stats = stats
        self.max_attempts = max_attempts
        self.halt_on_failure = halt_on_failure
        self.halted: Optional[str] = None
        self._settings = settings
        self._client = new_client(settings)
        self._issuer: Optional[Tuple[tuple, Optional[str]]] = None  # (connection, issuer) of an untrusted certificate
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._tasks: set = set()
        self._wake = asyncio.Event()
        self._draining = False
        self._deadline: Optional[float] = None

    def reconfigure(self, settings: Settings) -> None:
        """Use new settings for batches started from now on; in-flight ones finish as they began."""
        if _connection(settings) != _connection(self._settings):
            self._replace_client(settings)
            self._slots = asyncio.Semaphore(settings.concurrency)
        self._settings = settings
        self.wake()

    def _replace_client(self, settings: Settings) -> None:
        """A new client from now on; the old one's requests in flight finish on it, then its threads and
        connections are closed (``Sender.retire``)."""
        self._client.retire()
        self._client = new_client(settings)

    def wake(self) -> None:
        """Cut short any wait: a flush timer, a backoff, or the slow retry of a rejected key."""
        self._wake.set()
        self.queue.changed.set()

    async def stop(self, deadline: float) -> None:
        """Drain: send everything waiting now, until ``deadline`` (a ``time.monotonic()`` value)."""
        self._draining = True
        self._deadline = deadline
        self.wake()

    async def run(self) -> None:
        """Deliver until the queue is closed and empty (or drained to the deadline, or halted)."""
        try:
            while not self.halted:
                slots = self._slots
                await slots.acquire()
                batch = await self._next_batch()
                if batch is None:
                    slots.release()
                    break
                task = asyncio.ensure_future(self._deliver_in_slot(batch, slots))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
            await self._finish_in_flight()
        finally:
            self._client.close()

    async def _finish_in_flight(self) -> None:
        """Wait for the batches in flight; cancel them (their events are deferred) once past the drain
        deadline, which ``stop`` may set while this waits (the input ended, then a signal came)."""
        while self._tasks:
            if self._past_deadline():
                for task in list(self._tasks):
                    task.cancel()
                await asyncio.gather(*self._tasks, return_exceptions=True)
                return
            timeout = None if self._deadline is None else self._deadline - time.monotonic()
            self._wake.clear()
            woken = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({*self._tasks, woken}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            woken.cancel()

    def _past_deadline(self) -> bool:
        return self._deadline is not None and time.monotonic() >= self._deadline

    async def _next_batch(self) -> Optional[List[Queued]]:
        """Wait until a batch is due, then lease it; None when there is nothing more to do."""
        while not self.halted and not self._past_deadline():
            self.queue.changed.clear()
            count, oldest = self.queue.pending()
            settings = self._settings
            if count:
                waited = time.monotonic() - (oldest or 0.0)
                if count >= settings.flush_at or self.queue.closed or self._draining or waited >= settings.flush_interval:
                    return self.queue.lease(settings.max_batch_events, wire.MAX_BATCH_BYTES)
                timeout: Optional[float] = settings.flush_interval - waited
            elif self.queue.closed or self._draining:
                return None
            else:
                timeout = None
            if self._deadline is not None:
                timeout = min(timeout if timeout is not None else 1e9, self._deadline - time.monotonic())
            await self._wait_for_change(timeout)
        return None

    async def _wait_for_change(self, timeout: Optional[float]) -> None:
        try:
            await asyncio.wait_for(self.queue.changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass

    async def _deliver_in_slot(self, events: List[Queued], slots: asyncio.Semaphore) -> None:
        try:
            await self.deliver(events)
        finally:
            slots.release()

    async def deliver(self, events: List[Queued]) -> None:
        """Deliver one batch with its own stable ``batch_id``; every event ends in one sink call."""
        try:
            halves = await self._attempts(events, Batch.of(events))
        except asyncio.CancelledError:
            self.sink.deferred(events, "shutdown deadline reached before delivery")
            raise
        except Exception as error:  # a bug while sending must still leave each event with an outcome
            log.error("batch of %d event(s): internal error while delivering: %r; events kept",
                      len(events), error, exc_info=True)
            self.stats.failed(f"internal error while delivering: {type(error).__name__}: {error}")
            self.sink.deferred(events, f"internal error while delivering: {type(error).__name__}: {error}")
            return
        if halves:
            await asyncio.gather(self.deliver(halves[0]), self.deliver(halves[1]))

    async def _attempts(self, events: List[Queued], batch: "Batch") -> Optional[Tuple[list, list]]:
        """Try one batch until it has an outcome; return two halves when the API says 413."""
        attempt = 0
        started = time.monotonic()
        while True:
            if attempt and (self.halted or self._past_deadline()):
                self.sink.deferred(events, f"not delivered after {attempt} attempt(s)")
                return None
            attempt += 1
            reply = await self._post(batch)
            if reply.kind in (replies.TOO_LARGE, replies.INVALID) and len(events) > 1:
                # Halves until the refused events are alone: the good ones of the batch still go through.
                return events[:len(events) // 2], events[len(events) // 2:]
            if self._settle(events, reply):
                return None
            exhausted = bool(self.max_attempts and attempt >= self.max_attempts)
            fatal = reply.kind in (replies.KEY, replies.MISDIRECTED)
            if self.halt_on_failure and (exhausted or fatal) and not self.halted:
                self.halted = reply.reason
                log.warning("stopping delivery: %s", reply.reason)
                self.wake()
            if self.halted or exhausted or self._past_deadline():
                self.sink.deferred(events, f"not delivered after {attempt} attempt(s): {reply.reason}")
                return None
            if fatal:
                log.error("%s (%s); events stay queued, retrying in %ds or on reload",
                          "API key rejected" if reply.kind == replies.KEY else "endpoint misconfigured",
                          reply.reason, KEY_RETRY_SECONDS)
                await self._pause(KEY_RETRY_SECONDS)
                continue
            self.stats.retries += 1
            delay = self._retry_delay(reply, attempt, started)
            log.info("batch %s (%d events): %s; retry %d in %.1fs", batch.batch_id, len(events), reply.reason,
                     attempt, delay)
            await self._pause(delay)

    def _retry_delay(self, reply: replies.Reply, attempt: int, started: float) -> float:
        """Backoff, or the server's Retry-After bounded by retry.maxRetryAfter and, with max_attempts
        (pipe mode), by what is left of the batch's retry budget: (maxAttempts - 1) x maxDelay seconds
        from its first attempt.  A hostile server cannot make a run last longer than its own backoff would.
        """
        settings = self._settings
        if reply.retry_after is None:
            return backoff(attempt, settings.initial_delay, settings.max_delay)
        delay = min(reply.retry_after, settings.max_retry_after)
        if self.max_attempts:
            budget = (self.max_attempts - 1) * settings.max_delay
            delay = min(delay, max(0.0, started + budget - time.monotonic()))
        return delay

    def _settle(self, events: List[Queued], reply: replies.Reply) -> bool:
        """Record a definitive outcome; False when the batch must be tried again."""
        self.stats.duplicates += reply.duplicates
        if reply.kind == replies.ACCEPTED:
            self.stats.succeeded()
            self.stats.delivered += len(events)
            self.sink.delivered(events)
        elif reply.kind == replies.PARTIAL:
            accepted, rejected = replies.split(events, reply.rejections)
            self.stats.succeeded()
            self.stats.delivered += len(accepted)
            self.stats.rejected += len(rejected)
            self.sink.delivered(accepted)
            if rejected:
                self.sink.rejected(rejected)
        elif reply.kind in (replies.REJECTED, replies.TOO_LARGE, replies.INVALID):
            self.stats.last_error = reply.reason  # the data was refused; deliveries themselves still work
            self.stats.rejected += len(events)
            self.sink.rejected([(event, reply.reason) for event in events])
        else:
            self.stats.failed(reply.reason, key=reply.kind == replies.KEY)
            return False
        return True

    async def _pause(self, seconds: float) -> None:
        """Sleep, but no further than the drain deadline, and wake on ``wake()``."""
        if self._deadline is not None:
            seconds = min(seconds, max(0.0, self._deadline - time.monotonic()))
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _post(self, batch: "Batch") -> replies.Reply:
        self.stats.requests += 1
        client, limit = self._client, self._settings.timeout * WHOLE_REQUEST_TIMEOUTS
        try:
            answer = await asyncio.wait_for(client.post(batch.body, batch.headers), limit)
            return replies.classify(answer.status_code, answer.headers, answer.body, batch.event_ids)
        except asyncio.TimeoutError:
            # A server that answers a byte at a time never trips a timeout of each read.  The exchange cannot be
            # cancelled on its thread: its client is replaced, and closing that client's connections ends it.
            if client is self._client:
                self._replace_client(self._settings)
            return replies.Reply(replies.RETRY, f"no whole answer within {limit:g}s ({WHOLE_REQUEST_TIMEOUTS} x "
                                                "timeout): the endpoint answers too slowly")
        except Exception as error:  # not only httpx.HTTPError: a bad port or IDNA raises others, and a TLS
            # alert after the handshake (mutual TLS refused) escapes as a bare ssl.SSLError; all mean "not sent".
            return replies.unreachable(error, http_client.explain(error, self._settings, await self._untrusted(error)))

    async def _untrusted(self, error: Exception) -> Optional[str]:
        """Who issued the certificate that failed verification (asked once per connection settings), or None."""
        if http_client.cause(error, ssl.SSLCertVerificationError) is None:
            return None
        settings, connection = self._settings, _connection(self._settings)
        if self._issuer is None or self._issuer[0] != connection:
            der = await asyncio.get_running_loop().run_in_executor(
                None, http_client.peer_certificate, settings, settings.timeout)
            self._issuer = (connection, http_client.issuer(der))
        return self._issuer[1]


class Batch(NamedTuple):
    """One batch's request, made once: every attempt sends these very bytes (docs/protocol.md:
    ``batch_id`` is stable across retries, events travel as the bytes encoded at intake)."""

    batch_id: str
    body: bytes
    headers: Dict[str, str]
    event_ids: List[str]

    @classmethod
    def of(cls, events: List[Queued]) -> "Batch":
        """The batch under a new ``batch_id``, gzip-compressed above ``wire.GZIP_ABOVE`` bytes."""
        batch_id = wire.new_uuid4()
        body = wire.batch_body(batch_id, map(BODY, events))
        headers = {}
        if len(body) > wire.GZIP_ABOVE:
            body, headers = gzipped(body), _GZIP_HEADERS
        return cls(batch_id, body, headers, list(map(EVENT_ID, events)))


_GZIP_HEADERS = {"Content-Encoding": "gzip"}


def gzipped(body: bytes) -> bytes:
    """``body`` as a gzip member (RFC 1952) at deflate level 1, with mtime 0: the same bytes each time.

    Compressed on the event loop, once per batch, so the cheapest deflate there is: ISA-L's
    (the ``isal`` package) where it is installed, else zlib's.  On 500 typical events
    (145 KB) ISA-L level 1 takes 0.10 ms for a ratio of 8.7; zlib level 1 0.50 ms for 7.7.
    """
    deflate = _deflater().compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    return deflate.compress(body) + deflate.flush()


@functools.lru_cache(maxsize=None)
def _deflater() -> Any:
    """``isal.isal_zlib`` (imported on the first large batch only: a one-event run never needs it), else ``zlib``."""
    try:
        from isal import isal_zlib
    except ImportError:  # no wheel for this platform: zlib makes the same format, more slowly
        return zlib
    return isal_zlib
