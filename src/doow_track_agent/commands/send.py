"""``doow-track send``: hand events to the running agent (committed to its spool), or ``--direct``.

Events come from the arguments (one JSON object each) or stdin.  Lines are
written by a thread while replies are read here, so a large input streams
through the agent's socket without either side waiting on the other.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import threading
from typing import BinaryIO, List, Optional

from doow_track_agent import client

EX_OK, EX_DATAERR = 0, 65
MAX_REPORTED_IDS = 1000
MAX_REPORTED_ERRORS = 100
_REFUSED = ("spool_full", "spool_error")

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
    from doow_track_agent.commands.run import add_delivery_options

    parser = subparsers.add_parser(
        "send", help="send events to the running agent (or --direct)", epilog=EPILOG,
        description="Send events (JSON objects as arguments, or NDJSON on stdin) to the running agent's "
                    "socket and report, per event, whether the agent committed it to its spool.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("events", nargs="*", metavar="EVENT", help="a JSON event object (default: read stdin)")
    parser.add_argument("--socket", metavar="PATH", help="the agent's socket (overrides socket.path)")
    parser.add_argument("--direct", action="store_true",
                        help="deliver to the API without an agent (pipe mode; prints the pipe-mode summary)")
    parser.add_argument("--timeout", type=float, default=60.0, metavar="S",
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


def _pump_lines(stream: BinaryIO, sock: socket.socket, counter: List[int]) -> None:
    """Writer thread: stream the input to the agent, counting the lines that expect a reply."""
    try:
        for line in stream:
            if line.strip():
                counter[0] += 1
            sock.sendall(line if line.endswith(b"\n") else line + b"\n")
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass  # the reader sees the connection end and reports what was not acknowledged


class Tally:
    """The agent's replies, summed up as the contract's JSON."""

    def __init__(self) -> None:
        self.accepted = 0
        self.invalid = 0
        self.refused = 0
        self.event_ids: List[str] = []
        self.errors: List[dict] = []

    def add(self, reply: dict) -> None:
        if reply.get("ok"):
            self.accepted += 1
            if len(self.event_ids) <= MAX_REPORTED_IDS:
                self.event_ids.append(reply["event_id"])
            return
        if reply.get("kind") in _REFUSED:
            self.refused += 1
        else:
            self.invalid += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append({"line": reply.get("line"), "error": reply.get("error"), "kind": reply.get("kind")})

    def result(self, sent: int, unanswered: int, socket_path: str) -> dict:
        code = client.EX_TEMPFAIL if self.refused else (EX_DATAERR if self.invalid else EX_OK)
        if unanswered:
            code = client.EX_UNAVAILABLE
        return {"sent": sent, "accepted": self.accepted, "invalid": self.invalid, "refused": self.refused,
                "unanswered": unanswered,
                "event_ids": self.event_ids if len(self.event_ids) <= MAX_REPORTED_IDS else None,
                "errors": self.errors, "socket": socket_path, "exit_code": code}


def through_agent(stream: BinaryIO, path: str, timeout: float) -> dict:
    """Send every line of ``stream`` to the agent's socket; the contract's ``send`` JSON."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as error:
        sock.close()
        return {"sent": 0, "accepted": 0, "invalid": 0, "event_ids": [], "socket": path,
                "errors": [{"line": None, "error": f"no agent listening on {path}: {error.strerror}",
                            "kind": "unavailable"}],
                "exit_code": client.EX_UNAVAILABLE}
    sock.settimeout(timeout)
    counter = [0]
    writer = threading.Thread(target=_pump_lines, args=(stream, sock, counter), daemon=True)
    writer.start()
    tally = Tally()
    try:
        for raw in sock.makefile("rb"):
            tally.add(json.loads(raw))
    except (OSError, ValueError):
        pass
    finally:
        writer.join(timeout=1.0)
        sock.close()
    answered = tally.accepted + tally.invalid + tally.refused
    return tally.result(counter[0], max(0, counter[0] - answered), path)


def _human(result: dict) -> str:
    text = [f"{result['accepted']} of {result['sent']} event(s) accepted by the agent"]
    text += [f"line {error['line']}: {error['error']}" for error in result["errors"]]
    if result.get("unanswered"):
        text.append(f"{result['unanswered']} event(s) not acknowledged: the agent went away")
    return "\n".join(text)


def _direct(args: argparse.Namespace, stream: BinaryIO) -> int:
    from doow_track_agent.commands.run import build_parser, deliver_lines, load_settings

    settings = load_settings(args, build_parser(), os.environ)
    return deliver_lines(settings, stream, args).exit_code


def run(args: argparse.Namespace) -> int:
    stream = _input(args)
    if stream is None:
        sys.stderr.write("doow-track send: give events as arguments or pipe NDJSON on stdin\n")
        return client.EX_USAGE
    if args.direct:
        return _direct(args, stream)
    path = args.socket or client.settings_for(args).socket_path
    if not path:
        sys.stderr.write("doow-track send: no socket: socket.path is null in the config; pass --socket\n")
        return client.EX_USAGE
    result = through_agent(stream, path, args.timeout)
    for error in result["errors"][:10] if args.json else []:
        sys.stderr.write(f"doow-track send: line {error['line']}: {error['error']}\n")
    client.emit(args, result, _human(result))
    return int(result["exit_code"])
