"""Pipe-mode figures (issues 2 and 16): throughput, CPU per event, requests, peak memory, against the Node CLI.

Prints a table; asserts nothing.  Run: .venv/bin/python bench/pipe_throughput.py [--events N] [--repeat 3]
The receiver runs as its own process (the other core), as a real endpoint would,
a fresh one per run.  doow-track and the official Node CLI (``DOOW_TRACK_FLUSH_AT=500``,
its best loss-free setting) take turns, so machine load hits both alike; each
figure is the median of ``--repeat`` runs and is shown with its ratio to Node's.
CPU is the client process's own user+sys (``wait4``) divided by the events.
Clients are started by a small spawner process: a child's max RSS counts the
memory of the process it was forked from (Linux records the old image's
high-water mark at exec), so forked from this bench it would include the
bench's own tens of MB.
"""

from __future__ import annotations

import argparse
import functools
import json
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
NODE_CLI = os.environ.get("DOOW_TRACK_NODE_CLI", "/work/shared/anchors/doow-track-node-0.1.4/cli.cjs")


_SPAWNER = """
import json, os, subprocess, sys, time
for request in map(json.loads, sys.stdin):
    with open(request["stdin"], "rb") as stdin:
        started = time.perf_counter()
        child = subprocess.Popen(request["command"], stdin=stdin, env=request["env"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
    print(json.dumps({"seconds": time.perf_counter() - started, "exit": os.waitstatus_to_exitcode(status),
                      "cpu_s": usage.ru_utime + usage.ru_stime, "peak_mb": usage.ru_maxrss / 1024}), flush=True)
"""


