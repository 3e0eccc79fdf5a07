"""One loopback rule for the TCP source's token, the health listener and the receiver."""

from __future__ import annotations

import subprocess

import pytest

from doow_track_agent.config import Listen
from doow_track_agent.loopback import is_loopback
from tests.support.cli import BIN, base_env


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost", "LOCALHOST",
                                  "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"])
def test_loopback_hosts(host):
    assert is_loopback(host) and Listen(host.strip("[]"), 1).is_loopback


@pytest.mark.parametrize("host", ["127.example.com", "0.0.0.0", "::", "10.0.0.1", "", "localhost.evil.test"])
def test_other_hosts_are_not_loopback(host):
    assert not is_loopback(host) and not Listen(host, 1).is_loopback


def test_the_receiver_refuses_a_name_that_only_starts_like_loopback():
    result = subprocess.run([BIN, "receiver", "--listen", "127.example.com:0"], capture_output=True, text=True,
                            env=base_env(), timeout=30)
    assert result.returncode == 64 and "not a loopback address" in result.stderr, result.stderr
