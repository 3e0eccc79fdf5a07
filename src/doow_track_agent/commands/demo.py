"""``doow-track demo``: the whole pipe path, end to end, on this machine.

Starts the local receiver on a free loopback port, pipes sample events (a
few of them deliberately wrong) through a real ``doow-track`` process, and
shows what arrived per metric and license: what "confirm the event arrived"
looks like, without a Doow account.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

from doow_track_agent import samples
from doow_track_agent.exits import EX_FAILED, EX_OK

DEMO_KEY = "dk_demo_local_receiver_only"

EPILOG = """\
examples:
  doow-track demo
  doow-track demo --events 2000 --keep     # keep the receiver's SQLite file afterwards
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("demo", help="pipe sample events into a local receiver and show them",
                                   description=__doc__, epilog=EPILOG,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=300, metavar="N", help="valid sample events (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the receiver database and print its path")
    parser.set_defaults(func=run)


def pipe_through_cli(url: str, data: bytes, workdir: str) -> int:
    """Run the real command line, as a user's script would; its outbox and rejects files go in ``workdir``."""
    command = [sys.executable, "-m", "doow_track_agent", "--api-key", DEMO_KEY, "--endpoint", url,
               "--flush-interval", "200", "--outbox", os.path.join(workdir, "outbox.ndjson"),
               "--rejects", os.path.join(workdir, "rejects.ndjson")]
    print("$ doow-track --api-key dk_demo… --endpoint", url, "< sample.ndjson", flush=True)
    return subprocess.run(command, input=data, check=False).returncode


def run(args: argparse.Namespace) -> int:
    from doow_track_agent.receiver.server import Receiver
    from doow_track_agent.receiver.summary import print_summary

    workdir = tempfile.mkdtemp(prefix="doow-track-demo-")
    database = os.path.join(workdir, "receiver.sqlite")
    try:
        with Receiver(database) as receiver:
            lines = samples.lines(args.events, invalid_every=max(args.events // (len(samples.INVALID) + 1), 1))
            print(f"local receiver on {receiver.url}; piping {len(lines)} lines "
                  f"({args.events} valid, {len(lines) - args.events} deliberately invalid)\n")
            code = pipe_through_cli(receiver.url, b"\n".join(lines) + b"\n", workdir)
            stored, summary = receiver.store.count(), receiver.store.summary()
        verdict = "every valid line arrived" if stored == args.events else f"only {stored} of {args.events} arrived"
        print(f"\ndoow-track exited {code} (65: some lines were invalid, each reported above); {verdict}.\n")
        print_summary(summary)
        if args.keep:
            print(f"\nreceiver database: {database}  (doow-track receiver summary --db {database})")
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return EX_OK if stored == args.events else EX_FAILED
