"""What a short run imports (issue 16): the seed's one-event command pays only for what it uses.

A real ``doow-track`` process, run under a probe that lists ``sys.modules`` at
exit, delivers one valid event to the real receiver.  Each module named here
is a measured cost that the one-event path does not need: jsonschema (valid
input never needs it), msgspec (intake's fast path, only once a run is bulk),
isal (gzip for large bodies only), truststore (https with the system store),
anyio's event-loop machinery (httpx's asynchronous transport: requests go over
its blocking one, on worker threads; httpcore imports anyio's lazy top level
only), and what only the agent or other commands use.
"""

from __future__ import annotations

import subprocess
import sys

from tests.support.cli import BIN, KEY, base_env

NOT_ON_ONE_EVENT_PATH = ("jsonschema", "msgspec", "isal", "truststore", "anyio._backends._asyncio", "daemon",
                         "prometheus_client", "sqlite3", "doow_track_agent.modes.agent.run",
                         "doow_track_agent.intake.fast_path")
# (Not rich: httpx imports its own command line, which imports rich, wherever click is installed too.)

_PROBE = """
import atexit, runpy, sys
atexit.register(lambda: sys.stderr.write("MODULES " + " ".join(sorted(sys.modules)) + "\\n"))
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def run_probed(arguments: list, stdin: bytes, home: str) -> "tuple[subprocess.CompletedProcess, set]":
    done = subprocess.run([sys.executable, "-c", _PROBE, BIN, *arguments], input=stdin, capture_output=True,
                          env=base_env({"HOME": home}), timeout=60)
    return done, set(done.stderr.decode().rpartition("MODULES ")[2].split())


def test_one_valid_event_imports_none_of_the_costs_it_does_not_use(receiver, tmp_path):
    done, modules = run_probed(["--api-key", KEY, "--endpoint", receiver.url],
                               b'{"metric":"api_calls","quantity":1,"license_id":"lic_abc123"}\n', str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert receiver.store.count() == 1
    assert "httpx" in modules  # the probe saw the run
    assert sorted(modules & set(NOT_ON_ONE_EVENT_PATH)) == []


def test_version_imports_neither_asyncio_nor_httpx(tmp_path):
    done, modules = run_probed(["--version"], b"", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "doow_track_agent.cli" in modules
    assert sorted(modules & {"asyncio", "httpx", "socket", "json"}) == []
