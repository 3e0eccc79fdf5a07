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
import threading
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Dict, List, Optional, TextIO, Tuple

from doow_track_agent import collector, stopping
from doow_track_agent.buffers.memory import MemoryQueue
from doow_track_agent.config import Settings
from doow_track_agent.delivery.pump import Pump, Queued
from doow_track_agent.exits import EX_DATAERR, EX_NOPERM, EX_OK, EX_SOFTWARE, EX_TEMPFAIL
from doow_track_agent.intake import wire
from doow_track_agent.intake.events import Intake, Invalid
from doow_track_agent.intake.reuse import EventIds
from doow_track_agent.modes.pipe import outbox
from doow_track_agent.sources.lines import Line, read_lines
from doow_track_agent.stats import Stats
from doow_track_agent.supervise import Supervisor

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
        self.error: Optional[str] = None  # why reading stopped before the end of the input

    def run(self) -> None:
        try:
            blocks = read_lines(self._stream, block=READ_BLOCK)
            while self._slots.acquire() and not self._stopping.is_set():
                lines = next(blocks, None)
                if lines is None:
                    break
                self._hand_over(lines)
        except Exception as error:  # EIO, a revoked terminal ...: an interruption, never an end of input
            self.error = f"reading failed: {type(error).__name__}: {error}"
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
    run_id: Optional[str] = None


