"""The agent as a process: start, status, reload, stop; pidfile ownership; kill -9 and SIGTERM."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess

import pytest

from doow_track_agent.receiver.faults import Faults
from tests.support.agent import EVENT, Load, assert_stored_exactly_once, fail_receiver, heal_receiver, wait_for
from tests.support.cli import BIN, base_env, catches


def test_start_status_send_reload_stop(agent, receiver):
    pid = agent.pid
    assert pid and agent.status()["pid"] == pid

    status = agent.cli("status", "--config", agent.config, "--json")
    assert status.code == 0 and status.json["running"] and status.json["ready"]
    assert status.json["generation"] == 1 and status.json["key"].startswith("dk_…")

    sent = agent.cli("send", "--config", agent.config, "--json", '{"metric":"a","quantity":1,"license_id":"lic_1"}')
    assert sent.code == 0 and sent.json["accepted"] == 1
    assert_stored_exactly_once(receiver, sent.json["event_ids"])

    reloaded = agent.cli("reload", "--config", agent.config, "--json")
    assert reloaded.code == 0, reloaded.err
    assert reloaded.json == {"ok": True, "pid": pid, "generation_before": 1, "generation": 2, "error": None}

    stopped = agent.cli("stop", "--config", agent.config, "--json")
    assert stopped.code == 0 and stopped.json == {"was_running": True, "stopped": True, "pid": pid}
    assert not os.path.exists(agent.pidfile) and not os.path.exists(agent.socket)

    gone = agent.cli("status", "--config", agent.config, "--json")
    assert gone.code == 3 and gone.json["running"] is False and gone.json["spool"]["events"] == 0
    again = agent.cli("stop", "--config", agent.config, "--json")
    assert again.code == 0 and again.json["was_running"] is False


def test_second_instance_is_refused(agent):
    second = agent.start()
    assert second.code == 69
    assert f"pid {agent.pid}" in second.err and agent.pidfile in second.err
    assert agent.status()["running"]


def test_bad_config_fails_the_start_with_78(make_agent):
    agent = make_agent(flushAt="many")
    result = agent.start()
    assert result.code == 78 and "flushAt" in result.err
    assert agent.pid is None


def test_unusable_state_directory_fails_the_start_with_75(make_agent):
    agent = make_agent()
    blocker = os.path.join(agent.dir, "not-a-dir")
    open(blocker, "w").close()
    agent.write_config(spool={"dir": os.path.join(blocker, "spool")})
    result = agent.start()
    assert result.code == 75 and "spool" in result.err
    assert agent.pid is None and not os.path.exists(agent.pidfile)


def test_stale_pidfile_is_taken_over_and_the_spool_delivered(agent, receiver):
    fail_receiver(receiver)
    replies = agent.send([EVENT] * 20)
    acked = [reply["event_id"] for reply in replies if reply["ok"]]
    assert len(acked) == 20
    old_pid = agent.pid
    agent.kill(signal.SIGKILL)
    assert os.path.exists(agent.pidfile) and os.path.exists(agent.socket)

    heal_receiver(receiver)
    restarted = agent.start()
    assert restarted.code == 0, restarted.err
    assert agent.pid != old_pid
    assert f"stale pidfile {agent.pidfile} left by pid {old_pid}" in agent.log()
    assert_stored_exactly_once(receiver, acked)


def test_sigterm_under_load_leaves_the_rest_for_the_next_start(make_agent, receiver):
    agent = make_agent(shutdownTimeout=500)
    assert agent.start().code == 0
    receiver.set_faults(Faults(latency_ms=300))  # delivery slower than intake
    with Load(agent, producers=4) as load:
        wait_for(lambda: load.count() >= 3000, 60, "3000 acknowledged events")
        stopped = agent.cli("stop", "--config", agent.config, "--json")
    assert stopped.code == 0 and stopped.json["stopped"], stopped.err
    left = agent.cli("status", "--config", agent.config, "--json").json["spool"]["events"]
    assert left > 0, "the test needs events left in the spool at shutdown"

    heal_receiver(receiver)
    assert agent.start().code == 0
    assert_stored_exactly_once(receiver, load.acked)


def test_a_spool_from_a_newer_version_is_refused_with_78_and_left_untouched(make_agent):
    """A newer doow-track may have changed what a row means: reading it on would risk loss or double billing."""
    agent = make_agent()
    spool_dir = agent.settings["spool"]["dir"]
    os.makedirs(spool_dir)
    path = os.path.join(spool_dir, "spool.sqlite3")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, event_id TEXT, body BLOB, added REAL)")
        conn.execute("INSERT INTO events VALUES (1, 'kept', x'7b7d', 0)")
        conn.execute("PRAGMA user_version = 99")
    result = agent.start()
    assert result.code == 78 and "spool format 99" in result.err and "newer doow-track" in result.err, result.err
    assert agent.pid is None
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 99
        assert conn.execute("SELECT event_id FROM events").fetchall() == [("kept",)]
    listed = agent.cli("deadletter", "list", "--config", agent.config, "--json")
    assert listed.code == 78 and "spool format 99" in listed.err


@pytest.mark.parametrize("how", [["--foreground"], ["--daemon"]])
def test_a_stop_signal_during_start_up_drains_and_exits_0(make_agent, how):
    """Sent the moment the first handler is in place (before imports and the preflight); SIGUSR1 as a
    member of every signal that would kill the process: it stops the agent the way SIGTERM does."""
    agent = make_agent()
    agent.write_config(pidfile=agent.pidfile)
    child = subprocess.Popen([BIN, "--config", agent.config, *how], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=base_env())
    wait_for(lambda: catches(child.pid, signal.SIGUSR1), 20, "a handler")
    child.send_signal(signal.SIGUSR1)
    _, err = child.communicate(timeout=30)
    assert child.returncode == 0, err
    wait_for(lambda: "received SIGUSR1: stopping" in agent.log(), 20, "the agent to stop on SIGUSR1")
    wait_for(lambda: agent.pid is None, 20, "the agent to exit")
