"""Pipe mode: lines in until EOF, every event delivered, outboxed or reported, an honest exit status.

A reader thread does only the blocking reads; intake and the shared delivery
pump run in the event loop (see ``Reader`` for why).  Between them sits a bounded in-memory queue, so a fast
producer is slowed down instead of filling memory.  When the run ends early
(a signal, a rejected key, retries exhausted) whatever was read but not
delivered goes to the outbox, so delivered + outbox + invalid always equals
the input.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, List, Optional, TextIO, Tuple

from doow_track_agent.buffers.memory import MemoryQueue
from doow_track_agent.config import Settings
from doow_track_agent.delivery.pump import Pump, Queued
from doow_track_agent.exits import EX_DATAERR, EX_NOPERM, EX_OK, EX_TEMPFAIL
from doow_track_agent.intake import wire
from doow_track_agent.intake.events import Accepted, Intake, Invalid
from doow_track_agent.modes.pipe import outbox
from doow_track_agent.sources.lines import Line, read_lines
from doow_track_agent.stats import Stats

READ_AHEAD = 4
READ_BLOCK = 64 * 1024
MAX_REPORTED_ERRORS = 100
MAX_REPORTED_IDS = 1000


class Reader(threading.Thread):
    """The only blocking part of pipe mode: reads blocks of lines and hands them to the event loop.

    Intake itself runs in the loop thread.  Two threads both doing Python
    work would take turns on the GIL, and every HTTP answer would wait for
    the reader's turn to end; a thread that mostly sits in read() does not
    compete.  At most ``READ_AHEAD`` blocks are in the loop's hands at once,
    so a fast producer is slowed down instead of filling memory.
    """

    def __init__(self, stream: BinaryIO, hand_over: Callable[[Optional[List[Line]]], None]) -> None:
        super().__init__(name="doow-track-reader", daemon=True)
        self._stream = stream
        self._hand_over = hand_over
        self._slots = threading.Semaphore(READ_AHEAD)
        self._stopping = threading.Event()

    def run(self) -> None:
        try:
            blocks = read_lines(self._stream, block=READ_BLOCK)
            while self._slots.acquire() and not self._stopping.is_set():
                lines = next(blocks, None)
                if lines is None:
                    break
                self._hand_over(lines)
        finally:
            self._hand_over(None)

    def done_with_block(self) -> None:
        """The loop has judged a block: the reader may read another."""
        self._slots.release()

    def stop(self) -> None:
        """Read nothing more (a block already being read is still handed over)."""
        self._stopping.set()
        self._slots.release()


@dataclass
class PipeOptions:
    """What the command line asked for, beyond the settings."""

    outbox_path: str
    rejects_path: str
    dry_run: bool = False
    quiet: bool = False
    origin: str = "stdin"
    progress: bool = False


@dataclass
class Summary:
    """The run's outcome, as printed on stderr and by ``--json``."""

    lines_read: int = 0
    valid: int = 0
    invalid: int = 0
    delivered: int = 0
    rejected: int = 0
    outboxed: int = 0
    requests: int = 0
    seconds: float = 0.0
    exit_code: int = 0
    event_ids: List[str] = field(default_factory=list)
    errors: List[dict] = field(default_factory=list)
    invalid_by_kind: Dict[str, int] = field(default_factory=dict)
    outbox: Optional[str] = None
    rejects: Optional[str] = None
    interrupted: Optional[str] = None
    key_rejected: bool = False

    def as_json(self) -> dict:
        data = dict(self.__dict__)
        if self.valid > MAX_REPORTED_IDS:
            data.pop("event_ids")
        return data


