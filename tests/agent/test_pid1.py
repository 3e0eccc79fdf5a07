"""The agent as PID 1 of its own PID namespace (a container's init), without a container runtime.

``unshare --pid --fork --mount-proc`` makes the foreground agent PID 1: the
kernel then drops every signal it has no handler for, even SIGTERM from
outside, and processes orphaned in the namespace become its children.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess

import pytest

from doow_track_agent.receiver.faults import Faults
from tests.support.agent import EVENT, wait_for
from tests.support.cli import BIN, base_env


def _states(parent: int) -> list:
    """(pid, state) of the processes whose parent is ``parent`` (host pids)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent:
            found.append((int(pid), fields[0]))
    return found


def _answers(agent) -> bool:
    try:
        return agent.get("/readyz")[0] == 200
    except OSError:  # not listening yet
        return False


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                    reason="needs root and util-linux's unshare and nsenter for a PID namespace")
def test_pid1_drains_on_sigterm_exits_0_and_reaps_orphans(make_agent, receiver):
    agent = make_agent(flushInterval=60000)  # nothing is delivered before the stop
    wrapper = subprocess.Popen(["unshare", "--pid", "--fork", "--mount-proc", BIN, "--config", agent.config,
                                "--foreground"], env=base_env(), stderr=subprocess.PIPE)
    try:
        pid = wait_for(lambda: next((child for child, _ in _states(wrapper.pid)), None), 10, "the agent")
        wait_for(lambda: _answers(agent), 30, "the agent to be ready")
        assert agent.status()["pid"] == 1  # as the agent sees itself

        # An orphan in the namespace is reparented to PID 1, which must collect it.
        subprocess.run(["nsenter", "--target", str(pid), "--pid", "--", "sh", "-c", "sleep 0.3 & exit 0"],
                       check=True, timeout=10)
        wait_for(lambda: _states(pid) and True, 5, "the orphan to be reparented to the agent")
        wait_for(lambda: not _states(pid), 10, "the orphan to be reaped (no zombie left)")

        receiver.set_faults(Faults(latency_ms=800))
        replies = agent.send([dict(EVENT, quantity=n + 1) for n in range(30)])
        acked = {reply["event_id"] for reply in replies if reply["ok"]}
        os.kill(pid, signal.SIGTERM)  # from outside the namespace, as a runtime's stop
        assert wrapper.wait(timeout=60) == 0, wrapper.stderr.read().decode() if wrapper.stderr else ""
        assert acked <= receiver.store.event_ids()
        assert "received SIGTERM: stopping" in agent.log()
    finally:
        if wrapper.poll() is None:
            wrapper.kill()
            wrapper.wait()
