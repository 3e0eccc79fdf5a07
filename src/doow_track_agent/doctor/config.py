"""Config checks: the file is found, valid against the schema, and does not expose the key."""

from __future__ import annotations

import os
import stat
from typing import Iterator

from doow_track_agent import config
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
    """A file other users can change, or read when it holds the key, is a warning (the agent refuses it)."""
    if subject.file_data is None:
        return Check("config.permissions", SKIP, "no config file read")
    mode = stat.S_IMODE(os.stat(subject.config_path).st_mode)
    exposure = config.key_exposure(subject.config_path, subject.file_data)
    if exposure:
        problem, _, fix = exposure.partition("; ")
        return Check("config.permissions", WARN, f"mode {mode:04o}: {problem} (the agent refuses to run with it)",
                     fix)
    if "apiKey" not in subject.file_data:
        return Check("config.permissions", OK, f"mode {mode:04o}; the file holds no key")
    return Check("config.permissions", OK, f"mode {mode:04o}: the key in it is not readable by other users")
