"""Every command in docs/guide.md runs, and prints what the guide says it prints.

The console sessions run in order in one directory, against a local receiver
started with the guide's own ``doow-track receiver`` command, as an operator
following the guide would.  Addresses that must be free on a shared machine
(the receiver's 8080, the agent's health port 9090) and the session
directory (shown as /home/ops, also $HOME) are mapped both ways.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Dict, Iterator, List, Tuple

import pytest

from doow_track_agent import docgen
from doow_track_agent.cli.registry import COMMANDS
from doow_track_agent.modes.agent.pidfile import process_alive, running_pid
from tests.docs import guide
from tests.support.agent import free_port
from tests.support.cli import BIN, base_env

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GUIDE = os.path.join(ROOT, "docs", "guide.md")
SHOWN_HOME = "/home/ops"
KEYS = ("dk_your_api_key", "dk_revoked_9f3a")


def _text() -> str:
    with open(GUIDE, encoding="utf-8") as handle:
        return handle.read()


class Session:
    """The directory, environment and receiver the guide's commands run with."""

    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="guide-", dir="/tmp")  # short: the agent's socket lives here
        self.receiver_port, self.health_port = free_port(), free_port()
        self.pairs: List[Tuple[str, str]] = [("127.0.0.1:8080", f"127.0.0.1:{self.receiver_port}"),
                                             ("127.0.0.1:9090", f"127.0.0.1:{self.health_port}")]
        self.env = base_env({"HOME": self.dir, "PYTHONUNBUFFERED": "1", "COLUMNS": "100",
                             "PATH": os.path.dirname(BIN) + os.pathsep + os.environ.get("PATH", "")})
        for name in [name for name in self.env if name.startswith("XDG_") or name == "ANSIBLE_HOME"]:
            del self.env[name]  # an operator's shell: everything per-user is under $HOME
        self.receiver = None

    def start_receiver(self, command: str) -> None:
        argv = shlex.split(guide.substitute(command, self.pairs))
        self.receiver = subprocess.Popen([BIN, *argv[1:]], cwd=self.dir, env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_for_receiver()

    def _wait_for_receiver(self) -> None:
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(self.dir, ".local", "state", "doow-track", "receiver.sqlite3")):
            assert time.monotonic() < deadline, "the receiver did not start"
            time.sleep(0.05)

    def write(self, name: str, body: str) -> None:
        with open(os.path.join(self.dir, name), "w", encoding="utf-8") as handle:
            handle.write(guide.substitute(body, self.pairs))
        os.chmod(os.path.join(self.dir, name), 0o600)

    def run(self, command: str) -> str:
        return self.run_as(command)

    def run_as(self, command: str, **user: object) -> str:
        """Run one command in bash (``user``: subprocess's user, group, extra_groups)."""
        done = subprocess.run(["bash", "-c", "exec 2>&1\n" + guide.substitute(command, self.pairs)], cwd=self.dir,
                              env=self.env, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, timeout=60, check=False,
                              **user)
        output = done.stdout.decode(errors="replace")
        for key in KEYS:
            assert key not in output, f"the key leaked: {command}"
        assert done.returncode == 0, f"{command!r} exited {done.returncode} (say so with ; echo \"exit $?\"):\n{output}"
        return self.shown(output)

    def shown(self, output: str) -> str:
        """Output as the guide shows it: its ports and its home directory."""
        output = output.replace(self.dir, SHOWN_HOME)
        return guide.substitute(output, [(new, old) for old, new in self.pairs])

    def close(self) -> None:
        for name in os.listdir(self.dir):
            if name.endswith(".pid"):
                pid = running_pid(os.path.join(self.dir, name))
                if pid and process_alive(pid):
                    os.kill(pid, signal.SIGKILL)
        if self.receiver is not None:
            self.receiver.terminate()
            self.receiver.wait(30)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def session() -> Iterator[Session]:
    started = Session()
    yield started
    started.close()


def _receiver_command(blocks: List[guide.Block]) -> str:
    for block in blocks:
        for line in guide.shell_lines(block) if block.kind == "sh" else []:
            if line.startswith("doow-track receiver") and "--licenses" in line:
                return line + " --listen 127.0.0.1:8080"
    raise AssertionError("the guide shows no 'doow-track receiver --licenses ...' command to start")


