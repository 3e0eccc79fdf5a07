"""The runtime supports Python 3.9 (fleets run old Pythons): install it there and use it for real."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from doow_track_agent import samples
from tests.support.cli import KEY, base_env

ROOT = Path(__file__).resolve().parents[2]
VENV = ROOT / ".venv-py39"


def _python39() -> str:
    candidates = sorted(glob.glob("/root/.pyenv/versions/3.9*/bin/python3.9")) + [shutil.which("python3.9") or ""]
    found = next((path for path in candidates if path and _runs(path)), None)
    if not found:
        pytest.skip("no Python 3.9 interpreter on this machine")
    return found


def _runs(python: str) -> bool:
    return subprocess.run([python, "-c", "pass"], capture_output=True, check=False).returncode == 0


@pytest.fixture(scope="module")
def cli39() -> str:
    """doow-track installed (not editable) into a Python 3.9 virtualenv: the venv is made once and reused, this
    checkout's code installed into it again on every run (else a reused venv would test older code)."""
    script = VENV / "bin" / "doow-track"
    if not script.exists():
        subprocess.run([_python39(), "-m", "venv", "--clear", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    str(ROOT)], check=True, env={**os.environ, "PIP_NO_CACHE_DIR": "0"})
    version = subprocess.run([str(VENV / "bin" / "python"), "-c", "import sys; print(sys.version_info[:2])"],
                             capture_output=True, text=True, check=True).stdout
    assert version.strip() == "(3, 9)"
    return str(script)


def test_pipe_mode_on_python39(cli39, receiver, tmp_path):
    # The last line is not UTF-8 (msgspec 0.20, the one Python 3.9 gets, raises its own error for it).
    data = b"\n".join(samples.lines(2000, invalid_every=500) + [b'{"metric": "a", "quantity":1,"license_id":"\x80"}'])
    done = subprocess.run([cli39, "--api-key", KEY, "--endpoint", receiver.url, "--json",
                           "--outbox", str(tmp_path / "outbox")], input=data, capture_output=True,
                          env=base_env(), timeout=120)
    summary = json.loads(done.stdout)
    assert done.returncode == 65, done.stderr
    assert summary["delivered"] == 2000 and receiver.store.count() == 2000
    assert summary["invalid_by_kind"].get("encoding") == 1 and "internal" not in summary["invalid_by_kind"], summary
    assert KEY.encode() not in done.stdout + done.stderr


def test_agent_on_python39(cli39, receiver, tmp_path, free_port):
    config = tmp_path / "doow-track.json"
    config.write_text(json.dumps({
        "apiKey": KEY, "endpoint": receiver.url, "flushInterval": 100,
        "socket": {"path": str(tmp_path / "agent.sock")}, "spool": {"dir": str(tmp_path / "spool")},
        "health": {"listen": f"127.0.0.1:{free_port}"}, "log": {"file": str(tmp_path / "agent.log")},
    }))
    config.chmod(0o600)
    pidfile = str(tmp_path / "agent.pid")

    def cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
        return subprocess.run([cli39, *args], input=stdin, capture_output=True, env=base_env(), timeout=60)

    started = cli("--config", str(config), "--pidfile", pidfile)
    assert started.returncode == 0, started.stderr
    try:
        sent = cli("send", "--config", str(config), "--json", stdin=b"\n".join(samples.lines(50)) + b"\n")
        assert sent.returncode == 0, sent.stderr
        assert json.loads(sent.stdout)["accepted"] == 50
        assert json.loads(cli("status", "--config", str(config), "--json").stdout)["running"] is True
    finally:
        stopped = cli("stop", "--config", str(config), "--pidfile", pidfile)
    assert stopped.returncode == 0, stopped.stderr
    assert receiver.store.count() == 50