class Spawner:
    """Runs client commands from a small process of its own, so each one's max RSS is its own (module doc)."""

    def __init__(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-c", _SPAWNER], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, text=True)

    def run(self, command: list, env: dict, stdin: str) -> dict:
        """``{"seconds", "exit", "cpu_s", "peak_mb"}`` of ``command`` run to its end with ``stdin`` (a file path)."""
        self._process.stdin.write(json.dumps({"command": command, "env": env, "stdin": stdin}) + "\n")
        self._process.stdin.flush()
        return json.loads(self._process.stdout.readline())


@functools.lru_cache(maxsize=None)
def spawner() -> Spawner:
    """The one spawner; ``main`` makes it first, while this process is still small."""
    return Spawner()


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


def client_commands(url: str) -> "dict[str, tuple[list, dict]]":
    """The two clients as users run them: name -> (argv, environment)."""
    script = shutil.which("doow-track", path=os.path.dirname(sys.executable))
    env = {**os.environ}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # installed packages have their bytecode
    return {
        "doow-track": ([script or CLI[0], *([] if script else CLI[1:]), "--api-key", KEY, "--endpoint", url,
                        "--quiet"], env),
        "Node CLI": (["node", NODE_CLI, "--api-key", KEY],
                     {**env, "DOOW_TRACK_ENDPOINT": url, "DOOW_TRACK_FLUSH_AT": "500"}),
    }


def pipe_run(client: str, events_file: str, events: int, latency_ms: int, workdir: str) -> dict:
    receiver, url, database = start_receiver(workdir, latency_ms)
    command, env = client_commands(url)[client]
    try:
        ran = spawner().run(command, env, events_file)
    finally:
        receiver.terminate()
        receiver.wait()
    stored = Store(database).count()
    shown = " ".join(word for word in command if word != CLI[0] or client != "doow-track").replace(KEY, "dk_…")
    prefix = "DOOW_TRACK_ENDPOINT=URL DOOW_TRACK_FLUSH_AT=500 " if client == "Node CLI" else ""
    return {"client": client, "latency": latency_ms, "exit": ran["exit"], "stored": stored,
            "lost": events - stored, "seconds": ran["seconds"], "rate": stored / ran["seconds"],
            "requests": requests_made(database), "cpu_us": ran["cpu_s"] / events * 1e6, "peak_mb": ran["peak_mb"],
            "command": f"{prefix}{shown.replace(url, 'URL')} < events.ndjson"}


def dry_run_cpu_s(events_file: str) -> float:
    """CPU seconds (user+sys) of ``doow-track --dry-run`` on ``events_file``: start-up, reading, intake; no delivery."""
    command, env = client_commands("http://127.0.0.1:9")["doow-track"]
    return spawner().run([*command, "--dry-run"], env, events_file)["cpu_s"]


def cpu_split(events_file: str, events: int, full_cpu_us: float, workdir: str, repeat: int) -> "dict[str, float]":
    """doow-track's CPU per event split into start-up, intake (read + judge) and delivery, from dry runs.

    Start-up is a one-event dry run spread over ``events``; intake is the
    dry run of all events less that; delivery is the full run's CPU less the
    dry run's.  Medians of ``repeat`` runs each.
    """
    one_event = os.path.join(workdir, "one.ndjson")
    with open(one_event, "wb") as handle:
        handle.write(samples.lines(1)[0] + b"\n")
    start_up = statistics.median(dry_run_cpu_s(one_event) for _ in range(repeat)) / events * 1e6
    dry = statistics.median(dry_run_cpu_s(events_file) for _ in range(repeat)) / events * 1e6
    return {"start-up": start_up, "intake": dry - start_up, "delivery": full_cpu_us - dry}


FIGURES = ("rate", "cpu_us", "requests", "lost", "peak_mb", "seconds")


def median_runs(events_file: str, events: int, latency_ms: int, workdir: str, repeat: int) -> "dict[str, dict]":
    """Per client, the median of each figure over ``repeat`` interleaved runs (one noisy run proves little)."""
    runs: "dict[str, list]" = {"doow-track": [], "Node CLI": []}
    for _ in range(repeat):
        for client in runs:
            runs[client].append(pipe_run(client, events_file, events, latency_ms, workdir))
    medians = {}
    for client, rows in runs.items():
        row = {name: statistics.median(run[name] for run in rows) for name in FIGURES}
        row.update(client=client, latency=latency_ms, command=rows[0]["command"],
                   exits=sorted({run["exit"] for run in rows}), all_rates=[round(run["rate"]) for run in rows])
        medians[client] = row
    return medians


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
    spawner()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per client and latency; medians are shown")
    parser.add_argument("--latency", type=int, nargs="+", default=[0, 20], help="receiver latencies (ms)")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="doow-bench-")
    events_file = os.path.join(workdir, "events.ndjson")
    with open(events_file, "wb") as handle:
        handle.write(b"\n".join(samples.lines(args.events)) + b"\n")
    tables = [median_runs(events_file, args.events, latency, workdir, args.repeat) for latency in args.latency]
    print(f"\npipe mode, {args.events:,} events, receiver in its own process on 127.0.0.1 "
          f"({os.cpu_count()} cores), medians of {args.repeat} interleaved runs\n")
    print(f"{'latency':>7} {'client':<10} {'events/s':>9} {'x Node':>6} {'CPU us/ev':>9} {'x Node':>6} "
          f"{'lost':>5} {'requests':>8} {'peak MB':>7} {'exit':>5}")
    for table in tables:
        node = table["Node CLI"]
        for row in table.values():
            print(f"{row['latency']:>4} ms {row['client']:<10} {row['rate']:>9,.0f} {row['rate'] / node['rate']:>6.2f} "
                  f"{row['cpu_us']:>9.1f} {row['cpu_us'] / node['cpu_us']:>6.2f} {row['lost']:>5.0f} "
                  f"{row['requests']:>8.0f} {row['peak_mb']:>7.1f} {','.join(map(str, row['exits'])):>5}")
    for table in tables:
        for row in table.values():
            print(f"  {row['latency']} ms, {row['client']}: events/s of the runs: {row['all_rates']}")
    split = cpu_split(events_file, args.events, tables[0]["doow-track"]["cpu_us"], workdir, args.repeat)
    print(f"\ndoow-track CPU per event at {args.latency[0]} ms, split by --dry-run runs: "
          + ", ".join(f"{part} {us:.1f} us" for part, us in split.items()))
    print(f"\ndoow-track --version: {version_ms():.0f} ms (median of 15)")
    print("\ncommands (URL: a fresh `doow-track receiver --latency-ms N` per run):")
    for row in tables[0].values():
        print(f"  {row['client']}: {row['command']}")
    print(f"  doow-track split: {tables[0]['doow-track']['command'].replace(' < events.ndjson', '')} --dry-run "
          "< events.ndjson, and the same with one event")
    print("  peak MB is the client process's own max RSS, CPU its user+sys (wait4 rusage of that child, "
          "started by a small spawner process)")
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
