"""Receiver ingest figures: events/s through `doow-track receiver` in its own process.

Prints figures; asserts nothing. Run: .venv/bin/python bench/receiver_throughput.py [--events N] [--connections C]
Bodies are built and gzipped before the clock starts, so the figure is the
receiver's (plus HTTP), not the client's. "per receiver CPU second" is the
capacity the receiver would have on an otherwise idle core.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from typing import List

import httpx

from doow_track_agent.receiver.store import Store

BATCH = 500
HEADERS = {"Authorization": "Bearer dk_bench_local_only", "Content-Type": "application/json",
           "Content-Encoding": "gzip"}


def gzip_batches(events: int) -> List[bytes]:
    """Bodies shaped like the official SDK's, one fresh event_id each."""
    def event() -> dict:
        return {"event_id": str(uuid.uuid4()), "license_id": "lic_bench", "occurred_at": "2026-11-24T10:00:00.000Z",
                "source_system": "sdk", "kind": "USAGE", "unit": "tokens",
                "attribution": {"model": "gpt-4o", "env": "prod"}, "metadata": None,
                "measurements": [{"metric_name": "tokens", "quantity": 512}]}
    return [gzip.compress(json.dumps({"batch_id": str(uuid.uuid4()), "events": [event() for _ in range(BATCH)]})
                          .encode()) for _ in range(events // BATCH)]


def start_receiver(workdir: str) -> "tuple[subprocess.Popen, str, str]":
    database, ready = os.path.join(workdir, "receiver.sqlite"), os.path.join(workdir, "url")
    process = subprocess.Popen([sys.executable, "-m", "doow_track_agent", "receiver", "--listen", "127.0.0.1:0",
                                "--db", database, "--ready-file", ready])
    deadline = time.monotonic() + 30
    while not os.path.exists(ready):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("the receiver did not start")
        time.sleep(0.05)
    return process, open(ready).read().strip(), database


def cpu_seconds(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def send_all(url: str, bodies: List[bytes], connections: int) -> None:
    def send(share: List[bytes]) -> None:
        with httpx.Client(base_url=url, headers=HEADERS, timeout=60) as client:
            for body in share:
                response = client.post("/telemetry/events", content=body)
                if response.status_code != 202:
                    raise SystemExit(f"unexpected {response.status_code}: {response.text}")

    threads = [threading.Thread(target=send, args=(bodies[i::connections],)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=2)
    args = parser.parse_args()
    bodies = gzip_batches(args.events)
    with tempfile.TemporaryDirectory() as workdir:
        process, url, database = start_receiver(workdir)
        try:
            cpu_before, started = cpu_seconds(process.pid), time.perf_counter()
            send_all(url, bodies, args.connections)
            elapsed, cpu = time.perf_counter() - started, cpu_seconds(process.pid) - cpu_before
        finally:
            process.terminate()
            process.wait()
        stored = Store(database).count()
    events = len(bodies) * BATCH
    print(f"{events} events in {len(bodies)} gzip batches over {args.connections} connections: "
          f"{elapsed:.2f} s, {events / elapsed:,.0f} events/s; "
          f"receiver CPU {cpu:.2f} s, {events / max(cpu, 0.01):,.0f} events per receiver CPU second; "
          f"stored {stored}")


if __name__ == "__main__":
    main()
