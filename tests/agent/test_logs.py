"""Log lines: text or JSON, and never a key, whatever the message or traceback says."""

from __future__ import annotations

import json
import logging

from doow_track_agent.modes.agent.logs import Formatter

KEY = "dk_live_abcdefgh12345678"


def record(message: str, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError(f"Authorization: Bearer {KEY}")
        except RuntimeError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("doow_track_agent.test", logging.ERROR, __file__, 1, message, (), exc_info)


def test_text_lines_mask_the_key_in_messages_and_tracebacks():
    line = Formatter(json_lines=False).format(record(f"sending with {KEY}", exc=True))
    assert KEY not in line and "dk_…5678" in line and "ERROR doow_track_agent.test:" in line


def test_json_lines_are_json_and_key_free():
    line = Formatter(json_lines=True).format(record(f"key={KEY}"))
    parsed = json.loads(line)
    assert parsed["level"] == "error" and parsed["msg"] == "key=dk_…5678" and parsed["ts"].endswith("Z")
