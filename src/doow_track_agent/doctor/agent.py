"""Agent checks: running, ready, spool depth and age, dead letters, last delivery error.

The agent is found exactly as ``doow-track status`` finds it (``client.find_agent``:
the health listener's ``/status``, else the pidfile), and the spool is read
offline as ``status`` does when no agent answers.  Where no agent is
configured (a pipe-mode config) every agent check is skipped, never failed.
"""

from __future__ import annotations

import os
import stat
from typing import Iterator, Optional

from doow_track_agent import client, identity
from doow_track_agent.buffers import spool_offline
from doow_track_agent.cli import options
from doow_track_agent.config import Settings
from doow_track_agent.doctor.config import NO_SETTINGS
from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check, skipped
from doow_track_agent.doctor.subject import Subject

NAMES = ("agent.running", "agent.ready", "agent.spool", "agent.dead_letters", "agent.last_error")
STUCK_SECONDS = 300
NOT_RUNNING = "no agent is running (see agent.running)"


def checks(subject: Subject) -> Iterator[Check]:
    settings = subject.settings
    if settings is None:
        yield from skipped(NAMES, NO_SETTINGS)
        return
    pid, document = subject.running_agent()
    if subject.untrusted_agent:
        yield Check("agent.running", FAIL, subject.untrusted_agent, "another program answers in the agent's place: "
                    "find it (ss -ltnp, fuser) and remove it, or move health.listen / pidfile somewhere only the "
                    "agent's user can write")
        yield from skipped(NAMES[1:], "what claims to be the agent is not trusted (see agent.running)")
        return
    listening = _socket_accepts(settings.socket_path)
    if pid is None and not listening and not subject.agent_configured:
        yield from skipped(NAMES, "no agent configured (the config sets none of pidfile, socket, spool, health)")
        return
    yield _running(subject, settings, pid, document, listening)
    yield _ready(document, running=pid is not None or listening)
    figures = document["spool"] if document else spool_offline.offline_figures(settings.spool_dir, settings.spool_max_bytes)
    yield _spool(settings, figures, running=pid is not None or listening)
    yield _dead_letters(subject, figures)
    yield _last_error(document)


def _socket_accepts(path: Optional[str]) -> bool:
    """Whether the agent accepts connections on its Unix socket (``send``'s way in); another user's does not count."""
    try:
        if not path or not stat.S_ISSOCK(os.stat(path).st_mode):
            return False
        client.connect_to_agent(path, timeout=1.0).close()
        return True
    except (OSError, identity.Untrusted):
        return False


def _running(subject: Subject, settings: Settings, pid: Optional[int], document: Optional[dict],
             listening: bool) -> Check:
    pidfile = options.pidfile_path(subject.args, settings)
    socket_state = f"socket {settings.socket_path} {'accepts connections' if listening else 'is not listening'}"
    if document:
        return Check("agent.running", OK,
                     f"pid {pid}, version {document.get('version')}, up {document.get('uptime_seconds', 0):.0f} s, "
                     f"config generation {document.get('generation')}; {socket_state}")
    if pid is not None or listening:
        holder = f"pid {pid} holds {pidfile}" if pid is not None else socket_state
        return Check("agent.running", WARN, f"{holder}, but the health listener ({settings.health_listen or 'off'}) "
                                            "does not answer", "set health.listen so that status and doctor can see it")
    return Check("agent.running", FAIL,
                 f"nothing answers on health {settings.health_listen or '(off)'}, "
                 f"{'pidfile ' + pidfile + ' holds no live process' if pidfile else 'no pidfile configured'}; "
                 f"{socket_state}",
                 "start it (systemctl start doow-track, or doow-track --config FILE --pidfile FILE) "
                 "and read its log for why it stopped")


def _ready(document: Optional[dict], running: bool) -> Check:
    """The answer /readyz gives: both come from the agent's ``not_ready_reasons``."""
    if not running:
        return Check("agent.ready", SKIP, NOT_RUNNING)
    if document is None:
        return Check("agent.ready", SKIP, "the health listener does not answer")
    if document.get("ready"):
        return Check("agent.ready", OK, "ready (/readyz answers 200)")
    reasons = "; ".join(document.get("not_ready") or []) or "not ready"
    hint = ("rotate the key in the config, then doow-track reload" if document.get("key_rejected")
            else "see agent.last_error and the endpoint checks above")
    return Check("agent.ready", FAIL, f"not ready: {reasons}", hint)


def _spool(settings: Settings, figures: Optional[dict], running: bool) -> Check:
    if figures is None:
        return Check("agent.spool", SKIP, f"no spool in {settings.spool_dir}")
    age = figures.get("oldest_age_seconds")
    depth = f"{figures['events']} events waiting" + (f", the oldest for {age:.0f} s" if age is not None else "")
    if figures["full"]:
        return Check("agent.spool", FAIL, f"full ({figures['bytes']} of {figures['max_bytes']} bytes): "
                                          "new events are refused", "deliveries are stuck: fix what the failed "
                                                                    "checks above say, or raise spool.maxBytes")
    if not figures["events"]:
        return Check("agent.spool", OK, f"empty ({settings.spool_dir})")
    if not running:
        return Check("agent.spool", WARN, f"{depth}, and no agent delivers them", "start the agent")
    if age is not None and age > STUCK_SECONDS:
        return Check("agent.spool", WARN, depth, "deliveries are failing or not keeping up: see agent.last_error")
    return Check("agent.spool", OK, depth)


def _dead_letters(subject: Subject, figures: Optional[dict]) -> Check:
    if figures is None:
        return Check("agent.dead_letters", SKIP, "no spool")
    count = figures["dead_letters"]
    if not count:
        return Check("agent.dead_letters", OK, "none")
    config_flag = f" --config {subject.config_path}" if subject.file_data is not None else ""
    return Check("agent.dead_letters", FAIL, f"{count} events refused by the API for good",
                 f"doow-track deadletter list{config_flag} shows why; fix the cause, then "
                 f"doow-track deadletter retry{config_flag}")


def _last_error(document: Optional[dict]) -> Check:
    if document is None:
        return Check("agent.last_error", SKIP, "the agent's health listener does not answer")
    error, success = document.get("last_error"), document.get("last_success") or "never"
    if not error:
        return Check("agent.last_error", OK, f"no delivery error since start; last success {success}")
    if document.get("ready"):
        return Check("agent.last_error", OK, f"recovered from: {error}; last success {success}")
    return Check("agent.last_error", WARN, f"{error}; last success {success}",
                 "the endpoint and key checks above say whether the cause is still there")
