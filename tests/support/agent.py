"""A real agent process against the real receiver: config in a temp dir, real sockets, real SQLite.

Shared by the agent, fault, doctor and docs tests; the fixtures live in tests/conftest.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
import urllib.error
import urllib.request
from typing import Callable, List, Optional, Tuple

from doow_track_agent.modes.agent.pidfile import process_alive, running_pid
from doow_track_agent.receiver.faults import Faults
from doow_track_agent.receiver.server import Receiver
from tests.support.cli import KEY, Result, run

EVENT = {"metric": "tokens", "quantity": 3, "license_id": "lic_agent"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for(predicate: Callable[[], object], timeout: float = 30.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Producer:
    """One socket connection to the agent, pipelined: write many lines, read one reply per line."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(60)
        self.sock.connect(path)
        self.replies = self.sock.makefile("rb")

    def send(self, events: List[dict]) -> List[dict]:
        self.sock.sendall(b"".join(json.dumps(event).encode() + b"\n" for event in events))
        return [json.loads(self.replies.readline()) for _ in events]

    def close(self) -> None:
        try:
            self.replies.close()
        except OSError:
            pass  # the agent was killed with replies unread
        self.sock.close()


class AgentUnderTest:
    """Config, start/stop and observation of one agent; the directory is short (AF_UNIX path limit)."""

    def __init__(self, receiver: Receiver, **overrides: object) -> None:
        self.dir = tempfile.mkdtemp(prefix="dta-", dir="/tmp")
        self.config = os.path.join(self.dir, "agent.json")
        self.pidfile = os.path.join(self.dir, "agent.pid")
        self.socket = os.path.join(self.dir, "agent.sock")
        self.port = free_port()
        self.receiver = receiver
        self.settings = {
            "apiKey": KEY, "endpoint": receiver.url, "flushAt": 50, "flushInterval": 100,
            "shutdownTimeout": 3000, "retry": {"initialDelay": 50, "maxDelay": 500},
            "attribution": {"env": "test"},
            "socket": {"path": self.socket}, "spool": {"dir": os.path.join(self.dir, "spool")},
            "health": {"listen": f"127.0.0.1:{self.port}"},
            "log": {"file": os.path.join(self.dir, "agent.log"), "level": "debug"},
        }
        self.write_config(**overrides)

    def write_config(self, **changes: object) -> None:
        self.settings.update(changes)
        text = json.dumps(self.settings)
        temporary = self.config + ".tmp"
        with open(temporary, "w") as handle:
            handle.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, self.config)

    def cli(self, *args: str, stdin: Optional[bytes] = None, timeout: float = 60) -> Result:
        return run(list(args), stdin=stdin, timeout=timeout)

    def start(self) -> Result:
        return self.cli("--config", self.config, "--pidfile", self.pidfile)

    @property
    def pid(self) -> Optional[int]:
        return running_pid(self.pidfile)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def get(self, path: str) -> Tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url(path), timeout=5) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def status(self) -> dict:
        return json.loads(self.get("/status")[1])

    def producer(self) -> Producer:
        return Producer(self.socket)

    def send(self, events: List[dict]) -> List[dict]:
        producer = self.producer()
        try:
            return producer.send(events)
        finally:
            producer.close()

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "agent.log")) as handle:
                return handle.read()
        except OSError:
            return ""

    def kill(self, signum: int = signal.SIGKILL) -> None:
        pid = self.pid
        if pid:
            os.kill(pid, signum)
            # The pidfile lock goes with the last thread, which can outlive the (zombie) main thread.
            wait_for(lambda: not process_alive(pid) and running_pid(self.pidfile) != pid, 30, "the agent to die")

    def cleanup(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def fail_receiver(receiver: Receiver, status: int = 503) -> None:
    receiver.set_faults(Faults(fail_first=10**9, fail_status=status, retry_after=0.1))


def heal_receiver(receiver: Receiver) -> None:
    receiver.set_faults(Faults())


class Load:
    """Producers sending in background threads until stopped; records every acknowledged event_id."""

    def __init__(self, agent: AgentUnderTest, producers: int, batch: int = 50,
                 event: Optional[dict] = None, interval: float = 0.0) -> None:
        self.agent = agent
        self.batch = batch
        self.event = event or EVENT
        self.interval = interval   # seconds between a producer's batches: a steady rate instead of a flood
        self.sent = 0              # lines written, acknowledged or not
        self.acked: List[str] = []
        self.refused: List[dict] = []
        self.errors: List[BaseException] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(producers)]

    def __enter__(self) -> "Load":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _run(self) -> None:
        try:
            producer = self.agent.producer()
        except OSError as error:
            self.errors.append(error)
            return
        try:
            while not self._stop.is_set():
                with self._lock:
                    self.sent += self.batch
                replies = producer.send([self.event] * self.batch)
                with self._lock:
                    self.acked.extend(reply["event_id"] for reply in replies if reply["ok"])
                    self.refused.extend(reply for reply in replies if not reply["ok"])
                self._stop.wait(self.interval)
        except (OSError, ValueError) as error:
            self.errors.append(error)  # the agent went away mid-send: unacknowledged lines are not counted
        finally:
            producer.close()

    def count(self) -> int:
        with self._lock:
            return len(self.acked)


def assert_stored_exactly_once(receiver: Receiver, acked: List[str], timeout: float = 60.0) -> None:
    """Every acknowledged event reaches the receiver, and nothing else does."""
    assert len(set(acked)) == len(acked), "the agent acknowledged one event_id twice"
    wait_for(lambda: receiver.store.count() >= len(acked), timeout, f"{len(acked)} events at the receiver")
    stored = receiver.store.event_ids()
    assert set(acked) == stored, (f"missing {len(set(acked) - stored)}, unexpected {len(stored - set(acked))}")
    assert receiver.store.count() == len(acked)
