"""The command table: name -> module and summary, and the top-level help built from it.

The dispatcher imports a command's module by name only when that command
runs, which keeps ``--version`` and ``--help`` fast and means the commands
and the dispatcher never import each other.
"""

from __future__ import annotations

# Pipe mode or, with --pidfile/--daemon, the agent: what ``doow-track`` with no command runs.
DEFAULT_COMMAND = "doow_track_agent.commands.run"

# name -> (module, one-line summary); the order is the order of ``--help``.
COMMANDS = {
    "send": ("doow_track_agent.commands.send", "send events to the running agent (or --direct)"),
    "status": ("doow_track_agent.commands.status", "show the running agent's state"),
    "top": ("doow_track_agent.commands.top", "watch the running agent live (q quits)"),
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

# Commands whose exit status reports what became of events: output they cannot write changes nothing.
REPORTS_DELIVERY = frozenset(("send",))

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
unavailable, 70 internal error (undelivered events in the outbox), 73/74 output
not created/written, 75 delivery failed or interrupted (see the outbox), 77 key
rejected, 78 bad config.
Run 'doow-track COMMAND --help' for a command's options.
"""


def command_summary() -> str:
    """The command list of the top-level ``--help``."""
    return "\n".join(f"  {name:<14}{summary}" for name, (_, summary) in COMMANDS.items())
