"""An attacker with an ordinary local account: a real unprivileged user, created for the run.

The tests run as root (as the agent does on most hosts); each attack runs as
this user through ``runuser``, against a victim process and a victim file
that belong to root and must come out untouched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import textwrap
from dataclasses import dataclass
from typing import Iterator, List, Optional

import pytest

_COUNTER = [0]
# The attacker's interpreter: the test's own may live where other users cannot reach (~root/.pyenv).
SYSTEM_PYTHON = "/usr/bin/python3"


@dataclass
class LocalUser:
    name: str
    uid: int
    gid: int

    def run(self, script: str, timeout: float = 30, env: Optional[dict] = None) -> subprocess.CompletedProcess:
        """Run a Python script as this user and wait for it."""
        return subprocess.run(self.command(script, env), capture_output=True, text=True, timeout=timeout,
                              check=False)

    def spawn(self, script: str, env: Optional[dict] = None) -> subprocess.Popen:
        """Start a Python script as this user; it prints "ready" once its trap is set."""
        process = subprocess.Popen(self.command(script, env), stdout=subprocess.PIPE, text=True,
                                   start_new_session=True)
        assert process.stdout is not None and process.stdout.readline().strip() == "ready"
        return process

    def command(self, script: str, env: Optional[dict] = None) -> List[str]:
        pairs = [f"{key}={value}" for key, value in (env or {}).items()]
        return ["runuser", "-u", self.name, "--", "env", "-i", "PATH=/usr/bin:/bin", "HOME=/tmp", *pairs,
                SYSTEM_PYTHON, "-c", textwrap.dedent(script)]


def _unique(prefix: str) -> str:
    _COUNTER[0] += 1
    return f"{prefix}{os.getpid()}x{_COUNTER[0]}"


def _add_user(name: str, groups: Optional[str] = None) -> LocalUser:
    command = ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", "--user-group"]
    subprocess.run(command + (["--groups", groups] if groups else []) + [name], check=True, capture_output=True)
    ids = subprocess.run(["id", "-u", name], capture_output=True, text=True, check=True).stdout.strip()
    gid = subprocess.run(["id", "-g", name], capture_output=True, text=True, check=True).stdout.strip()
    return LocalUser(name, int(ids), int(gid))


def _remove_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
    subprocess.run(["userdel", name], check=False, capture_output=True)


@pytest.fixture(scope="session")
def mallory() -> Iterator[LocalUser]:
    """The attacker: an ordinary local account."""
    if os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"):
        pytest.skip("needs root, useradd and runuser")
    user = _add_user(_unique("dtm"))
    yield user
    _remove_user(user.name)


@pytest.fixture(scope="session")
def producer_group() -> Iterator[tuple]:
    """A group for socket.group, and a member of it who is nothing else."""
    if os.geteuid() != 0 or not shutil.which("groupadd"):
        pytest.skip("needs root and groupadd")
    group = _unique("dtg")
    subprocess.run(["groupadd", group], check=True, capture_output=True)
    member = _add_user(_unique("dtp"), groups=group)
    yield group, member
    _remove_user(member.name)
    subprocess.run(["groupdel", group], check=False, capture_output=True)


@pytest.fixture
def shared_dir() -> Iterator[str]:
    """A directory everyone may write in, like /tmp (root-owned, 1777); short for AF_UNIX paths."""
    path = tempfile.mkdtemp(prefix="dts-", dir="/tmp")
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def victim() -> Iterator[subprocess.Popen]:
    """A process of root's that nothing of ours may signal."""
    process = subprocess.Popen(["sleep", "600"])
    yield process
    alive = process.poll() is None
    process.kill()
    process.wait()
    assert alive, f"the victim process died (status {process.returncode})"


@pytest.fixture
def victim_file(tmp_path) -> Iterator[str]:
    """A file of root's that nothing of ours may write to."""
    path = str(tmp_path / "precious.txt")
    with open(path, "w") as handle:
        handle.write("precious\n")
    os.chmod(tmp_path, 0o755)
    yield path
    with open(path) as handle:
        assert handle.read() == "precious\n", "the victim file was written to"
