"""Key checks: one is set, it has the shape of an SDK key, and the endpoint accepts it.

The key itself is never part of a check: only ``mask_key``'s ``dk_…abcd``.
"""

from __future__ import annotations

from typing import Iterator, Optional

from doow_track_agent.doctor.api import PROBE_LICENSE, Api
from doow_track_agent.doctor.config import NO_SETTINGS
from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.redact import mask_key

NEW_KEY = "create an SDK key in Doow (Company Settings > Integrations) and put it in the config or the environment"


def presence(subject: Subject) -> Iterator[Check]:
    yield _present(subject)
    yield _format(subject)


def _present(subject: Subject) -> Check:
    if subject.key:
        if subject.key_source == "--api-key":
            return Check("key.present", WARN, f"{mask_key(subject.key)} from --api-key",
                         "other local users see command lines in ps: use DOOW_TRACK_API_KEY or --api-key-file")
        return Check("key.present", OK, f"{mask_key(subject.key)} from {subject.key_source}")
    if subject.key_problem:
        return Check("key.present", OK, "set, but malformed (see key.format)")
    if subject.settings is None:
        return Check("key.present", SKIP, NO_SETTINGS)
    return Check("key.present", FAIL, "no key in --api-key, --api-key-file, DOOW_TRACK_API_KEY or the config file",
                 "set DOOW_TRACK_API_KEY, pass --api-key-file FILE, or put apiKey in a config file of mode 600")


def _format(subject: Subject) -> Check:
    if subject.key_problem:
        return Check("key.format", FAIL, subject.key_problem, NEW_KEY)
    if subject.key:
        return Check("key.format", OK, "dk_ prefix and SDK key characters")
    return Check("key.format", SKIP, "no key")


def acceptance(subject: Subject, api: Optional[Api]) -> Check:
    """``GET /sdk/licenses/{probe}``: authenticated, so 401/403 means the key is refused."""
    if not subject.key:
        return Check("key.accepted", SKIP, "no key to try")
    answer = api.probe if api else None
    if answer is None:
        return Check("key.accepted", SKIP, "the endpoint gave no HTTP answer (see endpoint.*)")
    asked = f"GET /sdk/licenses/{PROBE_LICENSE} answered {answer.status}"
    if answer.status in (401, 403):
        return Check("key.accepted", FAIL, f"{mask_key(subject.key)} rejected: {asked}",
                     f"the key is revoked or belongs to another workspace (pipe mode exits 77): {NEW_KEY}")
    if answer.status in (200, 404):
        return Check("key.accepted", OK, f"{mask_key(subject.key)} accepted ({asked})")
    return Check("key.accepted", WARN, f"cannot tell: {asked}", "see endpoint.http")
