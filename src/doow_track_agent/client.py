"""Finding and talking to a running agent: what ``status``, ``reload``, ``stop``, ``send`` and doctor share.

The agent is found from its config (``--config``, else ``$DOOW_TRACK_CONFIG``,
else ``/etc/doow-track/doow-track.json``): the health listener answers
``/status`` with the pid and config generation, and the pidfile is the
fallback when the health listener is off or unreachable.  Events go to the
agent's Unix socket: lines are written by a thread while replies are read
here, so a large input streams through without either side waiting on the
other.
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request
from typing import BinaryIO, List, Optional, Set, Tuple

from doow_track_agent import identity
from doow_track_agent.config import Listen, Settings
from doow_track_agent.exits import EX_DATAERR, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE
from doow_track_agent.modes.agent import pidfile

MAX_REPORTED_IDS = 1000
MAX_REPORTED_ERRORS = 100
_REFUSED = ("spool_full", "spool_error")
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def health_url(listen: Listen, path: str) -> str:
    host = _WILDCARDS.get(listen.host, listen.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{listen.port}{path}"


def fetch_status(settings: Settings, timeout: float = 3.0) -> Optional[dict]:
    """The agent's ``/status`` document, or None when nothing (or something else) answers."""
    if settings.health_listen is None:
        return None
    try:
        with urllib.request.urlopen(health_url(settings.health_listen, "/status"), timeout=timeout) as reply:
            document = json.loads(reply.read(1024 * 1024))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("running") is True else None


def find_agent(settings: Settings, pidfile_path: Optional[str],
               timeout: float = 3.0) -> Tuple[Optional[int], Optional[dict]]:
    """(pid, status document): by the health listener first (``timeout`` seconds), by ``pidfile_path`` when it
    does not answer.

    Neither is taken on trust: another local user can bind the health port
    first or plant a pidfile.  A pid that fails ``identity``'s checks is
    never returned; when nothing trustworthy is found but something claimed
    to be the agent, raises identity.Untrusted saying why.
    """
    refused: Optional[identity.Untrusted] = None
    status = fetch_status(settings, timeout)
    if status is not None and settings.health_listen is not None:
        try:
            return _checked_claim(status, settings.health_listen), status
        except identity.Untrusted as error:
            refused = error
    try:
        pid = pidfile.trusted_pid(pidfile_path) if pidfile_path else None
    except identity.Untrusted as error:
        refused, pid = error, None
    if pid is None and refused is not None:
        raise refused
    return pid, None


def _checked_claim(status: dict, listen: Listen) -> int:
    """The pid a /status document names, once ``identity`` vouches for the listener that sent it."""
    pid = status.get("pid")
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        raise identity.Untrusted(f"the health listener on {listen} answered /status with pid {pid!r}")
    identity.check_listener(pid, listen.port)
    return pid


def _pump_lines(stream: BinaryIO, sock: socket.socket, counter: List[int]) -> None:
    """Writer thread: stream the input to the agent, counting the lines that expect a reply."""
    try:
        for line in stream:
            if line.strip():
                counter[0] += 1
            sock.sendall(line if line.endswith(b"\n") else line + b"\n")
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the reader sees the connection end and reports what was not acknowledged


class Tally:
    """The agent's replies, summed up as the contract's JSON."""

    def __init__(self, acknowledged: Optional[Set[str]] = None) -> None:
        self.acknowledged = acknowledged  # every acknowledged id, uncapped, when the caller needs them all
        self.accepted = 0
        self.invalid = 0
        self.refused = 0
        self.event_ids: List[str] = []
        self.errors: List[dict] = []

    def add(self, reply: dict) -> None:
        if reply.get("ok"):
            self.accepted += 1
            if self.acknowledged is not None:
                self.acknowledged.add(reply["event_id"])
            if len(self.event_ids) <= MAX_REPORTED_IDS:
                self.event_ids.append(reply["event_id"])
            return
        if reply.get("kind") in _REFUSED:
            self.refused += 1
        else:
            self.invalid += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": reply.get("line"), "error": reply.get("error"), "kind": reply.get("kind")})

    def result(self, sent: int, unanswered: int, socket_path: str) -> dict:
        code = EX_TEMPFAIL if self.refused else (EX_DATAERR if self.invalid else EX_OK)
        if unanswered:
            code = EX_UNAVAILABLE
        return {"sent": sent, "accepted": self.accepted, "invalid": self.invalid, "refused": self.refused,
                "unanswered": unanswered,
                "event_ids": self.event_ids if len(self.event_ids) <= MAX_REPORTED_IDS else None,
                "errors": self.errors, "socket": socket_path, "exit_code": code}


def connect_to_agent(path: str, timeout: Optional[float] = None) -> socket.socket:
    """A connection to the agent's Unix socket, once ``identity`` vouches for the process serving it.

    Raises OSError (nothing listens) or identity.Untrusted (another user's program does).
    """
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(path)
        identity.check_socket_peer(sock, path)
    except BaseException:
        sock.close()
        raise
    return sock


def through_agent(stream: BinaryIO, path: str, timeout: float, acknowledged: Optional[Set[str]] = None) -> dict:
    """Send every line of ``stream`` to the agent's socket; the contract's ``send`` JSON.

    ``acknowledged``, when given, receives every event_id the agent committed
    (the JSON's ``event_ids`` stops at 1000).
    """
    try:
        sock = connect_to_agent(path)
    except (OSError, identity.Untrusted) as error:
        reason = f"no agent listening at {path} ({error.strerror}); nothing sent" if isinstance(error, OSError) else \
            f"{error}; nothing sent"
        return {"sent": 0, "accepted": 0, "invalid": 0, "event_ids": [], "socket": path,
                "errors": [{"line": None, "error": reason, "kind": "unavailable"}],
                "exit_code": EX_UNAVAILABLE}
    sock.settimeout(timeout)
    counter = [0]
    writer = threading.Thread(target=_pump_lines, args=(stream, sock, counter), daemon=True)
    writer.start()
    tally = Tally(acknowledged)
    try:
        for raw in sock.makefile("rb"):
            tally.add(json.loads(raw))
    except (OSError, ValueError):
        pass
    finally:
        writer.join(timeout=1.0)
        sock.close()
    answered = tally.accepted + tally.invalid + tally.refused
    return tally.result(counter[0], max(0, counter[0] - answered), path)