@dataclass
class Summary:
    """The run's outcome, as printed on stderr and by ``--json``."""

    lines_read: int = 0
    valid: int = 0
    invalid: int = 0
    delivered: int = 0
    rejected: int = 0
    outboxed: int = 0
    duplicates: int = 0         # lines repeating an earlier line with the same event_id, byte for byte: sent once
    server_duplicates: int = 0  # delivered events the API says it already had (its ``duplicates``)
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
    internal_error: Optional[str] = None
    unwritten: int = 0
    unwritten_lines: List[List[int]] = field(default_factory=list)  # [first, last] runs of input lines
    unwritten_lines_complete: bool = True
    outbox_error: Optional[str] = None

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
        written = self.rejects.write(outbox.reject_line(event.body, reason) for event, reason in events)
        if written < len(events):
            self._say(f"cannot write {len(events) - written} refused event(s) to {self.rejects.path}: "
                      f"{self.rejects.error}; their reasons are in the messages above")

    def deferred(self, events: List[Queued], reason: str) -> None:
        if not events:
            return
        written = self.outbox.write(wire.to_input_line(event.body) for event in events)
        self.summary.outboxed += written
        if written < len(events):
            self.unwritten(events[written:], self.outbox.error)
        if reason not in self.reasons:
            self.reasons.append(reason)

    def unwritten(self, events: List[Queued], error: Optional[str]) -> None:
        """Events neither delivered nor saved: counted and named by input line, to be re-sent from the input."""
        summary = self.summary
        summary.unwritten += len(events)
        summary.outbox_error = summary.outbox_error or error
        runs = summary.unwritten_lines
        for event in events:
            if runs and event.ref == runs[-1][1] + 1:
                runs[-1][1] = event.ref
            elif len(runs) < MAX_REPORTED_IDS:
                runs.append([event.ref, event.ref])
            else:
                summary.unwritten_lines_complete = False


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
        self.event_ids = EventIds()
        self._started = time.monotonic()
        self._tasks = Supervisor(self._task_failed)
        # Made inside the running loop (Python 3.9 binds asyncio objects to the loop they are made in).
        self._memory: Optional[MemoryQueue] = None
        self._blocks: "Optional[asyncio.Queue[Optional[List[Line]]]]" = None
        self._reader: Optional[Reader] = None
        self._release_signals: Optional[Callable[[], None]] = None

    def say(self, text: str) -> None:
        """One diagnostic line on stderr (never the key: nothing here ever holds it)."""
        if not self.options.quiet:
            clear = "\r\x1b[K" if self.options.progress else ""
            self.err.write(f"{clear}doow-track: {text}\n")
            self.err.flush()

    def execute(self) -> Summary:
        """Run to the end of the input; whatever happens, every line read has an outcome in the summary."""
        collector.settled()
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._run(loop))
        except Exception as error:  # nobody foresaw it: exit 70, and still nothing read is lost
            self._recover(loop, error)
        finally:
            if self._release_signals is not None:
                self._release_signals()
            loop.close()
        return self.summary

    async def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        self._memory = queue = MemoryQueue()
        self._blocks = blocks = asyncio.Queue()
        self._reader = reader = Reader(self.stream, lambda lines: loop.call_soon_threadsafe(blocks.put_nowait, lines))
        # A dry run sends nothing: no client either (for an https endpoint it would load the trust store).
        pump = None if self.options.dry_run else Pump(self.settings, queue, self.ledger, self.stats,
                                                      max_attempts=self.settings.max_attempts, halt_on_failure=True)
        self._install_signals(loop, pump, reader, blocks)
        progress = self._tasks.start(self._progress(), "progress line") if self.options.progress else None
        reader.start()
        intake = self._tasks.start(self._intake(blocks, queue, reader), "intake")
        if pump is None:
            await asyncio.wait({intake})
        else:
            await pump.run()
        if pump is not None and pump.halted and not self.summary.interrupted:
            self.summary.interrupted = f"delivery stopped ({pump.halted})"
        reader.stop()
        intake.cancel()
        await asyncio.gather(intake, return_exceptions=True)
        if reader.is_alive():  # after the end of the input it has already ended; after a stop it may be mid-read
            await loop.run_in_executor(None, reader.join, 1.0)
        self._note_read_error()
        self._outbox_the_rest(blocks, queue)
        if progress:
            progress.cancel()
        self._finish()

    def _task_failed(self, name: str, error: BaseException) -> None:
        """A task of this run died: stop reading; what was read goes to the outbox."""
        if self.summary.internal_error is None:
            self.summary.internal_error = f"{name}: {type(error).__name__}: {error}"
        if self._reader is not None:
            self._reader.stop()
        if self._memory is not None:
            self._memory.close()

    def _note_read_error(self) -> None:
        if self._reader is not None and self._reader.error and not self.summary.interrupted:
            self.summary.interrupted = self._reader.error
            self.say(f"{self.options.origin}: {self._reader.error} after line {self.summary.lines_read}")

    def _recover(self, loop: asyncio.AbstractEventLoop, error: BaseException) -> None:
        """The run's last resort: cancel what still runs (in-flight batches defer their events), outbox the rest."""
        self.say(f"internal error: {type(error).__name__}: {error}; undelivered events go to the outbox")
        if self.summary.internal_error is None:
            self.summary.internal_error = f"{type(error).__name__}: {error}"
        if self._reader is not None:
            self._reader.stop()
        pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
        for task in pending:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        except Exception:  # already reporting an internal error; the outbox below still runs
            pass
        self._note_read_error()
        try:
            self._outbox_the_rest(self._blocks, self._memory)
        finally:
            self._finish()

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
            queue.put(accepted)
        except BaseException:  # cancelled or broken: events in hand go to the outbox, not nowhere
            self.ledger.deferred(accepted, self.summary.internal_error or self.summary.interrupted
                                 or "delivery stopped")
            raise

    def _outbox_the_rest(self, blocks: "Optional[asyncio.Queue[Optional[List[Line]]]]",
                         queue: Optional[MemoryQueue]) -> None:
        """Everything read but not delivered goes to the outbox: judged blocks, queued events."""
        reason = self.summary.internal_error or self.summary.interrupted or "delivery stopped"
        while blocks is not None and not blocks.empty():
            lines = blocks.get_nowait()
            if lines:
                accepted = self._judge(lines)
                if not self.options.dry_run:
                    self.ledger.deferred(accepted, reason)
        if queue is not None:
            self.ledger.deferred(queue.seal(), reason)

    def _install_signals(self, loop: asyncio.AbstractEventLoop, pump: Optional[Pump], reader: Reader,
                         blocks: "asyncio.Queue[Optional[List[Line]]]") -> None:
        def interrupted(name: str) -> None:
            if self.summary.interrupted:
                return
            self.summary.interrupted = f"interrupted by {name}"
            reader.stop()
            blocks.put_nowait(None)
            self.say(f"{name}: stopped reading; delivering what was read "
                     f"(up to {self.settings.shutdown_timeout:g}s), the rest goes to the outbox")
            if pump is not None:
                self._tasks.start(pump.stop(time.monotonic() + self.settings.shutdown_timeout), "stop on signal")

        # Every signal that would otherwise end the process stops the run the same way (see ``stopping``);
        # one noted during start-up, before the loop existed, is acted on now.
        self._release_signals = stopping.hand_over(loop, lambda signum: interrupted(stopping.name(signum)))
        for signum in stopping.take_early()[:1]:
            interrupted(stopping.name(signum))

    def _judge(self, lines: List[Line]) -> List[Queued]:
        """Intake for one block of lines, judged together (the hot loop of pipe mode is in ``accept_block``)."""
        run_id = self.options.run_id
        ids = [wire.derived_id(f"run:{run_id}", number, raw) for number, raw in lines] if run_id else None
        accepted, others = self.intake.accept_block(lines, Queued, ids)
        dropped = set()
        for index, number, raw, verdict in others:
            if type(verdict) is Invalid:
                self._report_invalid(verdict)
            elif self._reused(verdict.event_id, number, raw):  # only a line's own event_id can be reused
                dropped.add(index)
        if dropped:
            accepted = [event for index, event in enumerate(accepted) if index not in dropped]
        summary = self.summary
        summary.valid += len(accepted)
        room = MAX_REPORTED_IDS + 1 - len(summary.event_ids)
        if room > 0:
            summary.event_ids.extend(event.event_id for event in accepted[:room])
        if lines:
            summary.lines_read = lines[-1][0]
        return accepted

    def _reused(self, event_id: str, number: int, raw: bytes) -> bool:
        """Whether this line reuses an ``event_id`` of an earlier line (reported here; the line is not sent)."""
        reuse = self.event_ids.reused(event_id, number, raw)
        if reuse is None:
            return False
        if reuse.same:
            self.summary.duplicates += 1
            self.say(f"{self.options.origin}:{number}: duplicate of line {reuse.first_line} (same event_id "
                     f"{event_id!r}, same content): sent once")
        else:
            self._report_invalid(Invalid(
                number, "$.event_id", f"event_id {event_id!r} is already used by line {reuse.first_line} with "
                                      "different content; the API would count only one of them", "event_id"))
        return True

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

    def _finish(self) -> None:
        s = self.summary
        self.ledger.outbox.close()
        self.ledger.rejects.close()
        if self.ledger.outbox.error and not s.outbox_error:
            s.outbox_error = self.ledger.outbox.error
        s.requests = self.stats.requests
        s.server_duplicates = self.stats.duplicates
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
    """The most severe outcome wins: internal error > key rejected > not delivered > invalid or rejected."""
    if summary.internal_error:
        return EX_SOFTWARE
    if summary.key_rejected:
        return EX_NOPERM
    if summary.outboxed or summary.unwritten or summary.interrupted or summary.outbox_error:
        return EX_TEMPFAIL
    if summary.invalid or summary.rejected:
        return EX_DATAERR
    return EX_OK


