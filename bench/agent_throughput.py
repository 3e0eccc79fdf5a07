"""Agent figures of issue 3: sustained socket intake with delivery keeping pace, ack latency, idle CPU.

Prints figures; asserts nothing.  Run: .venv/bin/python bench/agent_throughput.py [--seconds 60]
Receiver, agent and the 4 producers are separate processes sharing this machine's cores.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from agent_harness import AgentProcess, ReceiverProcess, flood, paced, percentile  # noqa: E402


def sustained(agent: AgentProcess, receiver: ReceiverProcess, seconds: float) -> None:
    samples = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(1.0):
            status = agent.status()
            samples.append((status["spool"]["events"], agent.rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stored_before, cpu_before, loop_before = receiver.stored(), agent.cpu_seconds(), agent.loop_cpu_seconds()
    started = time.monotonic()
    acked, refused = flood(agent.socket, 4, seconds)
    elapsed = time.monotonic() - started
    stored_during = receiver.stored() - stored_before
    stop.set()
    sampler.join()
    cpu = agent.cpu_seconds() - cpu_before
    drain_started = time.monotonic()
    while agent.status()["spool"]["events"] and time.monotonic() - drain_started < 120:
        time.sleep(0.1)
    backlog_seconds = time.monotonic() - drain_started
    cpu_drained = agent.cpu_seconds() - cpu_before
    loop_drained = agent.loop_cpu_seconds() - loop_before
    peak_backlog = max((depth for depth, _ in samples), default=0)
    print(f"socket intake, 4 producers, {elapsed:.0f} s:")
    print(f"  acknowledged (spooled)     {acked / elapsed:>10,.0f} events/s   ({acked:,} events, {refused} refused)")
    print(f"  delivered meanwhile        {stored_during / elapsed:>10,.0f} events/s   (stored at the receiver)")
    print(f"  spool depth: peak {peak_backlog:,}, drained {backlog_seconds:.1f} s after the producers stopped")
    print(f"  agent CPU {cpu / elapsed * 100:.0f}% of one core, peak RSS {max((m for _, m in samples), default=0):.0f} MB")
    per_event = 1e6 / max(acked, 1)
    print(f"  agent CPU per acknowledged event: {cpu_drained * per_event:.1f} µs "
          f"(intake, spool and delivery: user+sys from the first event until the spool is drained)")
    print(f"    of which the event loop {loop_drained * per_event:.1f} µs (sources, intake, delivery), "
          f"other threads {(cpu_drained - loop_drained) * per_event:.1f} µs (the spool writer)")


def latency(agent: AgentProcess, seconds: float) -> None:
    ordered = paced(agent.socket, 4, seconds, 1000.0)
    print(f"ack latency at 1,000 events/s (4 producers, one event at a time, {len(ordered):,} events):")
    print(f"  p50 {percentile(ordered, 0.50) * 1000:.2f} ms   p99 {percentile(ordered, 0.99) * 1000:.2f} ms   "
          f"max {ordered[-1] * 1000:.2f} ms")


def idle(agent: AgentProcess, seconds: float) -> None:
    time.sleep(2)
    before = agent.cpu_seconds()
    time.sleep(seconds)
    used = agent.cpu_seconds() - before
    print(f"idle agent CPU over {seconds:.0f} s: {used / seconds * 100:.2f}% of one core, RSS {agent.rss_mb():.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0, help="length of the sustained run")
    parser.add_argument("--fsync", choices=("batch", "off"), default="batch")
    parser.add_argument("--sustained-only", action="store_true", help="skip the idle and latency figures")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="doow-agent-bench-", dir="/tmp")
    receiver = ReceiverProcess(workdir)
    agent = AgentProcess(workdir, receiver.url, spool={"dir": os.path.join(workdir, "spool"), "fsync": args.fsync})
    try:
        print(f"doow-track agent benchmark (spool.fsync={args.fsync}, {os.cpu_count()} cores)")
        if not args.sustained_only:
            idle(agent, 20)
            latency(agent, 20)
        sustained(agent, receiver, args.seconds)
    finally:
        agent.stop()
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
