"""Every command block of README.md runs and prints what the README shows, or says why it cannot.

The README's console sessions run in order in one directory, as the guide's
do (``tests/docs/test_guide.py``), but as a user other than root, made for
this run: the README is the first hour of someone who is not root, and the
agent's defaults (socket, pidfile, spool, log) must work for them.  The
agent's default health port 9090 is moved to a free one with
DOOW_TRACK_HEALTH_PORT, and ANSIBLE_CONFIG names the checkout's ansible.cfg,
as running from the checkout's root would.

A block that cannot run here (it needs a fleet, or installs the package)
carries ``<!-- docs-test: skip: REASON -->`` on the line before it; those
are counted, so that the list of untested commands cannot grow unnoticed.
"""

from __future__ import annotations

import os
import pwd
import re
import shlex
import subprocess
import sys
import sysconfig
from typing import Iterator, List

import pytest

from tests.docs import guide
from tests.docs.test_guide import ROOT, Session, _receiver_command

README = os.path.join(ROOT, "README.md")
SKIP = re.compile(r"<!-- docs-test: skip: (.+?) -->\n```", re.MULTILINE)
COMMAND_KINDS = ("console", "sh", "bash", "shell")
MAX_SKIPS = 3
SYSTEM_PYTHON = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"


def _text() -> str:
    with open(README, encoding="utf-8") as handle:
        return handle.read()


def _skipped_lines(text: str) -> List[int]:
    """The first lines of the blocks a skip marker names (with a reason)."""
    return [text.count("\n", 0, match.end()) + 1 for match in SKIP.finditer(text)]


class UserSession(Session):
    """The guide's session, run by a user made for this run (removed afterwards)."""

    def __init__(self) -> None:
        super().__init__()
        self.user = f"doowdoc{os.getpid()}"
        subprocess.run(["useradd", "--no-create-home", "--home-dir", self.dir, "--shell", "/bin/bash", self.user],
                       check=True, capture_output=True)
        entry = pwd.getpwnam(self.user)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid
        os.chown(self.dir, self.uid, self.gid)
        self._install_wrappers()
        self.env.update({"USER": self.user, "LOGNAME": self.user, "DOOW_TRACK_HEALTH_PORT": str(self.health_port),
                         "ANSIBLE_CONFIG": os.path.join(ROOT, "ansible.cfg")})

    def _install_wrappers(self) -> None:
        """``doow-track`` and ``ansible`` for the user: the venv's python lives under root's 0700 home,
        so the wrappers run the system's python of the same version on the venv's packages."""
        site = sysconfig.get_paths()["purelib"]
        bindir = os.path.join(self.dir, "bin")
        os.mkdir(bindir)
        # Python scripts with a shebang, as pip writes them: the agent's command line reads
        # ``python .../doow-track``, which is how stop/status recognise a doow-track process.
        mains = {"doow-track": "from doow_track_agent.cli import main\nsys.exit(main())",
                 "ansible": "from ansible.cli.adhoc import main\nsys.argv[0] = 'ansible'\nmain()"}
        for name, code in mains.items():
            path = os.path.join(bindir, name)
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(f"#!{SYSTEM_PYTHON}\nimport sys\n{code}\n")
            os.chmod(path, 0o755)
        self.env.update({"PYTHONPATH": os.pathsep.join((os.path.join(ROOT, "src"), site)),
                         "PATH": bindir + os.pathsep + "/usr/local/bin:/usr/bin:/bin"})

    def start_receiver(self, command: str) -> None:
        argv = shlex.split(guide.substitute(command, self.pairs))
        self.receiver = subprocess.Popen([os.path.join(self.dir, "bin", "doow-track"), *argv[1:]], cwd=self.dir, env=self.env, user=self.uid,
                                         group=self.gid, extra_groups=[],
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_receiver()

    def write(self, name: str, body: str) -> None:
        path = os.path.join(self.dir, name)
        existed = os.path.exists(path)
        mode = os.stat(path).st_mode & 0o777 if existed else 0o644
        with open(path, "w", encoding="utf-8") as handle:  # keeps the mode a command gave it (install -m 600)
            handle.write(guide.substitute(body, self.pairs))
        os.chmod(path, mode)
        os.chown(path, self.uid, self.gid)

    def run(self, command: str) -> str:
        words = shlex.split(command)
        if words[:1] == ["export"] and len(words) == 2 and "=" in words[1]:
            name, _, value = guide.substitute(words[1], self.pairs).partition("=")
            self.env[name] = value
            return ""
        return self.run_as(command, user=self.uid, group=self.gid, extra_groups=[])

    def close(self) -> None:
        super().close()
        subprocess.run(["userdel", self.user], check=False, capture_output=True)


@pytest.fixture
def user_session() -> Iterator[UserSession]:
    if not os.path.exists(SYSTEM_PYTHON) or os.geteuid() != 0:
        pytest.skip(f"needs root (to make a user) and {SYSTEM_PYTHON}, the venv's version, for that user")
    started = UserSession()
    yield started
    started.close()


def _refuse_unrun_command(block: guide.Block) -> None:
    if block.kind in COMMAND_KINDS:
        lines = guide.shell_lines(block)
        assert len(lines) == 1 and lines[0].startswith("doow-track receiver"), (
            f"README.md line {block.line}: a command block that no test runs: make it a console "
            "session, or mark it <!-- docs-test: skip: REASON -->")


def test_console_sessions_print_what_the_readme_shows(user_session: UserSession):
    text = _text()
    blocks = guide.blocks(text)
    skipped = _skipped_lines(text)
    user_session.start_receiver(_receiver_command(blocks))
    ran = guide.replay("README.md", blocks, user_session, skipped, _refuse_unrun_command)
    assert ran >= 15


def test_few_blocks_are_skipped_and_each_says_why():
    text = _text()
    skipped = _skipped_lines(text)
    starts = {block.line for block in guide.blocks(text)}
    assert set(skipped) <= starts, "a skip marker must be on the line just before a ``` fence"
    assert 0 < len(skipped) <= MAX_SKIPS, f"{len(skipped)} README blocks are not run: {skipped}"
