"""Blocking calls awaited from the event loop, on daemon threads: what each HTTP exchange runs on.

``loop.run_in_executor`` with a ``ThreadPoolExecutor`` would do the same,
but that executor's threads are joined when the interpreter exits: an
exchange stuck on an unresponsive server, abandoned at a shutdown deadline
(its task cancelled, its events deferred), would then hold the process for
up to its timeout after the run has ended.  Daemon threads do not.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from typing import Any, Callable, Optional, Tuple, TypeVar

T = TypeVar("T")
_Job = Optional[Tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[], Any]]]


class Workers:
    """At most ``size`` daemon threads, started as calls need them and then kept for the next calls."""

    def __init__(self, size: int, name: str) -> None:
        self._size = max(1, size)
        self._name = name
        self._jobs: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0     # threads waiting for a job
        self._waiting = 0  # jobs no thread has taken yet

    async def run(self, call: Callable[[], T]) -> T:
        """``call()`` on a worker thread; its result, or the exception it raised.

        Cancelling the awaiting task abandons the call: it runs to its end on
        its thread, and its outcome is dropped.
        """
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        with self._lock:
            self._waiting += 1
            start = self._waiting > self._idle and self._threads < self._size
            self._threads += start
        self._jobs.put((loop, done, call))
        if start:
            threading.Thread(target=self._work, name=self._name, daemon=True).start()
        return await done

    def close(self) -> None:
        """End the threads once the calls given so far are done (a call after this never runs)."""
        for _ in range(self._size):
            self._jobs.put(None)

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
                self._waiting -= job is not None
            if job is None:
                return
            loop, done, call = job
            try:
                outcome, failed = call(), False
            except BaseException as error:  # the awaiting task's to handle, as if it had made the call
                outcome, failed = error, True
            try:
                loop.call_soon_threadsafe(_settle, done, outcome, failed)
            except RuntimeError:  # the loop is closed: the run ended without waiting for this outcome
                pass
            del job, done, outcome  # a finished exchange is not kept alive by an idle thread


def _settle(done: "asyncio.Future[Any]", outcome: Any, failed: bool) -> None:
    if done.cancelled():
        return
    if failed:
        done.set_exception(outcome)
    else:
        done.set_result(outcome)
