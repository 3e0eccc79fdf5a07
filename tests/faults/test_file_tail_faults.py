"""The file tail source in a real agent against the real receiver: kill -9 while reading and while
the file rotates, and copy-truncate.  Each line written to the file must be stored exactly once."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import threading
import time
from collections import Counter
from typing import Iterator

import pytest

from doow_track_agent.receiver.server import Receiver
from tests.support.agent import AgentUnderTest, wait_for

SEED = int(os.environ.get("DOOW_FAULT_SEED", "0")) or random.randrange(1, 10**6)


class Writer:
    """Appends numbered events to a file, as a billing job would; rotates it by rename on demand."""

    def __init__(self, path: str, lines_per_tick: int = 20) -> None:
        self.path = path
        self.lines_per_tick = lines_per_tick  # every 10 ms
        self.written = 0
        self.rotations = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def line(self) -> bytes:
        event = {"metric": "rows", "quantity": 1, "license_id": "lic_tail", "attribution": {"seq": self.written}}
        self.written += 1
        return json.dumps(event).encode() + b"\n"

    def write(self, count: int) -> None:
        with self._lock, open(self.path, "ab") as handle:
            handle.write(b"".join(self.line() for _ in range(count)))

    def rotate(self) -> None:
        """logrotate's default: rename, then the job opens a new file at the path."""
        with self._lock:
            self.rotations += 1
            os.rename(self.path, f"{self.path}.{self.rotations}")
            open(self.path, "ab").close()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.write(self.lines_per_tick)

    def __enter__(self) -> "Writer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


@pytest.fixture
def tail_agent(receiver) -> Iterator[AgentUnderTest]:
    agent = AgentUnderTest(receiver)
    agent.write_config(input={"mode": "file", "path": os.path.join(agent.dir, "usage.jsonl")})
    yield agent
    agent.cleanup()


def seqs(receiver: Receiver) -> Counter:
    return Counter(attribution["seq"] for attribution in receiver.store.attributions())


def settle(ledger, receiver: Receiver, written: int, iterations: int) -> None:
    """Each written line stored exactly once: none missing, none under two event_ids."""
    try:
        wait_for(lambda: receiver.store.count() >= written, 120, f"{written} lines at the receiver")
        time.sleep(0.5)  # anything beyond would be a line stored twice
    finally:
        counts = seqs(receiver)
        ledger.record(sent=written, acknowledged=written, stored=receiver.store.count(),
                      duplicates=receiver.store.duplicates(), lost=sum(1 for n in range(written) if n not in counts),
                      iterations=iterations)
    assert sorted(counts) == list(range(written)), "lines missing"
    assert max(counts.values()) == 1, f"lines stored twice: {[n for n, c in counts.items() if c > 1][:10]}"


def test_kill_9_while_reading_and_rotating(tail_agent, receiver, ledger):
    """kill -9 at random moments, half of them right after a rename rotation; the job keeps writing."""
    print(f"DOOW_FAULT_SEED={SEED}")
    chance = random.Random(SEED)
    receiver.set_faults(latency_ms=10)
    with Writer(os.path.join(tail_agent.dir, "usage.jsonl")) as writer:
        writer.write(5000)  # a backlog, so that some kills land in the middle of reading it
        for iteration in range(20):
            assert tail_agent.start().code == 0
            time.sleep(chance.uniform(0.2, 0.8))
            if iteration % 2:
                writer.rotate()
                time.sleep(chance.uniform(0.0, 0.3))
            tail_agent.kill(signal.SIGKILL)
            time.sleep(chance.uniform(0.0, 0.3))  # the job writes on while the agent is down
    assert writer.rotations == 10
    assert tail_agent.start().code == 0
    settle(ledger, receiver, writer.written, iterations=20)
    status = tail_agent.status()
    assert status["counters"]["invalid"] == 0
    assert "finishing" in tail_agent.log(), "no kill landed between a rotation and the end of the old file"


def test_copy_truncate_and_partial_lines(tail_agent, receiver, ledger):
    """Truncated in place, with the copy elsewhere; a line written in two halves; rewritten while stopped."""
    path = os.path.join(tail_agent.dir, "usage.jsonl")
    writer = Writer(path)
    writer.write(300)
    assert tail_agent.start().code == 0
    wait_for(lambda: receiver.store.count() == 300, 30, "the first 300 lines")

    shutil.copy(path, path + ".1")
    with open(path, "r+b") as handle:
        handle.truncate(0)
    writer.write(100)
    wait_for(lambda: receiver.store.count() == 400, 30, "the lines after the truncation")

    line = writer.line()
    with open(path, "ab") as handle:
        handle.write(line[:20])
        handle.flush()
        time.sleep(1.0)
        assert receiver.store.count() == 400, "a partial line was sent"
        handle.write(line[20:])
    wait_for(lambda: receiver.store.count() == 401, 30, "the completed line")

    assert tail_agent.cli("stop", "--config", tail_agent.config).code == 0
    with open(path, "r+b") as handle:  # copy-truncate while the agent is down, refilled past the old size
        handle.truncate(0)
    writer.write(200)
    assert tail_agent.start().code == 0
    settle(ledger, receiver, writer.written, iterations=3)
    assert "rewritten since its checkpoint" in tail_agent.log()
