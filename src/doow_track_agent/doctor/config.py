"""Config checks: the file is found, valid against the schema, does not expose the key, and tails files
only from directories other users cannot write."""

from __future__ import annotations

import os
import stat
from typing import Iterator

from doow_track_agent import config
from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.sources import file_tail

NO_SETTINGS = "the configuration cannot be used (see config.schema)"


def checks(subject: Subject) -> Iterator[Check]:
    yield _file(subject)
    yield _schema(subject)
    yield _permissions(subject)
    if subject.settings is not None and file_tail.patterns(subject.settings):
        yield _input_files(subject.settings)


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


def _input_files(settings: config.Settings) -> Check:
    """Tailed files (``input: {"mode": "file"}``) belong in a directory only the agent's user can write."""
    shared = file_tail.shared_directories(settings)
    if shared:
        return Check("config.input_files", WARN, "; ".join(shared),
                     "move the tailed files to a directory other users cannot write (chmod o-w, or a "
                     "directory of the agent's own)")
    return Check("config.input_files", OK, f"{', '.join(file_tail.patterns(settings))}: only the agent's user "
                                           "or root can create files there")
