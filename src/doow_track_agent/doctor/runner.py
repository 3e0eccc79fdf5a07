"""Runs the check groups in the order an event travels: config, key, endpoint, licenses, events, agent."""

from __future__ import annotations

import os
from typing import List, Optional

from doow_track_agent.doctor import agent, config, endpoint, environment, events, key, licenses
from doow_track_agent.doctor.api import Api
from doow_track_agent.config import ConfigError
from doow_track_agent.doctor.report import FAIL, Check
from doow_track_agent.egress import describe_trust
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.redact import mask_key, shown_url


def run(subject: Subject) -> List[Check]:
    checks = [*config.checks(subject), *key.presence(subject)]
    api: Optional[Api] = None
    try:
        api = Api(subject.settings, subject.timeout) if subject.settings is not None else None
    except ConfigError as error:
        checks.append(Check("endpoint.tls", FAIL, str(error), "fix or remove the tls.* setting named here: "
                                                              "deliveries cannot start with it either"))
    try:
        found = endpoint.checks(subject, api)
        checks += [check for check in found if check.name not in {c.name for c in checks}]
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
            "endpoint": shown_url(settings.endpoint) if settings else None,
            "route": settings.route.as_json() if settings else None,
            "trust": describe_trust(settings.tls, os.environ) if settings else None}
