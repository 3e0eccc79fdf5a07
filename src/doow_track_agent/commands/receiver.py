"""``doow-track receiver``: run the local receiver, or show what it stored."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import ssl
import sys
from dataclasses import fields
from typing import Any, List, Optional, Tuple

from doow_track_agent import locations
from doow_track_agent.exits import EX_CONFIG, EX_NOINPUT, EX_OK, EX_UNAVAILABLE, EX_USAGE
from doow_track_agent.loopback import is_loopback
from doow_track_agent.receiver.faults import Faults
from doow_track_agent.receiver.server import MAX_BODY_BYTES, Receiver, logger, tls_context
from doow_track_agent.receiver.store import Store
from doow_track_agent.receiver.summary import print_summary
from doow_track_agent.redact import ScrubbingFormatter
from doow_track_agent.secure_files import UnsafePath, ensure_directory, open_private, write_atomically

DEFAULT_LISTEN = "127.0.0.1:8080"
DB_NAME = "receiver.sqlite3"

EPILOG = """\
actions:
  serve (default)  listen for POST /telemetry/events and GET /sdk/licenses/{id};
                   open http://HOST:PORT/ in a browser to watch events arrive
  summary          print what the database holds, per license and metric

examples:
  doow-track receiver                 # http://127.0.0.1:8080, ~/.local/state/doow-track/receiver.sqlite3
  doow-track receiver --listen 127.0.0.1:0 --ready-file url.txt --db /tmp/r.sqlite
  doow-track --api-key dk_test --endpoint http://127.0.0.1:8080 < events.ndjson
  doow-track receiver --tls-cert server.pem --tls-key server.key        # https://127.0.0.1:8080
  doow-track receiver --tls-cert server.pem --tls-key server.key --tls-client-ca clients.pem   # mTLS
  doow-track receiver summary --db /tmp/r.sqlite
  doow-track receiver summary --json | jq .events

fault injection (for testing clients):
  doow-track receiver --fail-first 3 --fail-status 503 --retry-after 1
  doow-track receiver --reject-every 10 --latency-ms 200
  doow-track receiver --slow-accept-ms 15000     # stores, then answers after the client timed out
  curl -X POST -d '{"fail_first": 2, "fail_status": 429}' http://127.0.0.1:8080/_receiver/faults
  curl http://127.0.0.1:8080/_receiver/stats

