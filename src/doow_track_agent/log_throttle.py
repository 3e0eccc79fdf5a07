"""Log lines a hostile peer can trigger at will, kept to one per minute."""

from __future__ import annotations

import logging
import time
from typing import Dict, Tuple


class Throttled:
    """One message per ``key`` at most every ``interval`` seconds, saying how many were held back.

    For what a hostile peer can trigger at will (refused connections, failed
    accepts): the log stays readable and bounded instead of growing by the
    attacker's rate.
    """

    def __init__(self, logger: logging.Logger, interval: float = 60.0) -> None:
        self.logger = logger
        self.interval = interval
        self._seen: Dict[str, Tuple[float, int]] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        last, held = self._seen.get(key, (None, 0))
        if last is not None and now - last < self.interval:
            self._seen[key] = (last, held + 1)
            return
        self._seen[key] = (now, 0)
        if held:
            message += f" ({held} more like this in the last {self.interval:g}s)"
        self.logger.warning(message, *args)