class Ledger:
    """The pipe-mode sink: counts outcomes, writes the outbox and the rejects file."""

    def __init__(self, summary: Summary, options: PipeOptions, say: Callable[[str], None]) -> None:
        self.summary = summary
        self.outbox = outbox.LineFile(options.outbox_path)
        self.rejects = outbox.LineFile(options.rejects_path, "rejects file")
        self.origin = options.origin  # events' refs are their line numbers in this input
        self._say = say
        self.reasons: List[str] = []

    def delivered(self, events: List[Queued]) -> None:
        self.summary.delivered += len(events)

    def rejected(self, events: List[Tuple[Queued, str]]) -> None:
        self.summary.rejected += len(events)
        for event, reason in events:
            self._say(f"{self.origin}:{event.ref}: rejected by the API: {reason}")
        self.rejects.write(outbox.reject_line(event.body, reason) for event, reason in events)

    def deferred(self, events: List[Queued], reason: str) -> None:
        if not events:
            return
        self.summary.outboxed += len(events)
        self.outbox.write(wire.to_input_line(event.body) for event in events)
        if reason not in self.reasons:
            self.reasons.append(reason)


class PipeRun:
    """One pipe-mode run over one input stream."""

    def __init__(self, settings: Settings, stream: BinaryIO, options: PipeOptions, err: TextIO) -> None:
        self.settings = settings
        self.stream = stream
        self.options = options
        self.err = err
        self.summary = Summary()
        self.stats = Stats()
        self.ledger = Ledger(self.summary, options, self.say)
        self.intake = Intake(settings.attribution)
        self._started = time.monotonic()

    def say(self, text: str) -> None:
        """One diagnostic line on stderr (never the key: nothing here ever holds it)."""
        if not self.options.quiet:
            clear = "\r\x1b[K" if self.options.progress else ""
            self.err.write(f"{clear}doow-track: {text}\n")
            self.err.flush()

    def execute(self) -> Summary:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run(loop))
        finally:
            loop.close()
        return self.summary

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        queue = MemoryQueue()
        blocks: "asyncio.Queue[Optional[List[Line]]]" = asyncio.Queue()
        reader = Reader(self.stream, lambda lines: loop.call_soon_threadsafe(blocks.put_nowait, lines))
        pump = Pump(self.settings, queue, self.ledger, self.stats,
                    max_attempts=self.settings.max_attempts, halt_on_failure=True)
        self._install_signals(loop, pump, reader, blocks)
        progress = loop.create_task(self._progress()) if self.options.progress else None
        reader.start()
        intake = loop.create_task(self._intake(blocks, queue, reader))
        if self.options.dry_run:
            await intake
        else:
            await pump.run()
        if pump.halted and not self.summary.interrupted:
            self.summary.interrupted = f"delivery stopped ({pump.halted})"
        reader.stop()
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        await loop.run_in_executor(None, reader.join, 1.0)
        self._outbox_the_rest(blocks, queue)
        if progress:
            progress.cancel()
        self._finish(pump)

    async def _intake(self, blocks: "asyncio.Queue[Optional[List[Line]]]", queue: MemoryQueue,
                      reader: Reader) -> None:
        """Judge each block of lines as it arrives and queue what is valid, waiting for room."""
        try:
            while True:
                lines = await blocks.get()
                if lines is None:
                    break
                accepted = self._judge(lines)
                reader.done_with_block()
                if accepted and not self.options.dry_run:
                    await self._queue(queue, accepted)
        finally:
            queue.close()

    async def _queue(self, queue: MemoryQueue, accepted: List[Queued]) -> None:
        try:
            await queue.room.wait()
        except asyncio.CancelledError:
            self.ledger.deferred(accepted, self.summary.interrupted or "delivery stopped")
            raise
        queue.put(accepted)

    def _outbox_the_rest(self, blocks: "asyncio.Queue[Optional[List[Line]]]", queue: MemoryQueue) -> None:
        """Everything read but not delivered goes to the outbox: judged blocks, queued events."""
        reason = self.summary.interrupted or "delivery stopped"
        while not blocks.empty():
            lines = blocks.get_nowait()
            if lines:
                accepted = self._judge(lines)
                if not self.options.dry_run:
                    self.ledger.deferred(accepted, reason)
        self.ledger.deferred(queue.seal(), reason)

    def _install_signals(self, loop: asyncio.AbstractEventLoop, pump: Pump, reader: Reader,
                         blocks: "asyncio.Queue[Optional[List[Line]]]") -> None:
        def interrupted(name: str) -> None:
            if self.summary.interrupted:
                return
            self.summary.interrupted = f"interrupted by {name}"
            reader.stop()
            blocks.put_nowait(None)
            self.say(f"{name}: stopped reading; delivering what was read "
                     f"(up to {self.settings.shutdown_timeout:g}s), the rest goes to the outbox")
            loop.create_task(pump.stop(time.monotonic() + self.settings.shutdown_timeout))

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, interrupted, signal.Signals(signum).name)

    def _judge(self, lines: List[Line]) -> List[Queued]:
        """Intake for one block of lines; the hot loop of pipe mode, so lookups are hoisted."""
        accepted: List[Queued] = []
        summary, accept = self.summary, self.intake.accept
        for number, raw in lines:
            result = accept(raw, number)
            if result is None:
                continue
            if type(result) is Accepted:
                summary.valid += 1
                if summary.valid <= MAX_REPORTED_IDS + 1:
                    summary.event_ids.append(result.event_id)
                accepted.append(Queued(number, result.event_id, result.body))
            else:
                self._report_invalid(result)
        if lines:
            summary.lines_read = lines[-1][0]
        return accepted

    def _report_invalid(self, invalid: Invalid) -> None:
        self.summary.invalid += 1
        kinds = self.summary.invalid_by_kind
        kinds[invalid.kind] = kinds.get(invalid.kind, 0) + 1
        if len(self.summary.errors) < MAX_REPORTED_ERRORS:
            self.summary.errors.append({"line": invalid.line, "path": invalid.path,
                                        "message": invalid.message, "kind": invalid.kind})
        self.say(f"{self.options.origin}:{invalid.line}: {invalid.path}: {invalid.message}")

    async def _progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            s = self.summary
            self.err.write(f"\rdoow-track: read {s.lines_read}, delivered {s.delivered}, "
                           f"invalid {s.invalid}, outboxed {s.outboxed}\x1b[K")
            self.err.flush()

    def _finish(self, pump: Pump) -> None:
        s = self.summary
        self.ledger.outbox.close()
        self.ledger.rejects.close()
        s.requests = self.stats.requests
        s.key_rejected = self.stats.key_rejected
        s.seconds = round(time.monotonic() - self._started, 3)
        s.outbox, s.rejects = self.ledger.outbox.used, self.ledger.rejects.used
        s.exit_code = exit_code(s)
        if self.options.progress:
            self.err.write("\r\x1b[K")
        if self.intake.stale_replays:
            self.say(f"warning: {self.intake.stale_replays} events carry an event_id and a timestamp over 24 h old; "
                     "Doow de-duplicates event ids for about a day, so if these were delivered before, "
                     "they may be counted twice")


def exit_code(summary: Summary) -> int:
    """The most severe outcome wins: key rejected > not delivered > invalid or rejected."""
    if summary.key_rejected:
        return EX_NOPERM
    if summary.outboxed or summary.interrupted:
        return EX_TEMPFAIL
    if summary.invalid or summary.rejected:
        return EX_DATAERR
    return EX_OK


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def summary_line(summary: Summary, dry_run: bool = False) -> str:
    """The one-line account printed on stderr at the end of every run."""
    s = summary
    read = f"read {_count(s.lines_read, 'line')}: {s.valid} valid, {s.invalid} invalid"
    if dry_run:
        return f"dry run: {read}; nothing sent ({s.seconds:.2f}s)"
    text = (f"{read}; delivered {s.delivered}, rejected {s.rejected}, outboxed {s.outboxed}; "
            f"{_count(s.requests, 'request')} in {s.seconds:.2f}s")
    if s.interrupted:
        text += f"; {s.interrupted} after line {s.lines_read}"
    return text
