"""Config checks: the file is found, valid against the schema, and does not expose the key."""

from __future__ import annotations

import os
import stat
from typing import Iterator

from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check
from doow_track_agent.doctor.subject import Subject

NO_SETTINGS = "the configuration cannot be used (see config.schema)"


def checks(subject: Subject) -> Iterator[Check]:
    yield _file(subject)
    yield _schema(subject)
    yield _permissions(subject)


def _file(subject: Subject) -> Check:
    path = subject.config_path
    if not subject.config_exists:
        if subject.config_explicit:
            return Check("config.file", FAIL, f"{path}: no such file",
                         "pass the file the agent or job uses with --config FILE (or fix DOOW_TRACK_CONFIG)")
        return Check("config.file", SKIP, f"no config file at {path}: settings come from flags and environment")
    if not subject.config_readable:
        return Check("config.file", FAIL, f"{path}: not readable by uid {os.getuid()}",
                     "run doctor as the user the agent or job runs as, or with sudo")
    return Check("config.file", OK, path)


def _schema(subject: Subject) -> Check:
    if subject.errors:
        problems = [f"{error.source}: {path}: {message}" for error in subject.errors
                    for path, message in error.problems]
        return Check("config.schema", FAIL, "; ".join(problems),
                     "fix the keys named (doow-track schema --config prints the schema); "
                     "pipe mode and the agent refuse this configuration with exit 78")
    if subject.file_data is None:
        return Check("config.schema", SKIP, "no config file read")
    return Check("config.schema", OK, "valid against the config schema")


def _permissions(subject: Subject) -> Check:
    """A key in a file other users can read is a warning: it works, but the checklist forbids it."""
    if subject.file_data is None:
        return Check("config.permissions", SKIP, "no config file read")
    mode = stat.S_IMODE(os.stat(subject.config_path).st_mode)
    if "apiKey" not in subject.file_data:
        return Check("config.permissions", OK, f"mode {mode:04o}; the file holds no key")
    if subject.file_warnings:
        return Check("config.permissions", WARN,
                     f"mode {mode:04o}: the file holds the key and other users can read it",
                     f"chmod 600 {subject.config_path} (640 with a dedicated group), or move the key to "
                     "DOOW_TRACK_API_KEY or --api-key-file")
    return Check("config.permissions", OK, f"mode {mode:04o}: the key in it is not readable by other users")
