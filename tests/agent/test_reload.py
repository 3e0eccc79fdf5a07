"""SIGHUP: a new key and attribution under load lose nothing; a broken config changes nothing."""

from __future__ import annotations

import os
import signal

import pytest

from doow_track_agent.receiver.server import Receiver
from tests.support.agent import EVENT, AgentUnderTest, Load, assert_stored_exactly_once, free_port, wait_for

NEW_KEY = "dk_rotated_key_also_secret_77a1"


@pytest.fixture
def rotated_receiver(tmp_path):
    """A receiver that only knows the new key: the agent starts with a key it rejects (401)."""
    server = Receiver(str(tmp_path / "rotated.sqlite3"), port=0, keys=[NEW_KEY]).start()
    yield server
    server.stop()


def test_key_and_attribution_rotated_under_load(rotated_receiver):
    agent = AgentUnderTest(rotated_receiver)
    try:
        assert agent.start().code == 0
        with Load(agent, producers=4, batch=25) as load:
            wait_for(lambda: agent.status()["key_rejected"], 30, "the old key to be rejected")
            assert agent.get("/readyz")[0] == 503
            agent.write_config(apiKey=NEW_KEY, attribution={"env": "rotated", "team": "billing"})
            reloaded = agent.cli("reload", "--config", agent.config, "--json")
            assert reloaded.code == 0 and reloaded.json["generation"] == 2, reloaded.out + reloaded.err
            mark = load.count()
            wait_for(lambda: load.count() >= mark + 2000, 60, "2000 more events after the reload")
        assert not load.errors and not load.refused
        assert_stored_exactly_once(rotated_receiver, load.acked)
        for event_id in load.acked[-100:]:
            assert rotated_receiver.store.raw_event(event_id)["attribution"] == {"env": "rotated", "team": "billing"}
        assert rotated_receiver.store.raw_event(load.acked[0])["attribution"] == {"env": "test"}
        assert agent.status()["key"] == "dk_…77a1" and agent.get("/readyz")[0] == 200
        assert NEW_KEY not in agent.log()
    finally:
        agent.cleanup()


@pytest.mark.parametrize("broken", ["{not json", '{"flushAt": 0}', '{"socket": {"mode": "rw"}}'])
def test_broken_config_keeps_the_agent_running(agent, receiver, broken):
    """Both ways in: `doow-track reload` (validates first) and a raw SIGHUP (the agent validates)."""
    pid = agent.pid
    with open(agent.config, "w") as handle:
        handle.write(broken)
    result = agent.cli("reload", "--config", agent.config, "--pidfile", agent.pidfile, "--json")
    assert result.code == 78 and result.json["ok"] is False and result.json["pid"] == pid
    assert "keeps its current config" in result.json["error"]

    os.kill(pid, signal.SIGHUP)  # the raw signal, as `kill -HUP $(cat pidfile)` sends it
    wait_for(lambda: agent.status()["reload"]["attempts"] == 1, 10, "the reload attempt")
    status = agent.status()
    assert status["pid"] == pid and status["generation"] == 1
    assert status["reload"]["ok"] is False and status["reload"]["error"]
    assert "reload refused" in agent.log()
    replies = agent.send([EVENT])
    assert_stored_exactly_once(receiver, [replies[0]["event_id"]])


def test_config_only_the_agent_refuses_comes_back_through_reload(agent):
    """Schema-valid, but unusable by the agent (TCP beyond loopback without a token)."""
    agent.write_config(tcp={"listen": f"0.0.0.0:{free_port()}", "token": None})
    result = agent.cli("reload", "--config", agent.config, "--json")
    assert result.code == 78 and result.json["ok"] is False and "tcp.token" in result.json["error"]
    assert agent.status()["generation"] == 1


def test_reload_moves_the_socket_and_keeps_open_producers(agent, receiver):
    producer = agent.producer()
    old_socket = agent.socket
    agent.socket = old_socket + ".new"
    agent.write_config(socket={"path": agent.socket, "mode": "0600"})
    assert agent.cli("reload", "--config", agent.config, "--json").code == 0
    assert not os.path.exists(old_socket) and os.path.exists(agent.socket)
    kept = producer.send([EVENT])   # a connection made before the reload keeps working
    producer.close()
    fresh = agent.send([EVENT])
    assert_stored_exactly_once(receiver, [kept[0]["event_id"], fresh[0]["event_id"]])


def test_reloads_that_replace_the_http_client_leave_no_threads_or_connections_behind(agent, receiver):
    """Each reload that changes the connection settings makes a new client; the one it replaces is
    closed once its last request is done, so a reload a day cannot pile up threads and sockets."""
    def threads() -> int:
        return len(os.listdir(f"/proc/{agent.pid}/task"))

    def connections() -> int:
        return sum(1 for fd in os.listdir(f"/proc/{agent.pid}/fd")
                   if os.readlink(f"/proc/{agent.pid}/fd/{fd}").startswith("socket:"))

    acked = [reply["event_id"] for reply in agent.send([EVENT] * 20)]
    wait_for(lambda: receiver.store.count() == 20, 30, "the first events")
    before = (threads(), connections())
    for generation in range(2, 12):
        agent.write_config(concurrency=2 + generation % 2)  # a connection setting: a new client
        assert agent.cli("reload", "--config", agent.config, "--json").code == 0
        wait_for(lambda: agent.status()["generation"] == generation, 10, f"generation {generation}")
        acked += [reply["event_id"] for reply in agent.send([EVENT] * 20)]
        wait_for(lambda: receiver.store.count() == len(acked), 30, f"the events of generation {generation}")
    assert threads() <= before[0] + 3, (before, threads())
    assert connections() <= before[1] + 3, (before, connections())
    assert_stored_exactly_once(receiver, acked)
