"""systemd: the generated unit passes systemd-analyze, and the agent speaks sd_notify."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess

import pytest

from tests.support.cli import BIN, KEY, base_env

ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")
def test_generated_unit_passes_systemd_analyze_verify(make_agent, tmp_path):
    agent = make_agent(shutdownTimeout=20000)
    result = agent.cli("systemd-unit", "--config", agent.config, "--exec", os.path.realpath(BIN),
                       "--user", "root")
    assert result.code == 0, result.err
    unit = result.out
    assert "Type=notify" in unit and "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "TimeoutStopSec=35" in unit and "NoNewPrivileges=yes" in unit and "ProtectSystem=strict" in unit
    path = tmp_path / "doow-track.service"
    path.write_text(unit)
    verify = subprocess.run([ANALYZE, "verify", str(path)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (verify.stdout + verify.stderr).splitlines() if "doow-track.service" in line]
    assert verify.returncode == 0 and not ours, verify.stdout + verify.stderr


def _messages(sock: socket.socket, until: str) -> list:
    seen = []
    while not any(until in message for message in seen):
        seen.append(sock.recv(4096).decode())
    return seen


def test_foreground_agent_notifies_ready_reloading_stopping(make_agent, tmp_path):
    agent = make_agent(log={"file": None, "level": "info"})
    notify_path = str(tmp_path / "notify.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(notify_path)
    listener.settimeout(30)
    process = subprocess.Popen([BIN, "--config", agent.config, "--foreground"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=base_env({"NOTIFY_SOCKET": notify_path}))
    try:
        assert any(m.startswith("READY=1") for m in _messages(listener, "READY=1"))
        process.send_signal(signal.SIGHUP)
        reload = _messages(listener, "READY=1")
        assert "RELOADING=1" in reload[0] and "MONOTONIC_USEC=" in reload[0]
        process.send_signal(signal.SIGTERM)
        assert any("STOPPING=1" in m for m in _messages(listener, "STOPPING=1"))
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        _, err = process.communicate()
        listener.close()
    assert b"config reloaded (generation 2)" in err, "foreground logs go to stderr"
    assert KEY.encode() not in err
