"""License checks: every ``--license``, and the ``license_id``s of ``--events``, exist for this key.

``GET /sdk/licenses/{id}`` answers 200 for a license of the key's workspace
and 404 otherwise; an event for an unknown license is refused by the API
(207), which pipe mode reports as exit 65 and the agent dead-letters.
"""

from __future__ import annotations

import json
from itertools import islice
from typing import Dict, Iterator, List, Optional

import httpx

from doow_track_agent.doctor.api import Api
from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.intake.policy import MAX_LINE_BYTES
from doow_track_agent.redact import server_text
from doow_track_agent.secure_files import open_regular

EVENT_LINES = 1000
MAX_LICENSES = 50


def wanted(subject: Subject) -> Dict[str, str]:
    """License id -> where it was named, ``--license`` first, then the events file in line order."""
    found = {license_id: "--license" for license_id in subject.licenses}
    if subject.events_path:
        for license_id in _event_licenses(subject.events_path):
            found.setdefault(license_id, subject.events_path)
    return found


def _event_licenses(path: str) -> List[str]:
    """The distinct license ids of the first lines (each read up to MAX_LINE_BYTES, one at a time);
    unreadable lines are the events checks' business."""
    ids: Dict[str, None] = {}
    try:
        with open_regular(path) as handle:
            for _ in range(EVENT_LINES):
                line = handle.readline(MAX_LINE_BYTES + 1)
                if not line:
                    break
                license_id = _license_of(line)
                if license_id is not None:
                    ids.setdefault(license_id, None)
    except OSError:
        pass
    return list(ids)


def _license_of(line: bytes) -> Optional[str]:
    try:
        event = json.loads(line)
    except ValueError:
        return None
    license_id = event.get("license_id") if isinstance(event, dict) else None
    return license_id if isinstance(license_id, str) else None


def checks(subject: Subject, api: Optional[Api]) -> Iterator[Check]:
    names = wanted(subject)
    if not names:
        yield Check("licenses", SKIP, "no --license given and no --events file",
                    "pass --license lic_... to check that a license exists for this key")
        return
    reason = _unanswerable(subject, api)
    for license_id, origin in islice(names.items(), MAX_LICENSES):
        name = f"license.{license_id}"
        yield Check(name, SKIP, reason) if reason or api is None else _lookup(api, name, license_id, origin)
    if len(names) > MAX_LICENSES:
        yield Check("licenses", WARN, f"{len(names)} distinct license ids; checked the first {MAX_LICENSES}")


def _unanswerable(subject: Subject, api: Optional[Api]) -> Optional[str]:
    """Why no lookup can mean anything: no key, no answer from the endpoint, or the key refused."""
    if not subject.key:
        return "no key to ask with"
    if api is None or api.probe is None:
        return "the endpoint gave no HTTP answer (see endpoint.*)"
    if api.probe.status in (401, 403):
        return "the key is rejected (see key.accepted)"
    return None


def _lookup(api: Api, name: str, license_id: str, origin: str) -> Check:
    try:
        answer = api.license(license_id)
    except httpx.HTTPError as error:
        return Check(name, WARN, f"no answer: {server_text(str(error))}", "run doctor again")
    if answer.status == 200:
        return Check(name, OK, f"exists in the key's workspace (from {origin})")
    if answer.status == 404:
        return Check(name, FAIL, f"unknown to the key's workspace (from {origin}): its events are refused",
                     "use the license id shown in Doow for the contract or license receiving the usage, "
                     "or a key of the workspace that owns this license")
    return Check(name, WARN, f"GET /sdk/licenses/{license_id} answered {answer.status} (from {origin})")
