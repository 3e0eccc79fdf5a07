"""``doow-track systemd-unit``: print a systemd unit that runs the agent for this config."""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from doow_track_agent.cli import options
from doow_track_agent.exits import EX_OK
from doow_track_agent.modes.agent import systemd

EPILOG = """\
examples:
  doow-track systemd-unit --config /etc/doow-track/doow-track.json --user doow-track --group doow-track \\
    > /etc/systemd/system/doow-track.service
  systemctl daemon-reload && systemctl enable --now doow-track
  systemctl reload doow-track        # SIGHUP: re-read the config

The unit uses Type=notify (the agent reports readiness, reloads and stopping),
runs the agent in the foreground without a pidfile, and gives it longer than
shutdownTimeout to drain on stop.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "systemd-unit", help="print a systemd unit for the agent", epilog=EPILOG,
        description="Print a hardened systemd service unit for the agent on stdout.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-c", "--config", metavar="FILE",
                        help="the config the unit starts the agent with (default: $DOOW_TRACK_CONFIG or "
                             "/etc/doow-track/doow-track.json)")
    parser.add_argument("--exec", metavar="PATH", dest="exec_path",
                        help="the doow-track executable (default: the one running now)")
    parser.add_argument("--user", metavar="U", help="run the agent as this user (default: root)")
    parser.add_argument("--group", metavar="G",
                        help="primary group of the agent (default: the user's); supplementary groups, "
                             "such as socket.group, come from the group database")
    parser.set_defaults(func=run)


def _executable() -> str:
    found = shutil.which("doow-track")
    return os.path.abspath(found or sys.argv[0])


def run(args: argparse.Namespace) -> int:
    settings = options.settings_for(args)
    config_path = os.path.abspath(options.config_path(args))
    sys.stdout.write(systemd.unit(settings, os.path.abspath(args.exec_path or _executable()), config_path, args.user,
                                  args.group))
    return EX_OK
