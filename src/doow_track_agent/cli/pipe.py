"""Pipe mode from the command line: the delivery options, settings from flags, the run and its report.

Shared by ``doow-track`` itself (``commands/run.py``) and ``send --direct``.
Settings, logging, intake and delivery (asyncio, httpx) are imported by the
functions that use them, once the flags are parsed: ``--help`` needs none of them.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING, Mapping, Tuple

from doow_track_agent.exits import EX_CONFIG, CommandError
from doow_track_agent.redact import ScrubbingFormatter, shown_url

if TYPE_CHECKING:
    from doow_track_agent.config import Settings
    from doow_track_agent.modes.pipe.run import PipeOptions, Summary


def add_delivery_options(parser: argparse.ArgumentParser) -> None:
    """Options shared by pipe mode and ``send --direct``."""
    key = parser.add_argument_group("key and endpoint")
    key.add_argument("-c", "--config", metavar="FILE",
                     help="JSON config file (apiKey, endpoint, flushAt, flushInterval, attribution, ...)")
    key.add_argument("-k", "--api-key", metavar="dk_...",
                     help="Doow SDK key (visible in 'ps' to other local users: prefer DOOW_TRACK_API_KEY "
                          "or --api-key-file)")
    key.add_argument("--api-key-file", metavar="FILE", help="read the key from the first line of FILE")
    key.add_argument("--endpoint", metavar="URL", help="API base URL (default https://api.doow.co)")
    key.add_argument("--proxy", metavar="URL|off",
                     help="forward proxy for the endpoint, http://[user:password@]host:port (default: "
                          "HTTPS_PROXY/HTTP_PROXY/ALL_PROXY minus NO_PROXY); off connects directly")
    tuning = parser.add_argument_group("batching and events")
    tuning.add_argument("--flush-at", type=int, metavar="N", help="send when N events are waiting (default 20)")
    tuning.add_argument("--flush-interval", type=int, metavar="MS",
                        help="send waiting events after at most MS milliseconds (default 10000)")
    tuning.add_argument("--concurrency", type=int, metavar="N", help="requests in flight (default 4)")
    tuning.add_argument("--attribution", action="append", default=[], metavar="KEY=VALUE", type=attribution_pair,
                        help="default attribution for every event (repeatable; the event's own wins)")
    tuning.add_argument("--run-id", metavar="NAME",
                        help="derive each event's event_id from NAME, the line number and the line's bytes, so "
                             "that re-running the same input under the same NAME (after kill -9, a crash) "
                             "cannot bill an event twice; lines with their own event_id keep it")
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
    output.add_argument("--verbose", action="store_true",
                        help="log every retry and request outcome (as DOOW_TRACK_DEBUG or debug: true do; "
                             "no short form: -v is --version, as in the official CLI, node and npm)")


def attribution_pair(text: str) -> Tuple[str, str]:
    """``--attribution KEY=VALUE`` as a pair; argparse turns the error into a usage error (64)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected KEY=VALUE")
    return key, value


def flag_layer(args: argparse.Namespace) -> dict:
    """The command line as a config layer (camelCase keys, only what was given)."""
    from doow_track_agent import config

    layer: dict = {}
    key = args.api_key or (config.read_key_file(args.api_key_file) if args.api_key_file else None)
    values = {"apiKey": key, "endpoint": args.endpoint, "flushAt": args.flush_at,
              "flushInterval": args.flush_interval, "concurrency": args.concurrency,
              "pidfile": getattr(args, "pidfile", None), "debug": True if args.verbose else None,
              "proxy": config.proxy_setting(args.proxy) if args.proxy is not None else None}
    layer.update({name: value for name, value in values.items() if value is not None})
    if args.attribution:
        layer["attribution"] = dict(args.attribution)
    return layer


def load_settings(args: argparse.Namespace, env: Mapping[str, str]) -> Settings:
    """Resolve settings; raises CommandError (78) naming every problem."""
    from doow_track_agent import config

    try:
        return config.load(args.config, env, flag_layer(args))
    except config.ConfigError as error:
        raise CommandError(EX_CONFIG, f"bad configuration:\n{error}") from None


