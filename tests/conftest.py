"""Fixtures shared by every test directory: a real receiver on 127.0.0.1, a free port."""

from __future__ import annotations

from typing import Callable, Iterator, List

import pytest

from doow_track_agent.receiver.server import Receiver
from tests.support.agent import AgentUnderTest, free_port as _free_port
from tests.support.cli import KEY


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
