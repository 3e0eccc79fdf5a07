"""``doow-track top`` for real: in tmux against a loaded agent, through a restart, and ``--once`` for scripts."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
from typing import Dict, List, Optional

import pytest

from tests.support.agent import EVENT, AgentUnderTest, Load, wait_for
from tests.support.cli import BIN, KEY

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed (scripts/test installs it)")


class Pane:
    """``top`` in a detached 80x24 tmux session of its own server (its own socket: runs never meet)."""

    def __init__(self, directory: str, command: str) -> None:
        self.socket = os.path.join(directory, "tmux.sock")
        self.status_file = os.path.join(directory, "top.status")
        self.screens: List[str] = []
        self._tmux("new-session", "-d", "-x", "80", "-y", "24", "-s", "top",
                   f"{command}; echo $? > {shlex.quote(self.status_file)}; sleep 60")

    def _tmux(self, *args: str) -> str:
        done = subprocess.run(["tmux", "-S", self.socket, *args], capture_output=True, text=True, timeout=10,
                              env={**os.environ, "TERM": "xterm-256color"}, check=True)
        return done.stdout

    def screen(self) -> str:
        text = self._tmux("capture-pane", "-p", "-t", "top")
        self.screens.append(text)
        return text

    def wait_for(self, pattern: str, timeout: float = 20) -> "re.Match[str]":
        return wait_for(lambda: re.search(pattern, self.screen(), re.M), timeout,
                        f"{pattern!r} on screen; last screen:\n{self.screens[-1] if self.screens else ''}")

    def press(self, key: str) -> None:
        self._tmux("send-keys", "-t", "top", key)

    def exit_status(self, timeout: float = 10) -> int:
        wait_for(lambda: os.path.exists(self.status_file) and open(self.status_file).read().strip(), timeout,
                 "top to exit")
        return int(open(self.status_file).read())

    def close(self) -> None:
        subprocess.run(["tmux", "-S", self.socket, "kill-server"], capture_output=True, check=False)


def _socket_row(agent: AgentUnderTest, screen: str) -> Optional[Dict[str, float]]:
    """The socket source's row: IN/s and ACCEPTED as shown (None while not on screen)."""
    name = re.escape(os.path.basename(agent.socket))
    found = re.search(rf"^socket\s+\S*{name}\s+([\d,.]+|-)\s+([\d,]+)\s+([\d,]+)\s*$", screen, re.M)
    if not found:
        return None
    rate = found.group(1)
    return {"rate": -1.0 if rate == "-" else float(rate.replace(",", "")),
            "accepted": float(found.group(2).replace(",", ""))}


def _total(screen: str, label: str) -> int:
    found = re.search(rf"^{re.escape(label)}\s+[\d,.-]+\s+([\d,]+)\s*$", screen, re.M)
    assert found, f"no {label} row on:\n{screen}"
    return int(found.group(1).replace(",", ""))


@pytest.fixture
def pane(agent: AgentUnderTest):
    opened = Pane(agent.dir, f"{shlex.quote(BIN)} top --config {shlex.quote(agent.config)}")
    yield opened
    opened.close()
    for screen in opened.screens:
        assert KEY not in screen and "dk_" not in screen, "top showed the key"


def test_top_follows_a_loaded_agent_through_a_restart_and_quits_on_q(agent, pane):
    with Load(agent, producers=1, batch=20, interval=0.05) as load:
        wait_for(lambda: load.count() > 0, 10, "the load to start")
        first = wait_for(lambda: (row := _socket_row(agent, pane.screen())) and row["rate"] > 0 and row, 20,
                         f"a moving socket rate; last screen:\n{pane.screens[-1] if pane.screens else ''}")
        later = wait_for(lambda: (row := _socket_row(agent, pane.screen())) and row["accepted"] > first["accepted"]
                         and row, 10, "the accepted count to move")
        assert later["rate"] > 0
        screen = pane.screens[-1]
        assert re.search(rf"pid {agent.pid} ", screen) and "ready" in screen and "key accepted" in screen
        assert _total(screen, "delivered") > 0 and "config generation 1" in screen
    # Idle now: once the agent is drained, the screen shows exactly what status --json says.
    wait_for(lambda: agent.status()["spool"]["events"] == 0, 20, "the spool to drain")
    status = agent.cli("status", "--config", agent.config, "--json").json
    socket_figures = next(item for item in status["sources"] if item["source"] == "socket")
    wait_for(lambda: (row := _socket_row(agent, pane.screen())) and row["accepted"] == socket_figures["accepted"]
             and row["rate"] == 0.0, 10, f"{socket_figures['accepted']} accepted at 0.0/s on screen")
    screen = pane.screens[-1]
    assert _total(screen, "delivered") == status["counters"]["delivered"] == socket_figures["accepted"]
    assert _total(screen, "requests") == status["counters"]["requests"]
    assert f"dead letters: {status['spool']['dead_letters']}" in screen

    old_pid = agent.pid
    agent.kill(signal.SIGTERM)
    pane.wait_for(r"agent not running")
    assert agent.start().code == 0
    pane.wait_for(rf"pid {agent.pid} ")
    assert agent.pid != old_pid
    agent.send([EVENT] * 3)
    pane.wait_for(r"^socket\s.*\s3\s+0\s*$")

    pane.press("q")
    assert pane.exit_status() == 0


def test_top_once_is_one_plain_frame_that_escapes_what_it_shows(make_agent, tmp_path):
    hostile = os.path.join(tmp_path, "usage\x1b[2J\x1b]0;pwned\x07.ndjson")
    with open(hostile, "w") as handle:
        handle.write('{"metric":"tokens","quantity":1,"license_id":"lic_top"}\n' * 4 + "not json\n")
    agent = make_agent(input={"mode": "file", "paths": [os.path.join(tmp_path, "*.ndjson")]})
    assert agent.start().code == 0
    wait_for(lambda: agent.status()["counters"]["invalid"] == 1, 20, "the file read")
    result = agent.cli("top", "--once", "--interval", "0.2", "--config", agent.config)
    assert result.code == 0, result.err
    assert "\x1b" not in result.out and "\x07" not in result.out, "a control character reached the terminal"
    assert re.search(r"^file\s+…?\S*\\x1b\]0;pwned\\x07\.ndjson\s+[\d.]+\s+4\s+1\s*$",
                     result.out, re.M), result.out
    assert all(len(line) <= 80 for line in result.out.splitlines())
    assert f"pid {agent.pid} " in result.out and "agent not running" not in result.out

    agent.kill(signal.SIGTERM)
    stopped = agent.cli("top", "--once", "--config", agent.config)
    assert stopped.code == 3 and "agent not running" in stopped.out


def test_top_refuses_without_a_health_listener_or_a_terminal(make_agent):
    agent = make_agent(health={"listen": None})
    result = agent.cli("top", "--config", agent.config)
    assert result.code == 78 and "health.listen" in result.err
    agent.write_config(health={"listen": f"127.0.0.1:{agent.port}"})
    result = agent.cli("top", "--config", agent.config)  # stdin and stdout are pipes here
    assert result.code == 64 and "--once" in result.err