def setup_logging(verbose: bool, quiet: bool) -> None:
    import logging

    level = logging.INFO if verbose else (logging.ERROR if quiet else logging.WARNING)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(ScrubbingFormatter("doow-track: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])


def deliver_lines(settings: Settings, stream, args: argparse.Namespace,
                  env: Mapping[str, str] = os.environ) -> Summary:
    """Pipe mode over any binary stream; also what ``send --direct`` uses.

    Raises CommandError (78) when events would be sent but there is no key, or nowhere safe to keep
    what is not delivered.
    """
    from doow_track_agent import config
    from doow_track_agent.delivery import http_client
    from doow_track_agent.modes.pipe import outbox
    from doow_track_agent.modes.pipe.run import PipeOptions, PipeRun

    dry_run = args.dry_run or settings.disabled
    if settings.disabled and not args.dry_run:
        sys.stderr.write("doow-track: disabled (DOOW_TRACK_DISABLED or \"disabled\": true in the config): "
                         "validating only, nothing is sent\n")
    if not settings.api_key and not dry_run:
        raise CommandError(EX_CONFIG, "no API key: pass --api-key, --api-key-file, set DOOW_TRACK_API_KEY, "
                                      "or put apiKey in the --config file")
    for warning in settings.warnings:
        sys.stderr.write(f"doow-track: warning: {warning}\n")
    options = PipeOptions(
        outbox_path=args.outbox or outbox.default_path(env, "outbox"),
        rejects_path=args.rejects or outbox.default_path(env, "rejects"),
        dry_run=dry_run, quiet=args.quiet, run_id=args.run_id,
        progress=sys.stderr.isatty() and not args.quiet and not args.json,
    )
    if not dry_run:
        _check_output_files(options)
        try:  # a tls.* file that cannot be used is a configuration error, found before any line is read
            http_client.check(settings)
        except config.ConfigError as error:
            raise CommandError(EX_CONFIG, f"bad configuration:\n{error}") from None
    summary = PipeRun(settings, stream, options, sys.stderr).execute()
    report(summary, args, dry_run, env)
    return summary


def _check_output_files(options: PipeOptions) -> None:
    """Raises CommandError (78), before any input is read, when the outbox or rejects file could not be
    written safely (another user's file or symlink, a directory others control)."""
    from doow_track_agent.modes.pipe import outbox
    from doow_track_agent.secure_files import UnsafePath

    try:
        outbox.check_writable(options.outbox_path, "outbox file")
        outbox.check_writable(options.rejects_path, "rejects file")
    except (UnsafePath, OSError) as error:
        raise CommandError(EX_CONFIG, f"{error}; nothing was read or sent") from None


def resend_command(args: argparse.Namespace, env: Mapping[str, str], path: str) -> str:
    """A command that re-sends ``path`` with this run's key source, endpoint and proxy.

    The key source is the one the run used (``config.key_source``), never the key itself: a key
    file by its absolute path, under the flag or variable that named it (``--api-key-file FILE``,
    ``DOOW_TRACK_API_KEY_FILE=FILE``); a key given with ``--api-key`` or DOOW_TRACK_API_KEY as
    ``DOOW_TRACK_API_KEY=...``, for the user to fill in; the config file's ``apiKey`` by ``--config``.
    """
    import shlex

    from doow_track_agent import config

    words = ["doow-track"]
    if args.config:
        words += ["--config", os.path.abspath(args.config)]
    variables = []
    source = config.key_source(args.api_key, args.api_key_file, env)
    name, key_file = source or (None, None)
    if name == "--api-key-file":
        words += ["--api-key-file", os.path.abspath(key_file)]
    elif name == "DOOW_TRACK_API_KEY_FILE":
        variables.append(f"DOOW_TRACK_API_KEY_FILE={shlex.quote(os.path.abspath(key_file))}")
    elif name:
        variables.append("DOOW_TRACK_API_KEY=...")
    endpoint = args.endpoint or env.get("DOOW_TRACK_ENDPOINT")
    if endpoint:
        words += ["--endpoint", shown_url(endpoint)]
    proxy = args.proxy if args.proxy is not None else env.get("DOOW_TRACK_PROXY")
    if proxy and proxy.strip():  # the route that failed may need it again; a proxy password is shown as *** to fill in
        words += ["--proxy", shown_url(proxy.strip())]  # stripped as the run used it, so *** masks it
    command = " ".join([*variables, *(shlex.quote(word) for word in words)])
    return f"{command} < {shlex.quote(path)}"


def report(summary: Summary, args: argparse.Namespace, dry_run: bool, env: Mapping[str, str]) -> None:
    """Summary on stderr; with --json, the machine-readable object on stdout."""
    from doow_track_agent.modes.pipe.run import summary_line, unwritten_line

    lost = unwritten_line(summary)
    if lost:  # even with --quiet: these events are nowhere but in the input
        sys.stderr.write(f"doow-track: {lost}\n")
    if not args.quiet:
        sys.stderr.write(f"doow-track: {summary_line(summary, dry_run)}\n")
        if summary.outbox:
            sys.stderr.write(f"doow-track: {summary.outboxed} undelivered events written to {summary.outbox}; "
                             f"re-send them with: {resend_command(args, env, summary.outbox)}\n")
        if summary.rejects:
            sys.stderr.write(f"doow-track: {summary.rejected} events refused by the API, with reasons, "
                             f"in {summary.rejects}\n")
    if args.json:
        import json

        sys.stdout.write(json.dumps(summary.as_json()) + "\n")
        sys.stdout.flush()
