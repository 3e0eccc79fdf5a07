"""Fixtures shared by every test directory: a real receiver on 127.0.0.1, a free port."""

from __future__ import annotations

import socket
from typing import Iterator

import pytest

from doow_track_agent.receiver.server import Receiver


@pytest.fixture
def receiver(tmp_path) -> Iterator[Receiver]:
    with Receiver(str(tmp_path / "receiver.sqlite")).start() as server:
        yield server


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
