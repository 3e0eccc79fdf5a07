"""``doow-track stop``: SIGTERM the agent and wait until it has drained and exited."""

from __future__ import annotations

import argparse
import os
import signal
import time

from doow_track_agent import exits
from doow_track_agent.cli import options
from doow_track_agent.modes.agent.pidfile import process_alive

_POLL_SECONDS = 0.05
_MARGIN_SECONDS = 10.0

EPILOG = """\
examples:
  doow-track stop
  doow-track stop --config /etc/doow-track/doow-track.json --timeout 30 --json

The agent stops accepting events, delivers what it can within shutdownTimeout,
keeps the rest in its spool for the next start, and exits.
exit status: 0 the agent is gone (or none was running), 69 what answers as the agent
(its /status, its pidfile) is not trusted: no signal sent, 75 still running after --timeout.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "stop", help="stop the agent, draining what it can", epilog=EPILOG,
        description="Send SIGTERM to the running agent and wait until its process is gone.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_locating_options(parser)
    parser.add_argument("--timeout", type=options.seconds, metavar="S",
                        help=f"seconds to wait (default: shutdownTimeout + {_MARGIN_SECONDS:g})")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = options.settings_for(args)
    pid, _ = options.locate_agent(args, settings)
    if pid is None or not process_alive(pid):
        options.emit(args, {"was_running": False, "stopped": True, "pid": None}, "no doow-track agent is running")
        return exits.EX_OK
    os.kill(pid, signal.SIGTERM)
    timeout = args.timeout if args.timeout is not None else settings.shutdown_timeout + _MARGIN_SECONDS
    deadline = time.monotonic() + timeout
    while process_alive(pid) and time.monotonic() < deadline:
        time.sleep(_POLL_SECONDS)
    stopped = not process_alive(pid)
    human = f"agent (pid {pid}) stopped" if stopped else f"agent (pid {pid}) still running after {timeout:g}s"
    options.emit(args, {"was_running": True, "stopped": stopped, "pid": pid}, human)
    return exits.EX_OK if stopped else exits.EX_TEMPFAIL
