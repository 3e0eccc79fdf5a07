"""Runs the check groups in the order an event travels: config, key, endpoint, licenses, events, agent."""

from __future__ import annotations

from typing import List, Optional

from doow_track_agent.doctor import agent, config, endpoint, environment, events, key, licenses
from doow_track_agent.doctor.api import Api
from doow_track_agent.doctor.report import Check
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.redact import mask_key


def run(subject: Subject) -> List[Check]:
    checks = [*config.checks(subject), *key.presence(subject)]
    api: Optional[Api] = None
    if subject.settings is not None:
        api = Api(subject.settings.endpoint, subject.key, subject.timeout)
    try:
        checks += endpoint.checks(subject, api)
        checks.append(key.acceptance(subject, api))
        checks += licenses.checks(subject, api)
    finally:
        if api is not None:
            api.close()
    checks += events.checks(subject)
    checks += agent.checks(subject)
    checks += environment.checks(subject)
    return checks


def facts(subject: Subject) -> dict:
    """What the checks were run against, for the ``--json`` document (the key masked)."""
    settings = subject.settings
    return {"config": subject.config_path if subject.config_exists else None,
            "key": mask_key(subject.key) if subject.key else None,
            "endpoint": settings.endpoint if settings else None}
