"""Fixtures shared by every test directory: a real receiver on 127.0.0.1, a free port.

Each run also gets a home of its own (HOME, the XDG directories, ANSIBLE_HOME),
so that runs sharing the machine never share ``~/.ansible/test`` (ansible-test's
virtualenvs and cache), ``~/.cache`` or ``~/.local/state/doow-track``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Callable, Iterator, List

import pytest

from doow_track_agent.receiver.server import Receiver
from tests.support.agent import AgentUnderTest, free_port as _free_port
from tests.support.cli import KEY

_RUN_HOME: List[str] = []


def pytest_configure(config: pytest.Config) -> None:
    home = tempfile.mkdtemp(prefix="doow-tests-home-")
    _RUN_HOME.append(home)
    os.environ.update({"HOME": home, "ANSIBLE_HOME": os.path.join(home, ".ansible"),
                       "XDG_CACHE_HOME": os.path.join(home, ".cache"),
                       "XDG_STATE_HOME": os.path.join(home, ".local", "state"),
                       "XDG_CONFIG_HOME": os.path.join(home, ".config")})
    os.environ.pop("XDG_RUNTIME_DIR", None)  # a user agent's socket goes to the run's state directory


def pytest_unconfigure(config: pytest.Config) -> None:
    for home in _RUN_HOME:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def receiver(tmp_path) -> Iterator[Receiver]:
    with Receiver(str(tmp_path / "receiver.sqlite")).start() as server:
        yield server


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    return _free_port()


@pytest.fixture
def make_agent(receiver: Receiver) -> Iterator[Callable[..., AgentUnderTest]]:
    """Agents against this test's receiver; each is killed afterwards and its log searched for the key."""
    agents: List[AgentUnderTest] = []

    def make(**overrides: object) -> AgentUnderTest:
        agent = AgentUnderTest(receiver, **overrides)
        agents.append(agent)
        return agent

    yield make
    for agent in agents:
        assert KEY not in agent.log(), "the API key leaked into the agent's log"
        agent.cleanup()


@pytest.fixture
def agent(make_agent: Callable[..., AgentUnderTest]) -> AgentUnderTest:
    """A started agent."""
    started = make_agent()
    result = started.start()
    assert result.code == 0, result.err
    return started
