"""Environment checks from the production checklist: separate keys per environment, collected logs."""

from __future__ import annotations

import os
from typing import Iterator, List

from doow_track_agent import config
from doow_track_agent.modes.agent import logs
from doow_track_agent.config import Settings
from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.modes.agent.logs import SYSLOG
from doow_track_agent.redact import mask_key


def checks(subject: Subject) -> Iterator[Check]:
    yield _separate_keys(subject)
    yield _logs(subject)


def _separate_keys(subject: Subject) -> Check:
    """One key shared by staging and production cannot be revoked for one of them alone."""
    if not subject.other_configs:
        return Check("environment.keys", SKIP, "no --other-config to compare keys with")
    if not subject.key:
        return Check("environment.keys", SKIP, "no key here to compare")
    shared: List[str] = []
    for path in subject.other_configs:
        try:
            other, _ = config.read_file(path)
        except config.ConfigError as error:
            return Check("environment.keys", WARN, f"cannot compare with {path}: {error.problems[0][1]}")
        if other.get("apiKey") == subject.key:
            shared.append(path)
    if shared:
        return Check("environment.keys", WARN, f"{', '.join(shared)} uses the same key {mask_key(subject.key)}",
                     "create separate SDK keys for staging and production, so that each can be revoked alone")
    return Check("environment.keys", OK, f"{mask_key(subject.key)} is not used by {', '.join(subject.other_configs)}")


def _logs(subject: Subject) -> Check:
    """Where the agent's log goes: as the running agent reports it, else as ``logs.target`` would choose."""
    settings = subject.settings
    if settings is None:
        return Check("environment.logs", SKIP, "no usable settings (see the config checks)")
    pid, document = subject.running_agent()
    if document and document.get("log"):
        return _target(f"the running agent (pid {pid})", document["log"], settings)
    if pid is None and not subject.agent_configured:
        return Check("environment.logs", SKIP, "pipe mode: messages go to stderr, which the job's runner keeps")
    return _target("a detached agent", logs.target(settings, foreground=False), settings)


def _target(who: str, where: str, settings: Settings) -> Check:
    if where == "stderr":
        return Check("environment.logs", OK, f"{who} logs to stderr (the journal under systemd, the container's log)")
    if where == "syslog":
        return Check("environment.logs", OK, f"{who} logs to syslog ({SYSLOG}); stderr (the journal under "
                                             "systemd) with --foreground")
    directory = os.path.dirname(where) or "."
    if not os.path.isdir(directory):
        return Check("environment.logs", FAIL, f"log file {where}: no directory {directory}",
                     "create it, owned by the agent's user; the agent does not start without its log")
    if not os.access(directory, os.W_OK):
        return Check("environment.logs", WARN, f"log file {where}: not writable by uid {os.getuid()}",
                     "fine if the agent runs as another user who can write there")
    if where != settings.log_file:
        return Check("environment.logs", WARN, f"no {SYSLOG}: {who} logs to {where}",
                     "set log.file to a file your log collector reads, or run the agent with --foreground "
                     "under systemd or a container runtime")
    return Check("environment.logs", OK, f"{who} logs to {where}")