def test_console_sessions_print_what_the_guide_shows(session: Session):
    blocks = guide.blocks(_text())
    session.start_receiver(_receiver_command(blocks))
    ran = guide.replay("docs/guide.md", blocks, session)
    assert ran >= 20


def _help(command: List[str], cache: Dict[str, str]) -> str:
    key = " ".join(command)
    if key not in cache:
        done = subprocess.run([BIN, *command, "--help"], capture_output=True, text=True, env=base_env(), check=False)
        assert done.returncode == 0, f"doow-track {key} --help: {done.stderr}"
        cache[key] = done.stdout
    return cache[key]


def _invocations(line: str) -> Iterator[List[str]]:
    """The arguments of each command of a shell line that runs ``doow-track`` (after env and sudo)."""
    for part in re.split(r"\||&&|;|\$\(", line):
        words = shlex.split(part.replace(")", " "))
        while words and ("=" in words[0] or words[0] == "sudo"):
            words.pop(0)
        if words and (words[0] == "doow-track" or words[0].endswith("/bin/doow-track")):
            yield words[1:]


def _playbook_variables(line: str) -> Iterator[Tuple[str, str]]:
    """(playbook, variable) for each ``-e name=value`` of an ``ansible-playbook`` line; a
    collection playbook (``doow.track.rollout``) is read from the collection."""
    words = shlex.split(line)
    playbook = next(word for word in words if (word.startswith("playbooks/") and word.endswith(".yml"))
                    or word.startswith("doow.track."))
    if playbook.startswith("doow.track."):
        playbook = os.path.join("ansible_collections", "doow", "track", "playbooks",
                                playbook[len("doow.track."):] + ".yml")
    for flag, value in zip(words, words[1:]):
        if flag == "-e":
            yield playbook, value.split("=", 1)[0]


def test_shell_examples_use_real_commands_and_options():
    cache: Dict[str, str] = {}
    checked = 0
    for block in guide.blocks(_text()):
        if block.kind != "sh":
            continue
        syntax = subprocess.run(["bash", "-n"], input=block.body, text=True, capture_output=True, check=False)
        assert syntax.returncode == 0, f"guide line {block.line}: {syntax.stderr}"
        for line in guide.shell_lines(block):
            for args in _invocations(line):
                sub = [args[0]] if args and args[0] in COMMANDS else []
                text = _help(sub, cache)
                for word in args:
                    if word.startswith("--"):
                        assert word.split("=", 1)[0] in text, f"guide line {block.line}: {line}: no {word}"
                checked += 1
            if line.startswith("ansible-playbook"):
                for playbook, variable in _playbook_variables(line):
                    assert variable in _ansible_text(playbook), f"guide line {block.line}: {playbook} has no {variable}"
    assert checked >= 3


def _ansible_text(playbook: str) -> str:
    """The playbook and the role it may run: where a variable passed with -e must be used."""
    role = os.path.join(ROOT, "ansible_collections", "doow", "track", "roles", "agent")
    paths = [os.path.join(ROOT, playbook)] + [os.path.join(role, sub, "main.yml")
                                              for sub in ("defaults", "tasks", "vars")]
    text = ""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            text += handle.read()
    return text


@pytest.mark.parametrize("document", sorted({home for home, _ in docgen.SECTIONS.values()}))
def test_generated_sections_match_the_code(document):
    with open(os.path.join(ROOT, document), encoding="utf-8") as handle:
        text = handle.read()
    assert docgen.render(text, document) == text, f"run: python -m doow_track_agent.docgen {document}"


def test_every_doctor_check_named_in_troubleshooting_exists():
    """The troubleshooting table names checks; each must be one doctor can report."""
    from doow_track_agent.doctor import agent, endpoint

    text = _text()
    section = text[text.index("## Troubleshooting"):]
    section = section[:section.index("\n## ", 1)]
    named = set(re.findall(r"`((?:config|key|endpoint|agent|events|environment|license)\.[a-z_*]+)`", section))
    known = {"config.file", "config.schema", "config.permissions", "key.present", "key.format", "key.accepted",
             "events.file", "environment.keys", "environment.logs", "license.*", *endpoint.NAMES, *agent.NAMES}
    assert named and named <= known, named - known
