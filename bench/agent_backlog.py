"""Agent figures of issue 3: memory with 1,000,000 events spooled (delivery blocked), then the drain rate.

Prints figures; asserts nothing.  Run: .venv/bin/python bench/agent_backlog.py [--events 1000000]
The receiver answers 503 (Retry-After 1 s) while the backlog builds, then is healed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from agent_harness import AgentProcess, ReceiverProcess, flood  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="doow-agent-backlog-", dir="/tmp")
    receiver = ReceiverProcess(workdir)
    receiver.faults(fail_first=10**9, fail_status=503, retry_after=1)
    agent = AgentProcess(workdir, receiver.url, spool={"dir": os.path.join(workdir, "spool"),
                                                       "maxBytes": 4 * 1024**3})
    try:
        started = time.monotonic()
        per_producer = args.events // 4
        acked, refused = flood(agent.socket, 4, 3600, limit=per_producer)
        fill_seconds = time.monotonic() - started
        status = agent.status()
        print(f"backlog: {acked:,} events acknowledged in {fill_seconds:.0f} s ({acked / fill_seconds:,.0f}/s) "
              f"with delivery failing; {refused} refused")
        print(f"  spool: {status['spool']['events']:,} events, {status['spool']['bytes'] / 1024**2:,.0f} MB counted, "
              f"file {sum(os.path.getsize(os.path.join(workdir, 'spool', f)) for f in os.listdir(os.path.join(workdir, 'spool'))) / 1024**2:,.0f} MB")
        print(f"  agent RSS with the backlog spooled: {agent.rss_mb():.0f} MB")

        receiver.faults()
        healed = time.monotonic()
        stored_before = receiver.stored()
        peak_rss = agent.rss_mb()
        while agent.status()["spool"]["events"] > 0 and time.monotonic() - healed < 600:
            time.sleep(0.5)
            peak_rss = max(peak_rss, agent.rss_mb())
        drain_seconds = time.monotonic() - healed
        delivered = receiver.stored() - stored_before
        print(f"drain: {delivered:,} events delivered in {drain_seconds:.1f} s = {delivered / drain_seconds:,.0f} events/s "
              f"(includes up to 1 s of Retry-After); peak RSS while draining {peak_rss:.0f} MB")
    finally:
        agent.stop()
        receiver.stop()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