def line_ranges(runs: List[List[int]]) -> str:
    """``[[3, 5], [9, 9]]`` -> ``"3-5, 9"``, in input order."""
    merged: List[List[int]] = []
    for first, last in sorted(runs):
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in merged)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def summary_line(summary: Summary, dry_run: bool = False) -> str:
    """The one-line account printed on stderr at the end of every run."""
    s = summary
    read = f"read {_count(s.lines_read, 'line')}: {s.valid} valid, {s.invalid} invalid"
    if s.duplicates:
        read += f", {_count(s.duplicates, 'duplicate line')} (sent once)"
    if dry_run:
        return f"dry run: {read}; nothing sent ({s.seconds:.2f}s)"
    text = (f"{read}; delivered {s.delivered}, rejected {s.rejected}, outboxed {s.outboxed}; "
            f"{_count(s.requests, 'request')} in {s.seconds:.2f}s")
    if s.server_duplicates:
        text += f"; the API already had {s.server_duplicates} of the delivered (not billed again)"
    if s.interrupted:
        text += f"; {s.interrupted} after line {s.lines_read}"
    if s.internal_error:
        text += f"; internal error ({s.internal_error})"
    return text


def unwritten_line(summary: Summary) -> Optional[str]:
    """What could be neither delivered nor saved, by input line, or None."""
    if not summary.unwritten:
        return None
    more = "" if summary.unwritten_lines_complete else " and more"
    return (f"{summary.unwritten} undelivered event(s) could not be written to the outbox "
            f"({summary.outbox_error}): re-send input lines {line_ranges(summary.unwritten_lines)}{more}")
