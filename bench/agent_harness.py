"""What the agent benchmarks share: a receiver process, an agent process, producer processes, /proc readings.

Every piece runs as its own process, as on a real host: the receiver (the
API stand-in), the detached agent, and each producer.  Nothing here asserts.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from typing import List, Optional, Tuple

KEY = "dk_bench_local_only_0000"
CLI = [sys.executable, "-m", "doow_track_agent"]
LINE = (b'{"metric":"tokens","quantity":512,"license_id":"lic_bench","unit":"tokens",'
        b'"attribution":{"model":"gpt-4o","team":"search"}}\n')

_RECEIVER = """
import sys, time
from doow_track_agent.receiver.server import Receiver
receiver = Receiver(sys.argv[1], port=0).start()
print(receiver.url, flush=True)
sys.stdin.read()
receiver.stop()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ReceiverProcess:
    """The local receiver in its own process; faults set over its HTTP control endpoint."""

    def __init__(self, workdir: str) -> None:
        self.database = os.path.join(workdir, "receiver.sqlite3")
        self.process = subprocess.Popen([sys.executable, "-c", _RECEIVER, self.database], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.url = self.process.stdout.readline().strip()

    def faults(self, **faults: object) -> None:
        request = urllib.request.Request(f"{self.url}/_receiver/faults", data=json.dumps(faults).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        urllib.request.urlopen(request, timeout=10).read()

    def stored(self) -> int:
        with urllib.request.urlopen(f"{self.url}/_receiver/stats", timeout=30) as reply:
            stats = json.loads(reply.read())
        return int(stats["events"])

    def stop(self) -> None:
        self.process.stdin.close()
        self.process.wait(timeout=30)


class AgentProcess:
    """A detached agent started the way users start it; figures read from /status and /proc."""

    def __init__(self, workdir: str, endpoint: str, **overrides: object) -> None:
        self.workdir = workdir
        self.socket = os.path.join(workdir, "agent.sock")
        self.pidfile = os.path.join(workdir, "agent.pid")
        self.health = free_port()
        settings = {"apiKey": KEY, "endpoint": endpoint, "flushAt": 500, "flushInterval": 200,
                    "socket": {"path": self.socket}, "spool": {"dir": os.path.join(workdir, "spool")},
                    "health": {"listen": f"127.0.0.1:{self.health}"},
                    "log": {"file": os.path.join(workdir, "agent.log"), "level": "warning"}}
        settings.update(overrides)
        self.config = os.path.join(workdir, "agent.json")
        with open(self.config, "w") as handle:
            json.dump(settings, handle)
        os.chmod(self.config, 0o600)
        subprocess.run([*CLI, "--config", self.config, "--pidfile", self.pidfile], check=True)
        with open(self.pidfile) as handle:
            self.pid = int(handle.read())

    def status(self) -> dict:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.health}/status", timeout=30) as reply:
            return json.loads(reply.read())

    def rss_mb(self) -> float:
        with open(f"/proc/{self.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        """User+sys CPU seconds of the whole agent process."""
        return _cpu(f"/proc/{self.pid}/stat")

    def loop_cpu_seconds(self) -> float:
        """User+sys CPU seconds of the agent's main thread, the event loop (intake, sources, delivery);
        the rest of ``cpu_seconds`` is the spool writer's and other threads'."""
        return _cpu(f"/proc/{self.pid}/task/{self.pid}/stat")

    def stop(self) -> None:
        subprocess.run([*CLI, "stop", "--config", self.config, "--pidfile", self.pidfile, "--timeout", "60"],
                       stdout=subprocess.DEVNULL, check=False)


def _cpu(stat: str) -> float:
    with open(stat) as handle:
        fields = handle.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _flood(path: str, seconds: float, limit: Optional[int], window: int, out: "multiprocessing.Queue") -> None:
    """A producer writing ahead (at most ``window`` lines unacknowledged); counts acknowledgements."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    credit = threading.Semaphore(window)
    chunk = 100
    deadline = time.monotonic() + seconds
    done = threading.Event()
    sent = [0]

    def write() -> None:
        block = LINE * chunk
        while time.monotonic() < deadline and (limit is None or sent[0] < limit):
            for _ in range(chunk):
                credit.acquire()
            sock.sendall(block)
            sent[0] += chunk
        done.set()
        sock.shutdown(socket.SHUT_WR)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    acked = refused = 0
    for line in sock.makefile("rb"):
        if line.startswith(b'{"ok":true'):
            acked += 1
        else:
            refused += 1
        credit.release()
    out.put((acked, refused))


def _paced(path: str, seconds: float, rate: float, out: "multiprocessing.Queue") -> None:
    """A producer sending one event at a time at ``rate``/s, timing each acknowledgement."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    replies = sock.makefile("rb")
    latencies: List[float] = []
    start = time.monotonic()
    next_at = start
    while next_at - start < seconds:
        pause = next_at - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        sent = time.perf_counter()
        sock.sendall(LINE)
        replies.readline()
        latencies.append(time.perf_counter() - sent)
        next_at += 1 / rate
    out.put(latencies)


def run_producers(target, count: int, *args: object) -> List[object]:
    """Start ``count`` producer processes running ``target(*args, queue)``; collect their results."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = [context.Process(target=target, args=(*args, queue)) for _ in range(count)]
    for process in processes:
        process.start()
    results = [queue.get() for _ in processes]
    for process in processes:
        process.join()
    return results


def flood(path: str, producers: int, seconds: float, limit: Optional[int] = None,
          window: int = 5000) -> Tuple[int, int]:
    results = run_producers(_flood, producers, path, seconds, limit, window)
    return sum(r[0] for r in results), sum(r[1] for r in results)


def paced(path: str, producers: int, seconds: float, total_rate: float) -> List[float]:
    results = run_producers(_paced, producers, path, seconds, total_rate / producers)
    return sorted(latency for result in results for latency in result)


def percentile(ordered: List[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")
