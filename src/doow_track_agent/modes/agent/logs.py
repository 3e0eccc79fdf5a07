"""The agent's logging: where lines go (stderr, file, syslog), their shape (text or JSON), and no keys.

Every line passes one formatter that masks anything shaped like a Doow key
(``dk_…abcd``), tracebacks included: the rule "the key is never logged"
then holds for messages nobody wrote with it in mind, such as an exception
text quoting a header.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import sys
import time

from doow_track_agent.config import Settings
from doow_track_agent.redact import scrub_secrets
from doow_track_agent.secure_files import ensure_directory, opener

SYSLOG = "/dev/log"  # the local syslog socket a detached agent logs to
_FALLBACK_NAME = "agent.log"


class LogSetupError(Exception):
    """The configured log destination cannot be opened."""


def _utc(record: logging.LogRecord) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z"


class Formatter(logging.Formatter):
    """Text (``time LEVEL logger: message``) or JSON lines, always key-free."""

    def __init__(self, json_lines: bool, with_time: bool = True) -> None:
        super().__init__()
        self.json_lines = json_lines
        self.with_time = with_time

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        if self.json_lines:
            text = json.dumps({"ts": _utc(record), "level": record.levelname.lower(), "logger": record.name,
                               "pid": record.process, "msg": message})
        else:
            text = f"{record.levelname} {record.name}: {message}"
            if self.with_time:
                text = f"{_utc(record)} {text}"
        return scrub_secrets(text)


def target(settings: Settings, foreground: bool) -> str:
    """Where the agent's log goes: ``stderr``, ``syslog``, or a file's path.

    log.file when set; else stderr in the foreground; else syslog when
    ``/dev/log`` exists; else ``agent.log`` in the spool directory.
    """
    if settings.log_file:
        return settings.log_file
    if foreground:
        return "stderr"
    if os.path.exists(SYSLOG):
        return "syslog"
    return os.path.join(settings.spool_dir, _FALLBACK_NAME)


def _handler(settings: Settings, foreground: bool) -> logging.Handler:
    where = target(settings, foreground)
    if where == "stderr":
        return logging.StreamHandler(sys.stderr)
    if where == "syslog":
        handler = logging.handlers.SysLogHandler(SYSLOG, logging.handlers.SysLogHandler.LOG_DAEMON)
        handler.ident = f"doow-track[{os.getpid()}]: "
        return handler
    try:
        ensure_directory(os.path.dirname(os.path.abspath(where)), "the directory of log.file")
        return _PrivateFileHandler(where, encoding="utf-8")
    except OSError as exc:
        raise LogSetupError(f"log.file {where}: {exc.strerror}") from None


class _PrivateFileHandler(logging.handlers.WatchedFileHandler):
    """Follows logrotate's renames; every (re)open refuses a symlink or another user's file."""

    def _open(self):  # type: ignore[no-untyped-def]
        return open(self.baseFilename, self.mode, encoding=self.encoding, opener=opener("log.file", 0o640))


def setup(settings: Settings, foreground: bool) -> None:
    """(Re)configure the root logger; called at start and on every reload."""
    handler = _handler(settings, foreground)
    syslog = isinstance(handler, logging.handlers.SysLogHandler)
    handler.setFormatter(Formatter(settings.log_format == "json", with_time=not syslog))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if settings.debug else settings.log_level.upper())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
