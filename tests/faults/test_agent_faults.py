"""The agent process against injected faults: kill -9, a receiver outage, a full or read-only disk,
SIGHUP storms and hostile producers.  Every acknowledged event must be stored exactly once."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import threading
import time
from typing import Iterator, List

import pytest

from doow_track_agent.modes.agent.pidfile import process_alive
from doow_track_agent.receiver.server import Receiver
from tests.support.agent import EVENT, AgentUnderTest, Load, fail_receiver, heal_receiver, wait_for

SEED = int(os.environ.get("DOOW_FAULT_SEED", "0")) or random.randrange(1, 10**6)


@pytest.fixture
def chance() -> random.Random:
    """Random moments, reproducible: the seed is printed with any failure (DOOW_FAULT_SEED re-runs it)."""
    print(f"DOOW_FAULT_SEED={SEED}")
    return random.Random(SEED)


@pytest.fixture
def agents(receiver) -> Iterator[List[AgentUnderTest]]:
    made: List[AgentUnderTest] = []
    yield made
    for agent in made:
        agent.cleanup()


def settle(ledger, receiver: Receiver, sent: int, acked: List[str], iterations: int = 1,
           timeout: float = 120.0) -> None:
    """Record the row, then check: every acknowledged event stored, each once; nothing else invented."""
    assert len(set(acked)) == len(acked), "one event_id acknowledged twice"
    try:
        wait_for(lambda: set(acked) <= receiver.store.event_ids(), timeout, "every acknowledged event stored")
    finally:
        stored = receiver.store.event_ids()
        ledger.record(sent=sent, acknowledged=len(acked), stored=len(stored), duplicates=receiver.store.duplicates(),
                      lost=len(set(acked) - stored), iterations=iterations)
    # Events committed but killed before their reply are stored without an ack; they are real, and once.
    assert len(stored) <= sent and receiver.store.count() == len(stored)


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))


def test_kill_9_at_random_moments_under_load(receiver, agents, ledger, chance):
    """4 producers and deliveries in flight; kill -9 twenty times in a row, restart each time."""
    receiver.set_faults(latency_ms=20)
    agent = AgentUnderTest(receiver)
    agents.append(agent)
    sent, acked = 0, []
    for _ in range(20):
        started = agent.start()
        assert started.code == 0, started.err
        with Load(agent, producers=4, batch=50) as load:
            time.sleep(chance.uniform(0.2, 1.2))
            agent.kill(signal.SIGKILL)
        sent += load.sent
        acked += load.acked
    assert agent.start().code == 0
    settle(ledger, receiver, sent, acked, iterations=20)
    assert agent.status()["running"]


def test_receiver_down_for_60s_under_steady_load(tmp_path, agents, ledger):
    """Connection refused for a minute: the spool absorbs it, memory stays flat, /readyz says so."""
    first = Receiver(str(tmp_path / "receiver.sqlite3")).start()
    port = int(first.url.rsplit(":", 1)[1])
    agent = AgentUnderTest(first)
    agents.append(agent)
    assert agent.start().code == 0
    pid = agent.pid
    with Load(agent, producers=2, batch=25, interval=0.025) as load:
        wait_for(lambda: load.count() >= 1000, 30, "traffic before the outage")
        first.stop()
        started = time.monotonic()
        wait_for(lambda: agent.get("/readyz")[0] == 503, 20, "/readyz 503 during the outage")
        early_peak = 0
        while time.monotonic() - started < 60:
            time.sleep(2)
            assert agent.get("/readyz")[0] == 503 and agent.get("/healthz")[0] == 200
            if time.monotonic() - started > 10 and not early_peak:
                early_peak = peak_rss_kib(pid)
        outage_peak = peak_rss_kib(pid)
        spooled = agent.status()["spool"]["events"]
        second = Receiver(str(tmp_path / "receiver.sqlite3"), port=port).start()
        try:
            wait_for(lambda: agent.get("/readyz")[0] == 200, 60, "/readyz 200 after the outage")
        finally:
            load.stop()
        try:
            settle(ledger, second, load.sent, load.acked)
        finally:
            second.stop()
    assert not load.refused and spooled > 30000, f"only {spooled} events spooled during the outage"
    assert outage_peak < 150 * 1024, f"agent peak RSS {outage_peak} KiB during the outage"
    assert outage_peak - early_peak < 20 * 1024, f"memory grew {early_peak} -> {outage_peak} KiB with the backlog"


@pytest.fixture
def small_disk(agents, receiver) -> Iterator[AgentUnderTest]:
    """An agent whose state directory is a 3 MiB tmpfs (we run as root: a chmod would prove nothing)."""
    agent = AgentUnderTest(receiver)
    agents.append(agent)
    spool_dir = os.path.join(agent.dir, "spool")
    os.makedirs(spool_dir)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0750", "tmpfs", spool_dir], check=True)
    try:
        yield agent
    finally:
        agent.kill()
        subprocess.run(["umount", "-l", spool_dir], check=False)


def send_until_refused(agent: AgentUnderTest, acked: List[str], limit: int = 400) -> int:
    """Send batches until one reply is a refusal; returns how many events were sent."""
    producer = agent.producer()
    try:
        for batch in range(1, limit + 1):
            replies = producer.send([EVENT] * 50)
            acked += [reply["event_id"] for reply in replies if reply["ok"]]
            refused = [reply for reply in replies if not reply["ok"]]
            if refused:
                assert refused[0]["kind"] == "spool_error" and "full" in refused[0]["error"], refused[0]
                return batch * 50
    finally:
        producer.close()
    raise AssertionError("the agent kept acknowledging events it cannot have stored")


def test_disk_full_and_read_only_state_directory_refuse_instead_of_acknowledging(small_disk, receiver, ledger):
    agent = small_disk
    spool_dir = os.path.join(agent.dir, "spool")
    # Room to free later, twice: in WAL mode a full disk also blocks checkpoints, so deletes
    # (and the next start's first write) need real free space again, as they would on a host.
    fillers = [os.path.join(spool_dir, "filler-1"), os.path.join(spool_dir, "filler-2")]
    assert agent.start().code == 0
    for filler in fillers:
        with open(filler, "wb") as handle:
            handle.write(b"\0" * 1024 * 1024)
    fail_receiver(receiver)
    acked: List[str] = []
    sent = send_until_refused(agent, acked)
    cli = agent.cli("send", "--config", agent.config, "--json", stdin=b"".join(json.dumps(EVENT).encode() + b"\n" for _ in range(200)))
    sent += 200
    assert cli.code == 75 and cli.json["errors"][-1]["kind"] == "spool_error", cli.out + cli.err
    acked += cli.json["event_ids"]
    assert agent.status()["running"] and process_alive(agent.pid)

    os.unlink(fillers[0])
    heal_receiver(receiver)
    wait_for(lambda: agent.status()["spool"]["events"] == 0, 60, "the spool to drain")
    again = agent.send([EVENT] * 10)
    sent += 10
    assert all(reply["ok"] for reply in again), again
    acked += [reply["event_id"] for reply in again]

    # Read-only: a mount with files open for writing cannot be remounted, so the agent meets it at start.
    stopped = agent.cli("stop", "--config", agent.config, "--json")
    assert stopped.code == 0, stopped.err
    os.unlink(fillers[1])   # the spool file keeps the pages it grew to; the next start needs room to write
    subprocess.run(["mount", "-o", "remount,ro", spool_dir], check=True)
    try:
        refused_start = agent.start()
    finally:
        subprocess.run(["mount", "-o", "remount,rw", spool_dir], check=True)
    assert refused_start.code == 75 and "spool" in refused_start.err and agent.pid is None, refused_start.err
    assert agent.start().code == 0
    recovered = agent.send([EVENT] * 5)
    sent += 5
    assert all(reply["ok"] for reply in recovered), recovered
    acked += [reply["event_id"] for reply in recovered]
    settle(ledger, receiver, sent, acked, iterations=2)
    assert receiver.store.count() == len(acked), "a refused event was stored after all"


def test_fifty_sighups_under_load_some_broken(receiver, agents, ledger):
    agent = AgentUnderTest(receiver)
    agents.append(agent)
    assert agent.start().code == 0
    pid = agent.pid
    broken = ["{not json", '{"flushAt": 0}', '{"socket": {"mode": "rw"}}']
    good = 0
    with Load(agent, producers=4, batch=25) as load:
        for attempt in range(1, 51):
            if attempt % 5 == 0:
                agent_config_raw(agent, broken[attempt % len(broken)])
            else:
                agent.write_config(flushAt=10 + attempt, attribution={"env": "test", "reload": str(attempt)})
                good += 1
            os.kill(pid, signal.SIGHUP)
            wait_for(lambda: agent.status()["reload"]["attempts"] == attempt, 15, f"reload {attempt}")
            time.sleep(0.05)  # let traffic flow under each generation
        agent.write_config(flushAt=50)
    status = agent.status()
    assert status["pid"] == pid and status["generation"] == 1 + good
    assert not load.refused and not load.errors
    settle(ledger, receiver, load.sent, load.acked, iterations=50)
    assert receiver.store.count() == len(load.acked)


def agent_config_raw(agent: AgentUnderTest, text: str) -> None:
    temporary = agent.config + ".tmp"
    with open(temporary, "w") as handle:
        handle.write(text)
    os.replace(temporary, agent.config)


def test_hostile_producers_leave_the_others_unaffected(receiver, agents, ledger):
    """Silent, half a line then gone, a flood that never reads its replies, binary garbage."""
    agent = AgentUnderTest(receiver)
    agents.append(agent)
    assert agent.start().code == 0
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(agent.socket)
    half = socket.socket(socket.AF_UNIX)
    half.connect(agent.socket)
    half.sendall(b'{"metric":"tokens","quantity":3,"lic')
    half.close()
    stop = threading.Event()

    def flood(payload: bytes) -> None:
        sock = socket.socket(socket.AF_UNIX)
        sock.connect(agent.socket)
        sock.settimeout(1)
        try:
            while not stop.is_set():
                sock.sendall(payload)
        except OSError:
            pass  # its buffers are full because it never reads: only it is stalled
        finally:
            sock.close()

    valid = (json.dumps(EVENT).encode() + b"\n") * 500
    garbage = os.urandom(64 * 1024).replace(b"\n", b"x") + b"\n"
    floods = [threading.Thread(target=flood, args=(payload,), daemon=True) for payload in (valid, garbage)]
    for thread in floods:
        thread.start()
    acked, slowest = [], 0.0
    try:
        for _ in range(40):
            began = time.monotonic()
            replies = agent.send([EVENT] * 50)
            slowest = max(slowest, time.monotonic() - began)
            acked += [reply["event_id"] for reply in replies if reply["ok"]]
    finally:
        stop.set()
        for thread in floods:
            thread.join(timeout=10)
        silent.close()
    assert len(acked) == 2000 and slowest < 2.0, f"a well-behaved producer waited {slowest:.2f}s"
    wait_for(lambda: set(acked) <= receiver.store.event_ids(), 60, "the good producer's events")
    stored = receiver.store.event_ids()
    ledger.record(sent=2000, acknowledged=len(acked), stored=len(set(acked) & stored),
                  duplicates=receiver.store.duplicates(), lost=len(set(acked) - stored))
    assert process_alive(agent.pid) and agent.get("/healthz")[0] == 200
