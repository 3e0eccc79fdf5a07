"""``doow-track send``: hand events to the running agent (committed to its spool), or ``--direct``.

Events come from the arguments (one JSON object each) or stdin; the agent's
socket protocol is spoken by ``client.through_agent``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
from typing import BinaryIO, Optional

from doow_track_agent.cli.options import emit, flush_line, seconds, settings_for, try_settings
from doow_track_agent.cli.pipe import add_delivery_options, deliver_lines, load_settings
from doow_track_agent.client import fetch_status, through_agent
from doow_track_agent.exits import EX_UNAVAILABLE, EX_USAGE

EPILOG = """\
examples:
  doow-track send '{"metric":"api_calls","quantity":1,"license_id":"lic_abc123"}'
  doow-track send --config /etc/doow-track/doow-track.json --json < usage.ndjson
  some-job | doow-track send --socket /run/doow-track/doow-track.sock
  doow-track send --direct --api-key-file /etc/doow-track/key '{"metric":"runs","quantity":1,"license_id":"lic_1"}'

Through the agent, an event counts as accepted once it is committed to the
agent's spool; the agent delivers it from there.
exit status: 0 all accepted, 65 some invalid (the rest accepted), 69 no agent
reachable, 75 the spool is full or failing (see "errors").
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "send", help="send events to the running agent (or --direct)", epilog=EPILOG,
        description="Send events (JSON objects as arguments, or NDJSON on stdin) to the running agent's "
                    "socket and report, per event, whether the agent committed it to its spool.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="*", metavar="EVENT", help="a JSON event object (default: read stdin)")
    parser.add_argument("--socket", metavar="PATH", help="the agent's socket (overrides socket.path)")
    parser.add_argument("--direct", action="store_true",
                        help="deliver to the API without an agent (pipe mode; prints the pipe-mode summary)")
    parser.add_argument("--timeout", type=seconds, default=60.0, metavar="S",
                        help="seconds to wait for the agent's next reply (default 60)")
    add_delivery_options(parser)
    parser.set_defaults(func=run)


def _input(args: argparse.Namespace) -> Optional[BinaryIO]:
    """The events as one byte stream; None when there are none to read (a terminal, no arguments)."""
    if args.events:
        # A JSON object never needs a raw newline, so flattening cannot change a valid event.
        lines = (event.replace("\n", " ").replace("\r", " ") for event in args.events)
        return io.BytesIO("".join(f"{line}\n" for line in lines).encode("utf-8"))
    if sys.stdin is None or sys.stdin.isatty():
        return None
    return sys.stdin.buffer


def _human(result: dict) -> str:
    text = [f"{result['accepted']} of {result['sent']} event(s) accepted by the agent"]
    text += [f"line {error['line']}: {error['error']}" for error in result["errors"] if error["line"] is not None]
    if result.get("unanswered"):
        text.append(f"{result['unanswered']} event(s) not acknowledged: the agent went away")
    if result.get("flush"):
        text.append(flush_line(result["flush"]))
    return "\n".join(text)


def _flush(args: argparse.Namespace, path: str) -> Optional[dict]:
    """When the agent that took the events sends them next: its ``/status`` ``flush``, if it answers."""
    settings, _ = try_settings(args)
    status = fetch_status(settings, timeout=1.0) if settings is not None else None
    # The health listener must belong to the agent behind this socket, not to another one on the host.
    if status is None or os.path.abspath(str(status.get("socket"))) != os.path.abspath(path):
        return None
    return status.get("flush")


def _direct(args: argparse.Namespace, stream: BinaryIO) -> int:
    settings = load_settings(args, os.environ)
    return deliver_lines(settings, stream, args).exit_code


def run(args: argparse.Namespace) -> int:
    stream = _input(args)
    if stream is None:
        sys.stderr.write("doow-track send: give events as arguments or pipe NDJSON on stdin\n")
        return EX_USAGE
    if args.direct:
        return _direct(args, stream)
    path = args.socket or settings_for(args).socket_path
    if not path:
        sys.stderr.write("doow-track send: no socket: socket.path is null in the config; pass --socket\n")
        return EX_USAGE
    result = through_agent(stream, path, args.timeout)
    if result["exit_code"] == EX_UNAVAILABLE and not result["sent"]:  # nothing was read: no count to give
        sys.stderr.write("".join(f"doow-track send: {error['error']}\n" for error in result["errors"]))
        if args.json:
            emit(args, result, "")
        return EX_UNAVAILABLE
    if result["accepted"]:
        result["flush"] = _flush(args, path)
    for error in result["errors"][:10]:
        if error["line"] is None:  # the connection itself: said on stderr whatever the output format
            sys.stderr.write(f"doow-track send: {error['error']}\n")
        elif args.json:
            sys.stderr.write(f"doow-track send: line {error['line']}: {error['error']}\n")
    emit(args, result, _human(result))
    return int(result["exit_code"])
