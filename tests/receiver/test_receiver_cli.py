"""`doow-track receiver` as users and scripts run it: a real process, real signals."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import List

import httpx
import pytest

from tests.receiver.wire import make_batch, make_event

CLI = [sys.executable, "-m", "doow_track_agent", "receiver"]
SECRET_KEY = "dk_cli_secret_4321"


def _run(args: List[str]) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def _wait_for_url(process: subprocess.Popen, ready_file: Path) -> str:
    deadline = time.monotonic() + 30
    while not ready_file.exists():
        assert process.poll() is None, process.communicate()[1]
        assert time.monotonic() < deadline, "the receiver never wrote its ready file"
        time.sleep(0.05)
    return ready_file.read_text().strip()


@pytest.fixture
def served(tmp_path):
    """Start `doow-track receiver` with extra flags; yields (url, process, db)."""
    processes: List[subprocess.Popen] = []

    def start(*flags: str):
        db, ready = tmp_path / "cli.sqlite", tmp_path / "url.txt"
        process = subprocess.Popen(
            [*CLI, "--listen", "127.0.0.1:0", "--db", str(db), "--ready-file", str(ready), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        processes.append(process)
        return _wait_for_url(process, ready), process, db

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_serve_faults_verbose_log_and_sigterm(served):
    url, process, db = served("--verbose", "--keys", SECRET_KEY, "--fail-first", "1",
                              "--fail-status", "503", "--retry-after", "0.5")
    headers = {"Authorization": f"Bearer {SECRET_KEY}"}
    batch = make_batch([make_event() for _ in range(3)])

    failed = httpx.post(f"{url}/telemetry/events", json=batch, headers=headers)
    accepted = httpx.post(f"{url}/telemetry/events", json=batch, headers=headers)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)

    assert (failed.status_code, failed.headers["Retry-After"]) == (503, "0.5")
    assert accepted.status_code == 202
    assert process.returncode == 0
    assert f"listening on {url}" in err.splitlines()[0]
    request_lines = [line for line in err.splitlines() if "POST /telemetry/events" in line]
    assert len(request_lines) == 2 and " 503 " in request_lines[0] and " 202 " in request_lines[1]
    assert SECRET_KEY not in err


def test_licenses_flag(served):
    url, _, _ = served("--licenses", "lic_a, lic_b")
    headers = {"Authorization": "Bearer dk_any"}
    assert httpx.get(f"{url}/sdk/licenses/lic_b", headers=headers).status_code == 200
    assert httpx.get(f"{url}/sdk/licenses/lic_z", headers=headers).status_code == 404


def test_summary_as_a_table_and_as_json(served):
    url, process, db = served()
    events = [make_event(license_id="lic_cli", measurements=[{"metric_name": "api_calls", "quantity": 2}])
              for _ in range(3)]
    httpx.post(f"{url}/telemetry/events", json=make_batch(events), headers={"Authorization": "Bearer dk_x"})
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=30)

    table = _run(["summary", "--db", str(db)])
    as_json = _run(["summary", "--db", str(db), "--json"])

    assert table.returncode == 0
    assert table.stdout.splitlines()[1].split()[:5] == ["lic_cli", "api_calls", "3", "6", "0"]
    assert as_json.returncode == 0
    summary = json.loads(as_json.stdout)
    assert (summary["events"], summary["by_license_metric"][0]["license_id"]) == (3, "lic_cli")


def test_summary_of_a_missing_database_exits_66(tmp_path):
    result = _run(["summary", "--db", str(tmp_path / "none.sqlite")])
    assert result.returncode == 66 and "no database" in result.stderr
    assert not (tmp_path / "none.sqlite").exists()


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "192.0.2.1:8080", "example.com:80"])
def test_non_loopback_listen_is_refused_without_allow_remote(listen, tmp_path):
    result = _run(["--listen", listen, "--db", str(tmp_path / "r.sqlite")])
    assert result.returncode == 64 and "--allow-remote" in result.stderr


@pytest.mark.parametrize("listen", ["127.0.0.1", "127.0.0.1:http", ":8080", "127.0.0.1:70000"])
def test_malformed_listen_is_a_usage_error(listen, tmp_path):
    result = _run(["--listen", listen, "--db", str(tmp_path / "r.sqlite")])
    assert result.returncode == 64 and "HOST:PORT" in result.stderr


def test_a_busy_port_exits_69(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(["--listen", f"127.0.0.1:{port}", "--db", str(tmp_path / "r.sqlite")])
    assert result.returncode == 69 and "cannot listen" in result.stderr


def test_help_shows_examples():
    result = _run(["--help"])
    assert result.returncode == 0
    assert "examples:" in result.stdout and "doow-track receiver summary" in result.stdout
    assert "--fail-first" in result.stdout and "--reset-first" in result.stdout


def test_the_default_database_is_in_the_state_directory_not_the_working_directory(tmp_path):
    ready, work = tmp_path / "url.txt", tmp_path / "checkout"
    work.mkdir()
    env = {**os.environ, "HOME": str(tmp_path), "XDG_STATE_HOME": str(tmp_path / "state")}
    process = subprocess.Popen([*CLI, "--listen", "127.0.0.1:0", "--ready-file", str(ready)],
                               cwd=work, stderr=subprocess.PIPE, env=env)
    try:
        _wait_for_url(process, ready)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    database = tmp_path / "state" / "doow-track" / "receiver.sqlite3"
    assert database.exists() and f"storing in {database}" in err.decode()
    assert list(work.iterdir()) == []
    summary = subprocess.run([*CLI, "summary"], env=env, capture_output=True, text=True, check=False)
    assert summary.returncode == 0 and "total: 0 events" in summary.stdout
