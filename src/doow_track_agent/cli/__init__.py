"""The ``doow-track`` command line: a thin dispatcher that imports only what a command needs.

``doow-track`` with no command is the seed's command: pipe mode, or the agent
when ``--pidfile``/``--daemon`` is given.  Each named command lives in its own
module under ``commands/`` exposing ``register(subparsers)``; only the one
being run is imported, which keeps ``--version`` and ``--help`` fast.
"""

from __future__ import annotations

import argparse
import sys
from importlib import import_module
from typing import List, Optional

from doow_track_agent import __version__

# name -> (module, one-line summary); the order is the order of ``--help``.
COMMANDS = {
    "send": ("doow_track_agent.commands.send", "send events to the running agent (or --direct)"),
    "status": ("doow_track_agent.commands.status", "show the running agent's state"),
    "reload": ("doow_track_agent.commands.reload", "make the agent re-read its config (SIGHUP)"),
    "stop": ("doow_track_agent.commands.stop", "stop the agent, draining what it can"),
    "check": ("doow_track_agent.commands.check", "validate a config file and/or an events file"),
    "doctor": ("doow_track_agent.commands.doctor", "diagnose why events do not arrive"),
    "deadletter": ("doow_track_agent.commands.deadletter", "inspect and resend events the API rejected"),
    "schema": ("doow_track_agent.commands.schema", "print the event (or config) JSON Schema"),
    "receiver": ("doow_track_agent.commands.receiver", "run a local Doow-compatible receiver"),
    "demo": ("doow_track_agent.commands.demo", "pipe sample events into a local receiver and show them"),
    "systemd-unit": ("doow_track_agent.commands.systemd_unit", "print a systemd unit for the agent"),
}

EPILOG = """\
pipe mode (reads stdin until EOF, exits with a status that tells the truth):
  echo '{"metric":"api_calls","quantity":1,"license_id":"lic_abc123"}' \\
    | doow-track --api-key dk_your_api_key
  doow-track --config ./doow-track.json < usage.ndjson

agent mode (when --pidfile or --daemon is given):
  doow-track --config ./doow-track.json --pidfile /var/run/doow-track.pid
  kill -HUP $(cat /var/run/doow-track.pid)        # reload the config

commands:
{commands}

exit status: 0 ok, 64 usage, 65 some events invalid or rejected, 69 agent
unavailable, 75 delivery failed (see the outbox), 77 key rejected, 78 bad config.
Run 'doow-track COMMAND --help' for a command's options.
"""


def command_summary() -> str:
    """The command list of the top-level ``--help``."""
    return "\n".join(f"  {name:<14}{summary}" for name, (_, summary) in COMMANDS.items())


class UsageParser(argparse.ArgumentParser):
    """argparse exits 2 on bad usage; sysexits says 64, which scripts can tell from 65.

    Subparsers inherit the class, so every command gets the same rule.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(64, f"{self.prog}: error: {message}\n")


def _run_command(name: str, argv: List[str]) -> int:
    parser = UsageParser(prog="doow-track")
    subparsers = parser.add_subparsers(dest="command", required=True)
    import_module(COMMANDS[name][0]).register(subparsers)
    args = parser.parse_args([name, *argv])
    return int(args.func(args) or 0)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the console script and of ``python -m doow_track_agent``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--version"]:
        print(f"doow-track {__version__}")
        return 0
    try:
        if argv and argv[0] in COMMANDS:
            return _run_command(argv[0], argv[1:])
        from doow_track_agent.commands import run

        return run.main(argv)
    except KeyboardInterrupt:
        return 130
