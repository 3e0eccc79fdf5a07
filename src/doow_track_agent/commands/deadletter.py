"""``doow-track deadletter list|export|retry``: the events the API refused for good, and a way back.

Dead letters keep their ``event_id`` and timestamp: exported or retried,
they are the same events, so fixing the cause (a license, a metric name)
and retrying cannot double-count anything the API did accept.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from typing import Callable, List, Optional, Set, Tuple, TypeVar

from doow_track_agent import client, exits, streams
from doow_track_agent.buffers import spool_offline
from doow_track_agent.buffers.spool_file import SpoolFormatError
from doow_track_agent.cli import options
from doow_track_agent.buffers.spool_offline import DeadLetter
from doow_track_agent.intake import wire

T = TypeVar("T")

EPILOG = """\
examples:
  doow-track deadletter list --config /etc/doow-track/doow-track.json
  doow-track deadletter list --json --limit 10
  doow-track deadletter export > rejected.ndjson          # re-sendable input lines
  doow-track deadletter retry                             # all, through the running agent
  doow-track deadletter retry --event-id 2b7e... --json

retry hands the events back to the running agent (same event_id and timestamp)
and removes them from the table once the agent has spooled them.
exit status: 0 ok, 65 some retried events invalid, 66 no spool, 69 no agent (retry), 73 cannot write --output,
78 bad config or an --output another user controls.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "deadletter", help="inspect and resend events the API rejected", epilog=EPILOG,
        description="Events the API rejected permanently (4xx, or listed in a 207 answer) are kept in "
                    "the spool's dead-letter table with the reason. List, export or retry them.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("list", "export", "retry"))
    options.add_locating_options(parser, socket=True)
    parser.add_argument("--event-id", action="append", default=[], metavar="ID",
                        help="only this event (repeatable; default: all)")
    parser.add_argument("--limit", type=int, metavar="N", help="list/export at most N events")
    parser.add_argument("--output", metavar="FILE", help="export: write to FILE instead of stdout")
    parser.set_defaults(func=run)


def _entry(letter: DeadLetter) -> dict:
    event = json.loads(letter.body)
    measurement = event["measurements"][0]
    return {"event_id": letter.event_id, "reason": letter.reason,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(letter.at)),
            "metric": measurement["metric_name"], "quantity": measurement["quantity"],
            "license_id": event["license_id"], "occurred_at": event["occurred_at"]}


def _decoded(letters: List[DeadLetter], make: Callable[[DeadLetter], T]) -> Tuple[List[Tuple[DeadLetter, T]], List[str]]:
    """Each letter with ``make(letter)``; the ids of letters that cannot be decoded are skipped and returned."""
    good: List[Tuple[DeadLetter, T]] = []
    skipped: List[str] = []
    for letter in letters:
        try:
            good.append((letter, make(letter)))
        except (ValueError, KeyError, IndexError, TypeError):  # UnicodeDecodeError is a ValueError
            skipped.append(letter.event_id)
    if skipped:
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        sys.stderr.write(f"doow-track deadletter: skipped {len(skipped)} dead letter(s) whose stored body cannot be "
                         f"decoded: {', '.join(skipped[:5])}{more}\n")
    return good, skipped


def _list(args: argparse.Namespace, letters: List[DeadLetter], total: int) -> int:
    decoded, skipped = _decoded(letters, _entry)
    entries = [entry for _, entry in decoded]
    human = [f"{total} dead letter(s)"] + [
        f"{e['at']} {e['event_id']} {e['metric']}={e['quantity']} {e['license_id']}: {e['reason']}" for e in entries]
    options.emit(args, {"dead_letters": total, "events": entries, "undecodable": skipped}, "\n".join(human))
    return exits.EX_OK


def _input_line(letter: DeadLetter) -> bytes:
    """A dead letter as an input line: re-sent, it keeps its event_id."""
    return wire.to_input_line(letter.body) + b"\n"


def _export(args: argparse.Namespace, letters: List[DeadLetter]) -> int:
    decoded, _ = _decoded(letters, _input_line)
    lines = b"".join(line for _, line in decoded)
    streams.write_data(lines, args.output)
    if args.output:
        sys.stderr.write(f"doow-track: {len(decoded)} dead letter(s) written to {args.output}\n")
    return exits.EX_OK


def _retry(args: argparse.Namespace, letters: List[DeadLetter], conn, socket_path: Optional[str]) -> int:
    if not socket_path:
        sys.stderr.write("doow-track deadletter retry: no socket: pass --socket\n")
        return exits.EX_USAGE
    decoded, skipped = _decoded(letters, _input_line)
    acknowledged: Set[str] = set()
    result = client.through_agent(io.BytesIO(b"".join(line for _, line in decoded)), socket_path, timeout=60.0,
                                  acknowledged=acknowledged)
    handed_back = [letter.id for letter, _ in decoded if letter.event_id in acknowledged]
    spool_offline.forget_dead_letters(conn, handed_back)
    summary = {"retried": len(decoded), "accepted": result["accepted"], "removed": len(handed_back),
               "undecodable": skipped, "invalid": result["invalid"], "errors": result["errors"],
               "exit_code": result["exit_code"]}
    options.emit(args, summary, _retry_report(len(letters), len(handed_back), len(skipped), result,
                                              [letter.event_id for letter, _ in decoded]))
    return int(result["exit_code"])


def _retry_report(total: int, removed: int, undecodable: int, result: dict, sent_ids: List[str]) -> str:
    """What retry did, counted: removed, and why each kept dead letter was kept (the agent's errors by event_id)."""
    report = [f"{removed} of {total} dead letter(s) handed back to the agent and removed from the table"]
    kept = {"refused as invalid by the agent": result["invalid"],
            "refused by the agent (try again later)": result.get("refused", 0),
            "undecodable": undecodable}
    kept["not acknowledged"] = total - removed - sum(kept.values())
    reasons = [f"{count} {why}" for why, count in kept.items() if count > 0]
    if reasons:
        report.append(f"kept {total - removed}: {', '.join(reasons)}")
    for error in result["errors"]:
        line = error.get("line")
        which = sent_ids[line - 1] if isinstance(line, int) and 0 < line <= len(sent_ids) else "agent"
        report.append(f"  {which}: {error.get('error')}")
    return "\n".join(report)


def run(args: argparse.Namespace) -> int:
    settings = options.settings_for(args)
    try:
        conn = spool_offline.open_existing(settings.spool_dir)
    except SpoolFormatError as error:
        sys.stderr.write(f"doow-track deadletter: {error}\n")
        return error.code
    if conn is None:
        sys.stderr.write(f"doow-track deadletter: no spool in {settings.spool_dir} (spool.dir)\n")
        return exits.EX_NOINPUT
    try:
        letters = spool_offline.dead_letters(conn, args.limit, args.event_id)
        if args.action == "list":
            total = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
            return _list(args, letters, total)
        if args.action == "export":
            return _export(args, letters)
        return _retry(args, letters, conn, args.socket or settings.socket_path)
    finally:
        conn.close()
