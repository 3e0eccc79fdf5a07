"""``doow-track [options]``: the seed's command, pipe mode or (with --pidfile/--daemon) the agent."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Dict, Iterable, List, Mapping

from doow_track_agent import __version__, config
from doow_track_agent.modes.pipe import outbox
from doow_track_agent.cli import EPILOG, UsageParser, command_summary
from doow_track_agent.modes.pipe.run import PipeOptions, PipeRun, Summary, summary_line

EX_CONFIG = 78


def add_delivery_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by pipe mode and ``send --direct``."""
    key = parser.add_argument_group("key and endpoint")
    key.add_argument("--config", metavar="FILE",
                     help="JSON config file (apiKey, endpoint, flushAt, flushInterval, attribution, ...)")
    key.add_argument("--api-key", metavar="dk_...",
                     help="Doow SDK key (visible in 'ps' to other local users: prefer DOOW_TRACK_API_KEY "
                          "or --api-key-file)")
    key.add_argument("--api-key-file", metavar="FILE", help="read the key from the first line of FILE")
    key.add_argument("--endpoint", metavar="URL", help="API base URL (default https://api.doow.co)")
    tuning = parser.add_argument_group("batching and events")
    tuning.add_argument("--flush-at", type=int, metavar="N", help="send when N events are waiting (default 20)")
    tuning.add_argument("--flush-interval", type=int, metavar="MS",
                        help="send waiting events after at most MS milliseconds (default 10000)")
    tuning.add_argument("--concurrency", type=int, metavar="N", help="requests in flight (default 4)")
    tuning.add_argument("--attribution", action="append", default=[], metavar="KEY=VALUE",
                        help="default attribution for every event (repeatable; the event's own wins)")
    output = parser.add_argument_group("outcome")
    output.add_argument("--dry-run", action="store_true", help="validate every line, send nothing")
    output.add_argument("--outbox", metavar="FILE",
                        help="where undelivered events go, re-sendable as input "
                             "(default ~/.local/state/doow-track/outbox-*.ndjson)")
    output.add_argument("--rejects", metavar="FILE",
                        help="where events the API refused go, with reasons "
                             "(default ~/.local/state/doow-track/rejects-*.ndjson)")
    output.add_argument("--json", action="store_true", help="print the summary as one JSON object on stdout")
    output.add_argument("-q", "--quiet", action="store_true", help="no per-line errors and no summary on stderr")
    output.add_argument("-v", "--verbose", action="store_true", help="log every retry and request outcome")


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
    parser.add_argument("--version", action="version", version=f"doow-track {__version__}")
    add_delivery_options(parser)
    agent = parser.add_argument_group("agent mode (any of these starts the agent instead of pipe mode)")
    agent.add_argument("--pidfile", metavar="FILE", help="run as the agent, holding a lock on FILE")
    agent.add_argument("--daemon", action="store_true", help="run as the agent (pidfile from the config, if any)")
    agent.add_argument("--foreground", action="store_true",
                       help="agent: stay attached (systemd, containers); logs go to stderr")
    return parser


def parse_attribution(pairs: List[str], parser: argparse.ArgumentParser) -> Dict[str, str]:
    out: Dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            parser.error(f"--attribution {pair!r}: expected KEY=VALUE")
        out[key] = value
    return out


def flag_layer(args: argparse.Namespace, parser: argparse.ArgumentParser) -> dict:
    """The command line as a config layer (camelCase keys, only what was given)."""
    layer: dict = {}
    key = args.api_key or (config.read_key_file(args.api_key_file) if args.api_key_file else None)
    values = {"apiKey": key, "endpoint": args.endpoint, "flushAt": args.flush_at,
              "flushInterval": args.flush_interval, "concurrency": args.concurrency,
              "pidfile": getattr(args, "pidfile", None)}
    layer.update({name: value for name, value in values.items() if value is not None})
    if args.attribution:
        layer["attribution"] = parse_attribution(args.attribution, parser)
    return layer


def load_settings(args: argparse.Namespace, parser: argparse.ArgumentParser,
                  env: Mapping[str, str]) -> config.Settings:
    """Resolve settings or exit 78 with every problem named."""
    try:
        return config.load(args.config, env, flag_layer(args, parser))
    except config.ConfigError as error:
        sys.stderr.write(f"doow-track: bad configuration:\n{error}\n")
        raise SystemExit(EX_CONFIG) from None


def setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.INFO if verbose else (logging.ERROR if quiet else logging.WARNING)
    logging.basicConfig(level=level, format="doow-track: %(message)s", stream=sys.stderr)


def deliver_lines(settings: config.Settings, stream, args: argparse.Namespace,
                  env: Mapping[str, str] = os.environ) -> Summary:
    """Pipe mode over any binary stream; also what ``send --direct`` uses."""
    dry_run = args.dry_run or settings.disabled
    if settings.disabled and not args.dry_run:
        sys.stderr.write("doow-track: DOOW_TRACK_DISABLED is set: validating only, nothing is sent\n")
    if not settings.api_key and not dry_run:
        sys.stderr.write("doow-track: no API key: pass --api-key, --api-key-file, set DOOW_TRACK_API_KEY, "
                         "or put apiKey in the --config file\n")
        raise SystemExit(EX_CONFIG)
    for warning in settings.warnings:
        sys.stderr.write(f"doow-track: warning: {warning}\n")
    options = PipeOptions(
        outbox_path=args.outbox or outbox.default_path(env, "outbox"),
        rejects_path=args.rejects or outbox.default_path(env, "rejects"),
        dry_run=dry_run, quiet=args.quiet, verbose=args.verbose,
        progress=sys.stderr.isatty() and not args.quiet and not args.json,
    )
    summary = PipeRun(settings, stream, options, sys.stderr).execute()
    report(summary, args, dry_run)
    return summary


def report(summary: Summary, args: argparse.Namespace, dry_run: bool) -> None:
    """Summary on stderr; with --json, the machine-readable object on stdout."""
    if not args.quiet:
        sys.stderr.write(f"doow-track: {summary_line(summary, dry_run)}\n")
        if summary.outbox:
            sys.stderr.write(f"doow-track: {summary.outboxed} undelivered events written to {summary.outbox}; "
                             f"re-send them with: doow-track < {summary.outbox}\n")
        if summary.rejects:
            sys.stderr.write(f"doow-track: {summary.rejected} events refused by the API, with reasons, "
                             f"in {summary.rejects}\n")
    if args.json:
        sys.stdout.write(json.dumps(summary.as_json()) + "\n")
        sys.stdout.flush()


def main(argv: Iterable[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv))
    env = os.environ
    setup_logging(args.verbose or config.truthy(env.get("DOOW_TRACK_DEBUG")), args.quiet)
    settings = load_settings(args, parser, env)
    if args.pidfile or args.daemon or args.foreground:
        from doow_track_agent.modes.agent.run import run_agent

        # The detached agent runs in /, so a relative --config must be pinned to where we started.
        config_path = os.path.abspath(args.config) if args.config else None
        return run_agent(settings, pidfile=args.pidfile or settings.pidfile, foreground=args.foreground,
                         config_path=config_path,
                         reload_settings=lambda: config.load(config_path, env, flag_layer(args, parser)))
    if sys.stdin is None or sys.stdin.isatty():
        parser.error("pipe mode reads events from stdin: pipe them in, e.g. "
                     "echo '{\"metric\":\"api_calls\",\"quantity\":1,\"license_id\":\"lic_...\"}' | doow-track ...")
    return deliver_lines(settings, sys.stdin.buffer, args, env).exit_code
