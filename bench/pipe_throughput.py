"""Pipe-mode figures (issue 2): throughput, requests, peak memory, start-up time.

Prints a table; asserts nothing.  Run: .venv/bin/python bench/pipe_throughput.py [--events N]
The receiver runs as its own process (the other core), as a real endpoint would.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from doow_track_agent import samples
from doow_track_agent.receiver.store import Store

CLI = [sys.executable, "-m", "doow_track_agent"]
KEY = "dk_bench_local_only"


def start_receiver(workdir: str, latency_ms: int) -> "tuple[subprocess.Popen, str, str]":
    run_dir = tempfile.mkdtemp(prefix=f"receiver-{latency_ms}ms-", dir=workdir)  # a fresh store per run
    database, ready = os.path.join(run_dir, "receiver.sqlite"), os.path.join(run_dir, "ready")
    process = subprocess.Popen([*CLI, "receiver", "--listen", "127.0.0.1:0", "--db", database,
                                "--latency-ms", str(latency_ms), "--ready-file", ready],
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (os.path.exists(ready) and open(ready).read().strip()):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("receiver did not start")
        time.sleep(0.05)
    return process, open(ready).read().strip(), database


def requests_made(database: str) -> int:
    return Store(database).stats()["requests_total"]


def pipe_run(events_file: str, latency_ms: int, workdir: str) -> dict:
    receiver, url, database = start_receiver(workdir, latency_ms)
    command = [*CLI, "--api-key", KEY, "--endpoint", url, "--quiet"]
    try:
        with open(events_file, "rb") as stdin:
            started = time.perf_counter()
            child = subprocess.Popen(command, stdin=stdin)
            _, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - started
        code = os.waitstatus_to_exitcode(status)
        peak_kib = usage.ru_maxrss
    finally:
        receiver.terminate()
        receiver.wait()
    stored = Store(database).count()
    return {"latency": latency_ms, "exit": code, "stored": stored, "seconds": seconds,
            "rate": stored / seconds, "requests": requests_made(database), "peak_mb": peak_kib / 1024,
            "command": f"doow-track --api-key dk_… --endpoint {url} --quiet < events.ndjson"}


def median_run(events_file: str, latency_ms: int, workdir: str, repeat: int) -> dict:
    """The run with the median rate, each against a fresh receiver (one noisy run proves little)."""
    runs = sorted((pipe_run(events_file, latency_ms, workdir) for _ in range(repeat)), key=lambda r: r["rate"])
    middle = runs[len(runs) // 2]
    middle["all_rates"] = [round(run["rate"]) for run in runs]
    return middle


def version_ms(runs: int = 15) -> float:
    """The console script as users run it (falls back to ``python -m``)."""
    script = shutil.which("doow-track")
    command = [script, "--version"] if script else [*CLI, "--version"]
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, stdout=subprocess.DEVNULL, check=True)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per latency; the median is shown")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="doow-bench-")
    events_file = os.path.join(workdir, "events.ndjson")
    with open(events_file, "wb") as handle:
        handle.write(b"\n".join(samples.lines(args.events)) + b"\n")
    rows = [median_run(events_file, latency, workdir, args.repeat) for latency in (0, 20)]
    print(f"\npipe mode, {args.events:,} events, receiver in its own process on 127.0.0.1 "
          f"({os.cpu_count()} cores), median of {args.repeat} runs\n")
    print(f"{'receiver latency':>16} {'events/s':>10} {'stored':>8} {'requests':>8} {'seconds':>8} "
          f"{'peak MB':>8} {'exit':>4}")
    for row in rows:
        print(f"{row['latency']:>13} ms {row['rate']:>10,.0f} {row['stored']:>8,} {row['requests']:>8} "
              f"{row['seconds']:>8.2f} {row['peak_mb']:>8.1f} {row['exit']:>4}")
    for row in rows:
        print(f"  {row['latency']} ms: rates of the {len(row['all_rates'])} runs: {row['all_rates']}")
    print(f"\ndoow-track --version: {version_ms():.0f} ms (median of 15)")
    print("\ncommands:")
    for row in rows:
        print(f"  receiver --latency-ms {row['latency']}:  {row['command']}")
    print("  peak MB is the doow-track process's own max RSS (wait4 rusage of that child)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
