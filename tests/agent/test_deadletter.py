"""Events the API refuses for good: dead-lettered with the reason, listed, exported, retried."""

from __future__ import annotations

import json
import subprocess

from doow_track_agent.receiver.faults import Faults
from tests.support.agent import EVENT, assert_stored_exactly_once, heal_receiver, wait_for
from tests.support.cli import BIN, KEY, base_env


def test_rejected_events_are_dead_lettered_and_can_be_retried(agent, receiver):
    receiver.set_faults(Faults(reject_every=3))
    replies = agent.send([EVENT] * 9)
    acked = [reply["event_id"] for reply in replies]
    wait_for(lambda: agent.status()["spool"]["dead_letters"] == 3, 30, "3 dead letters")
    assert agent.status()["counters"]["dead_lettered"] == 3

    listed = agent.cli("deadletter", "list", "--config", agent.config, "--json")
    assert listed.code == 0 and listed.json["dead_letters"] == 3
    rejected = {entry["event_id"] for entry in listed.json["events"]}
    assert rejected <= set(acked) and all(entry["reason"] for entry in listed.json["events"])

    exported = agent.cli("deadletter", "export", "--config", agent.config)
    lines = [json.loads(line) for line in exported.out.splitlines()]
    assert {line["event_id"] for line in lines} == rejected and all(line["metric"] == "tokens" for line in lines)
    _export_failures_name_the_path(agent)

    heal_receiver(receiver)
    retried = agent.cli("deadletter", "retry", "--config", agent.config, "--json")
    assert retried.code == 0 and retried.json["accepted"] == 3, retried.out + retried.err
    assert agent.cli("deadletter", "list", "--config", agent.config, "--json").json["dead_letters"] == 0
    assert_stored_exactly_once(receiver, acked)


def test_send_direct_needs_no_agent(receiver):
    from tests.support.cli import run

    result = run(["send", "--direct", "--api-key", KEY, "--endpoint", receiver.url, "--flush-interval", "100",
                  "--json", json.dumps(EVENT)])
    assert result.code == 0, result.err
    assert result.json["delivered"] == 1
    assert_stored_exactly_once(receiver, result.json["event_ids"])


def test_a_batch_refused_with_400_is_dead_lettered_once_not_retried(agent, receiver):
    """400 is permanent (docs/protocol.md): the batch is bisected down to the refused events (at most 2n-1
    requests for n events), which go to the dead-letter table; never a retry loop."""
    receiver.set_faults(Faults(fail_first=10**6, fail_status=400))
    agent.send([EVENT] * 5)
    wait_for(lambda: agent.status()["spool"]["dead_letters"] == 5, 30, "5 dead letters")
    status = agent.status()
    assert "HTTP 400" in (status["last_error"] or "")
    assert status["counters"]["retries"] == 0 and status["spool"]["events"] == 0
    requests = receiver.stats()["requests_total"]
    assert requests <= 2 * 5 - 1
    wait_for(lambda: agent.status()["uptime_seconds"] > status["uptime_seconds"] + 1, 10, "a second to pass")
    assert receiver.stats()["requests_total"] == requests


def _export_failures_name_the_path(agent) -> None:
    """An output that cannot be created is 73, one that cannot be written 74 (sysexits), never 70."""
    for output, code, said in ((agent.dir, 73, "is a directory"), ("/dev/full", 73, "not a regular file")):
        failed = agent.cli("deadletter", "export", "--config", agent.config, "--output", output)
        assert failed.code == code and f"{output}: {said}" in failed.err, failed.err
    with open("/dev/full", "wb") as full:
        done = subprocess.run([BIN, "deadletter", "export", "--config", agent.config], stdout=full,
                              stderr=subprocess.PIPE, env=base_env(), timeout=60)
    assert done.returncode == 74 and b"cannot write stdout: No space left" in done.stderr, done.stderr
