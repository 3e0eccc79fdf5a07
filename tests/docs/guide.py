"""Reading docs/guide.md the way its tests run it: files to write, console sessions, shell examples.

The guide's fenced blocks are of three kinds:

- ```json FILE, ```ndjson FILE, ```text FILE: a file the following commands
  use; the test writes it, exactly as shown, into the session's directory.
- ```console: ``$ command`` lines, each followed by the output it prints
  (stdout and stderr, as a terminal shows them).  ``...`` in an output line
  matches any text (timings, pids, uuids); a line that is only ``...``
  matches any number of lines.  A command whose exit status is not 0 says
  so itself, with ``; echo "exit $?"``.
- ```sh: commands that need root, the network, systemd or a fleet.  They are
  not run; their ``doow-track`` options are checked against ``--help``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Collection, List, Optional, Protocol, Tuple

FENCE = re.compile(r"^```([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)


@dataclass
class Block:
    kind: str
    name: Optional[str]
    body: str
    line: int


@dataclass
class Command:
    command: str
    expected: List[str]
    line: int


def blocks(text: str) -> List[Block]:
    found = []
    for match in FENCE.finditer(text):
        info = match.group(1).split()
        found.append(Block(info[0] if info else "", info[1] if len(info) > 1 else None, match.group(2),
                           text.count("\n", 0, match.start()) + 1))
    return found


def commands(block: Block) -> List[Command]:
    """``$ cmd`` lines (continued by a trailing backslash) and the output lines after each."""
    out: List[Command] = []
    lines = block.body.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        if not line.startswith("$ "):
            raise ValueError(f"guide line {block.line + index + 1}: output before any command: {line!r}")
        command, start = line[2:], index
        while command.endswith("\\"):
            index += 1
            command += "\n" + lines[index]
        index += 1
        expected = []
        while index < len(lines) and not lines[index].startswith("$ "):
            expected.append(lines[index])
            index += 1
        out.append(Command(command, expected, block.line + start + 1))
    return out


def shell_lines(block: Block) -> List[str]:
    """The commands of an ``sh`` block, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", block.body)
    return [line.split(" #", 1)[0].strip() for line in joined.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]


def pattern(expected: List[str]) -> "re.Pattern[str]":
    """The expected output as a regex: ``...`` matches any text in a line, a ``...`` line any lines."""
    parts = []
    for line in expected:
        if line == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(".*?".join(re.escape(piece) for piece in line.split("...")) + r"\n")
    return re.compile("".join(parts))


def matches(expected: List[str], actual: str) -> bool:
    text = actual if actual.endswith("\n") or not actual else actual + "\n"
    return pattern(expected).fullmatch(text) is not None


def substitute(text: str, pairs: List[Tuple[str, str]]) -> str:
    for old, new in pairs:
        text = text.replace(old, new)
    return text


class Replayer(Protocol):
    """What runs a document's sessions: a directory to write named files in and a shell to run commands."""

    def write(self, name: str, body: str) -> None: ...

    def run(self, command: str) -> str: ...


def replay(document: str, parts: List[Block], session: Replayer, skipped: Collection[int] = (),
           other: Optional[Callable[[Block], None]] = None) -> int:
    """Write each named file block, run each console command and compare its output with the document's.

    ``other`` sees every remaining block (e.g. to refuse a command block no test runs); blocks whose
    first line is in ``skipped`` are left out.  Returns how many commands ran.
    """
    ran = 0
    for block in parts:
        if block.line in skipped:
            continue
        if block.name and block.kind != "console":
            session.write(block.name, block.body)
        elif block.kind == "console":
            for command in commands(block):
                actual = session.run(command.command)
                assert matches(command.expected, actual), (
                    f"{document} line {command.line}: $ {command.command}\n--- it shows:\n"
                    + "\n".join(command.expected) + "\n--- it printed:\n" + actual)
                ran += 1
        elif other is not None:
            other(block)
    return ran