Only loopback addresses are allowed unless --allow-remote is given: the
receiver accepts any dk_ key and its /_receiver/* endpoints need none.
exit status: 0 ok, 64 usage, 66 no such database, 69 cannot listen.
"""

_FAULT_HELP = {
    "latency_ms": "delay every protocol request by N ms",
    "fail_first": "answer the first N ingest requests with --fail-status",
    "fail_status": "status for --fail-first (default %(default)s)",
    "retry_after": "Retry-After seconds sent with a 429 or 503 (default %(default)s)",
    "reject_every": "reject every Nth event in a 207",
    "slow_accept_ms": "store a batch, then answer only after N ms",
    "reset_first": "close the connection without a response for the first N ingest requests",
    "max_events": "answer 413 to batches of more than N events (default %(default)s)",
}


def register(subparsers: Any) -> None:
    """Add the ``receiver`` command to the main CLI's subparsers."""
    parser = subparsers.add_parser(
        "receiver",
        help="run a local Doow-compatible receiver",
        description="A local receiver that speaks Doow's ingest protocol and stores events in SQLite, "
        "de-duplicated by event_id: confirm what the agent delivers, in demos, tests and CI.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("action", nargs="?", choices=("serve", "summary"), default="serve",
                        help="serve (default) or summary")
    parser.add_argument("--db", metavar="FILE",
                        help=f"SQLite database (default $XDG_STATE_HOME/doow-track/{DB_NAME}, "
                             f"XDG_STATE_HOME defaulting to ~/.local/state)")
    parser.add_argument("--json", action="store_true", help="summary: print one JSON object")
    serve = parser.add_argument_group("serve")
    serve.add_argument("--listen", default=DEFAULT_LISTEN, metavar="HOST:PORT",
                       help="address to listen on, port 0 for any free one (default %(default)s)")
    serve.add_argument("--allow-remote", action="store_true", help="allow a non-loopback --listen address")
    serve.add_argument("--licenses", type=_csv, metavar="ID,...",
                       help="the license ids that exist (default: every id exists)")
    serve.add_argument("--keys", type=_csv, metavar="KEY,...",
                       help="the API keys accepted (default: any dk_ key)")
    serve.add_argument("--max-body-bytes", type=int, default=MAX_BODY_BYTES, metavar="N",
                       help="answer 413 to larger bodies, compressed or not (default %(default)s)")
    serve.add_argument("--ready-file", metavar="PATH", help="write the URL to PATH once listening")
    serve.add_argument("--tls-cert", metavar="FILE", help="serve https with this PEM certificate (chain)")
    serve.add_argument("--tls-key", metavar="FILE", help="the PEM private key of --tls-cert")
    serve.add_argument("--tls-client-ca", metavar="FILE",
                       help="require client certificates issued by this PEM CA (mutual TLS)")
    serve.add_argument("--verbose", action="store_true", help="log one line per request to stderr")
    faults = parser.add_argument_group("fault injection")
    for spec in fields(Faults):
        faults.add_argument("--" + spec.name.replace("_", "-"), dest=spec.name,
                            metavar="N" if spec.type == "int" else "SECONDS",
                            type=int if spec.type == "int" else float,
                            default=spec.default, help=_FAULT_HELP[spec.name])
    parser.set_defaults(func=run)


def _check_database(path: str) -> None:
    """Make the database's directory, and refuse a database (or its WAL files) another user controls.

    SQLite follows symlinks when it opens or creates these files; ``open_private`` does not.
    Raises UnsafePath, or OSError.
    """
    ensure_directory(os.path.dirname(os.path.abspath(path)), "the directory of --db", 0o700)
    for name in (path, f"{path}-wal", f"{path}-shm", f"{path}-journal"):
        if name == path or os.path.lexists(name):
            os.close(open_private(name, os.O_RDWR | os.O_CREAT, "--db"))


def _csv(value: str) -> List[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT/SIGTERM, or print the summary."""
    args.db = args.db or os.path.join(locations.user_state_dir(os.environ), DB_NAME)
    if args.action == "summary":
        return _summary(args.db, args.json)
    return _serve(args)


def _summary(db: str, as_json: bool) -> int:
    if not os.path.exists(db):
        print(f"doow-track receiver: no database at {db}", file=sys.stderr)
        return EX_NOINPUT
    summary = Store(db).summary()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print_summary(summary)
    return EX_OK


def _serve(args: argparse.Namespace) -> int:
    try:
        host, port = parse_listen(args.listen, args.allow_remote)
        faults = Faults(**{spec.name: getattr(args, spec.name) for spec in fields(Faults)})
        tls = _tls(args)
    except ValueError as exc:
        print(f"doow-track receiver: {exc}", file=sys.stderr)
        return EX_USAGE
    _configure_logging(args.verbose)
    try:
        _check_database(args.db)
    except (UnsafePath, OSError) as exc:
        print(f"doow-track receiver: {exc}", file=sys.stderr)
        return EX_CONFIG
    try:
        receiver = Receiver(args.db, host=host, port=port, faults=faults, licenses=args.licenses,
                            keys=args.keys, max_body_bytes=args.max_body_bytes, tls=tls)
    except OSError as exc:
        print(f"doow-track receiver: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return EX_UNAVAILABLE
    print(f"listening on {receiver.url} (what arrived: {receiver.url}/ in a browser), storing in {args.db}", file=sys.stderr, flush=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if args.ready_file:
            write_atomically(args.ready_file, receiver.url.encode() + b"\n", "--ready-file", 0o644)
        receiver.serve_forever()
    except UnsafePath as exc:
        print(f"doow-track receiver: {exc}", file=sys.stderr)
        return EX_CONFIG
    except KeyboardInterrupt:
        pass
    finally:
        receiver.stop()
    return EX_OK


def _tls(args: argparse.Namespace) -> Optional[ssl.SSLContext]:
    """The server context of --tls-cert/--tls-key/--tls-client-ca; raises ValueError naming the bad option."""
    if not args.tls_cert and not args.tls_key and not args.tls_client_ca:
        return None
    if not args.tls_cert or not args.tls_key:
        raise ValueError("--tls-cert and --tls-key go together (--tls-client-ca needs both)")
    try:
        return tls_context(args.tls_cert, args.tls_key, args.tls_client_ca)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"--tls-cert/--tls-key/--tls-client-ca: cannot load: {exc}") from None


def parse_listen(listen: str, allow_remote: bool = False) -> Tuple[str, int]:
    """HOST:PORT (or [V6]:PORT) to a bindable pair, refusing non-loopback hosts unless allowed."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--listen must be HOST:PORT, not {listen!r}")
    if not allow_remote and not is_loopback(host):
        raise ValueError(f"{host} is not a loopback address; add --allow-remote to listen there")
    return host, int(port)


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM stops the receiver the way Ctrl-C does."""
    raise KeyboardInterrupt


def _configure_logging(verbose: bool) -> None:
    """Request lines at --verbose; errors always."""
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(ScrubbingFormatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
