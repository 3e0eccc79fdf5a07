"""Fixtures of the Ansible tests: the 4-host fleet (3 local hosts, 1 over SSH),
the local receiver and the wheels, built once per session."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))

import doow_fleet  # noqa: E402


@pytest.fixture(scope="session")
def fleet():
    fleet, cleanup = doow_fleet.setup()
    try:
        yield fleet
    finally:
        cleanup()
