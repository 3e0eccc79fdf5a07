"""One owner for every task pipe mode and the agent start: a failure becomes an outcome, never silence.

An asyncio task whose exception nobody retrieves dies unseen ("Task
exception was never retrieved", at best, when it is garbage collected).
Every task is started through a ``Supervisor`` instead: it keeps a reference
(so the task is not collected mid-flight), logs a failure once with its
reason, and hands it to the owner's ``on_failure``, which decides what it
means there (pipe mode: exit 70 with the outbox written; the agent: the
source is marked failed in /status and /readyz, or the agent exits 70).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Dict, Optional, Set

log = logging.getLogger(__name__)

OnFailure = Callable[[str, BaseException], None]


class Supervisor:
    """Starts tasks and turns each one's failure into a call of ``on_failure(name, error)``."""

    def __init__(self, on_failure: Optional[OnFailure] = None) -> None:
        self._on_failure = on_failure
        self._tasks: Set["asyncio.Task[Any]"] = set()
        self.failures: Dict[str, str] = {}  # task name -> "Type: reason", for /status

    def start(self, work: Awaitable[Any], name: str) -> "asyncio.Task[Any]":
        """Run ``work`` as a task owned by this supervisor."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._done(done, name))
        return task

    def _done(self, task: "asyncio.Task[Any]", name: str) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        error = task.exception()
        if error is None:
            return
        reason = f"{type(error).__name__}: {error}"
        self.failures[name] = reason
        log.error("%s failed: %s", name, reason, exc_info=error)
        if self._on_failure is not None:
            try:
                self._on_failure(name, error)
            except Exception:  # the failure handler itself must not hide the first failure
                log.exception("%s: handling its failure failed too", name)

    @property
    def running(self) -> int:
        return len(self._tasks)

    async def cancel_all(self) -> None:
        """Cancel every task still running and wait for them to end."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
