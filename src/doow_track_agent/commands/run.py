"""``doow-track [options]``: the command with no name, pipe mode or (with --pidfile/--daemon) the agent.

Settings are imported once the flags are parsed, so that ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Iterable

from doow_track_agent import __version__
from doow_track_agent.cli.pipe import add_delivery_options, deliver_lines, flag_layer, load_settings, setup_logging
from doow_track_agent.cli.registry import EPILOG, command_summary
from doow_track_agent.cli.usage import UsageParser
from doow_track_agent.exits import EX_CONFIG, CommandError

if TYPE_CHECKING:
    from doow_track_agent.config import Settings


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="doow-track",
        usage="doow-track [options] < events.ndjson\n       doow-track --config FILE --pidfile FILE [--foreground]"
              "\n       doow-track COMMAND [options]",
        description="Deliver newline-delimited JSON usage events to Doow. Each line needs metric, "
                    "quantity (a number > 0) and license_id; see 'doow-track schema'.",
        epilog=EPILOG.replace("{commands}", command_summary()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--version", action="version", version=f"doow-track {__version__}")
    add_delivery_options(parser)
    agent = parser.add_argument_group(
        "agent mode (any of these starts the agent instead of pipe mode; so does input.mode file or tcp "
        "in the config or DOOW_TRACK_INPUT, attached as with --foreground, as the official CLI does)")
    agent.add_argument("--pidfile", metavar="FILE", help="run as the agent, holding a lock on FILE")
    agent.add_argument("--daemon", action="store_true", help="run as the agent (pidfile from the config, if any)")
    agent.add_argument("--foreground", action="store_true",
                       help="agent: stay attached (systemd, containers); logs go to stderr")
    return parser


def serves_input(settings: Settings) -> bool:
    """Whether ``input`` names a file to tail or a port to listen on, which only the agent serves."""
    return (settings.input or {}).get("mode") in ("file", "tcp")


def main(argv: Iterable[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    from doow_track_agent import config

    env = os.environ
    settings = load_settings(args, env)
    setup_logging(settings.debug, args.quiet)
    agent = bool(args.pidfile or args.daemon or args.foreground or serves_input(settings))
    key_file = config.file_exposure(args.api_key_file, holds_key=True) if args.api_key_file else None
    if key_file and agent:
        raise CommandError(EX_CONFIG, f"bad configuration: {key_file}; the agent refuses to run with a key "
                                      "others can read or replace")
    if key_file:
        sys.stderr.write(f"doow-track: warning: {key_file}\n")
    if agent:
        from doow_track_agent.modes.agent.run import run_agent

        # The detached agent runs in /, so a relative --config must be pinned to where we started.
        config_path = os.path.abspath(args.config) if args.config else None
        # Like the official CLI, an input to serve with no agent flag means a long-lived, attached process.
        foreground = args.foreground or not (args.pidfile or args.daemon)
        return run_agent(settings, pidfile=args.pidfile or settings.pidfile, foreground=foreground,
                         config_path=config_path,
                         reload_settings=lambda: config.load(config_path, env, flag_layer(args)))
    if sys.stdin is None or sys.stdin.isatty():
        parser.error("pipe mode reads events from stdin: pipe them in, e.g. "
                     "echo '{\"metric\":\"api_calls\",\"quantity\":1,\"license_id\":\"lic_...\"}' | doow-track ...")
    return deliver_lines(settings, sys.stdin.buffer, args, env).exit_code
