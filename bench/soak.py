"""Soak: --minutes (default 30) of mixed faults against one real agent and the real receiver.

Socket producers and a tailed file feed the agent throughout; every few seconds
one fault is injected (kill -9, kill -9 right after a rotation, a receiver
outage, 429 storms, 500 bursts, connection resets, answers slower than the
timeout, SIGHUP bursts with broken configs).  At the end every acknowledged
event and every written line must be stored exactly once; the same table as
the fault suite is printed, one row per fault.

    .venv/bin/python bench/soak.py --minutes 2 [--seed N]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import tempfile
import time
from collections import Counter
from typing import Callable, Dict, List

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from doow_track_agent.receiver.server import Receiver  # noqa: E402
from tests.agent.conftest import AgentUnderTest, Load, wait_for  # noqa: E402
from tests.faults.conftest import FaultLedger, table  # noqa: E402
from tests.faults.test_file_tail_faults import Writer  # noqa: E402

Fault = Callable[["Soak"], None]


class Soak:
    """One agent, one receiver, producers and a file writer; faults injected one after another."""

    def __init__(self, workdir: str, chance: random.Random) -> None:
        self.chance = chance
        self.receiver = Receiver(os.path.join(workdir, "receiver.sqlite3")).start()
        self.agent = AgentUnderTest(self.receiver, timeout=2000)
        self.agent.write_config(input={"mode": "file", "path": os.path.join(self.agent.dir, "usage.jsonl")})
        self.writer = Writer(os.path.join(self.agent.dir, "usage.jsonl"), lines_per_tick=3)
        self.ledgers: Dict[str, FaultLedger] = {}
        self.phases: List[tuple] = []   # (ledger, acked ids, sent, first line, last line, duplicates before)

    def run(self, minutes: float) -> bool:
        assert self.agent.start().code == 0
        deadline = time.monotonic() + minutes * 60
        with self.writer:
            while time.monotonic() < deadline:
                name, fault = self.chance.choice(sorted(FAULTS.items()))
                self._phase(name, fault)
        self.receiver.set_faults()
        if not self.agent.pid:
            assert self.agent.start().code == 0
        return self._settle()

    def _phase(self, name: str, fault: Fault) -> None:
        ledger = self.ledgers.setdefault(name, FaultLedger(name))
        started, first_line, duplicates = time.monotonic(), self.writer.written, self.receiver.store.duplicates()
        with Load(self.agent, producers=2, batch=50, interval=0.05) as load:
            fault(self)
            self.receiver.set_faults()
            if not self.agent.pid:
                assert self.agent.start().code == 0
            time.sleep(1.0)
        ledger.row["seconds"] += time.monotonic() - started
        self.phases.append((ledger, list(load.acked), load.sent, first_line, self.writer.written, duplicates))

    def _settle(self) -> bool:
        acked = {event_id for phase in self.phases for event_id in phase[1]}
        written = self.writer.written
        wait_for(lambda: acked <= self.receiver.store.event_ids()
                 and sum(1 for a in self.receiver.store.attributions() if a and "seq" in a) >= written,
                 300, "every acknowledged event and written line stored")
        stored = self.receiver.store.event_ids()
        lines = Counter(a["seq"] for a in self.receiver.store.attributions() if a and "seq" in a)
        for index, (ledger, ids, sent, first, last, duplicates) in enumerate(self.phases):
            later = self.phases[index + 1][5] if index + 1 < len(self.phases) else self.receiver.store.duplicates()
            seqs = range(first, last)
            ledger.record(sent=sent + len(seqs), acknowledged=len(ids) + len(seqs),
                          stored=len(set(ids) & stored) + sum(1 for n in seqs if lines[n] == 1),
                          duplicates=later - duplicates,
                          lost=len(set(ids) - stored) + sum(1 for n in seqs if n not in lines))
        twice = sum(1 for count in lines.values() if count > 1)
        for line in table([ledger.row for ledger in self.ledgers.values()]):
            print(line)
        print(f"lines stored more than once: {twice}")
        return twice == 0 and all(ledger.row["lost"] == 0 for ledger in self.ledgers.values())

    def close(self) -> None:
        self.agent.cleanup()
        self.receiver.stop()


def kill_9(soak: Soak) -> None:
    time.sleep(soak.chance.uniform(0.5, 3))
    soak.agent.kill(signal.SIGKILL)


def kill_9_after_rotation(soak: Soak) -> None:
    time.sleep(soak.chance.uniform(0.5, 2))
    soak.writer.rotate()
    time.sleep(soak.chance.uniform(0, 0.3))
    soak.agent.kill(signal.SIGKILL)


def outage(soak: Soak) -> None:
    soak.receiver.set_faults(fail_first=10**9, fail_status=503, retry_after=0.5)
    time.sleep(soak.chance.uniform(5, 15))


def storm_429(soak: Soak) -> None:
    soak.receiver.set_faults(fail_first=40, fail_status=429, retry_after=0.2)
    time.sleep(4)


def burst_500(soak: Soak) -> None:
    soak.receiver.set_faults(fail_first=20, fail_status=500)
    time.sleep(3)


def resets(soak: Soak) -> None:
    soak.receiver.set_faults(reset_first=10)
    time.sleep(3)


def slow_answers(soak: Soak) -> None:
    soak.receiver.set_faults(slow_accept_ms=2500)  # past the agent's 2 s timeout: retried, absorbed
    time.sleep(4)


def sighups(soak: Soak) -> None:
    config = soak.agent.config
    for attempt in range(10):
        if attempt % 3 == 2:
            with open(config + ".tmp", "w") as handle:
                handle.write('{"flushAt": 0}')
            os.replace(config + ".tmp", config)
        else:
            soak.agent.write_config(flushAt=20 + attempt)
        os.kill(soak.agent.pid, signal.SIGHUP)
        time.sleep(0.2)
    soak.agent.write_config(flushAt=50)
    os.kill(soak.agent.pid, signal.SIGHUP)


FAULTS: Dict[str, Fault] = {
    "kill -9": kill_9, "kill -9 after a rotation": kill_9_after_rotation, "receiver outage": outage,
    "429 storm": storm_429, "500 burst": burst_500, "connection resets": resets,
    "slow answers past the timeout": slow_answers, "SIGHUP burst with broken configs": sighups,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1, 10**6)
    print(f"soak: {args.minutes} minute(s), seed {seed}")
    soak = Soak(tempfile.mkdtemp(prefix="doow-soak-"), random.Random(seed))
    try:
        ok = soak.run(args.minutes)
    finally:
        soak.close()
    print("soak: nothing lost, nothing counted twice" if ok else "soak: FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
