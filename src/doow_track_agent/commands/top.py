"""``doow-track top``: a live view of the running agent, refreshed every second; ``q`` quits.

Built on rich (``Live`` on the terminal's alternate screen) rather than
textual: a one-screen view with one key needs no widget framework, and
rich costs 50 ms and 7 MB to import where textual costs 210 ms and 24 MB
(measured with ``python -c 'import ...'`` on this project's machine).  The
keyboard is read in cbreak mode with ``select``, so the view works over SSH
on any terminal rich supports.
"""

from __future__ import annotations

import argparse
import os
import select
import sys
import termios
import time
import tty
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

from rich.console import Console
from rich.live import Live

from doow_track_agent import client, exits, identity
from doow_track_agent.cli import options
from doow_track_agent.config import Settings
from doow_track_agent.top_view import Sample, frame

EPILOG = """\
examples:
  doow-track top
  doow-track top --config /etc/doow-track/doow-track.json
  doow-track top --once          # one plain-text frame (two samples a second apart), for scripts

Shows, per source (socket, tcp, each tailed file), events in per second; out:
delivered, rejected, requests and retries per second; the spool's depth and
oldest event; dead letters; whether the key is accepted; the config
generation and the last reload's outcome; the last error and its age. When
the agent stops it says "agent not running" and reconnects when it is back.

exit status: 0 quit with q, 3 no agent runs (--once), 69 what answers as the agent
is not trusted (--once; shown as "not trusted: <reason>", as status refuses it), 64 usage (no terminal
without --once), 78 bad config or no health.listen (top reads /status there).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "top", help="watch the running agent live (q quits)", epilog=EPILOG,
        description="A live terminal view of the agent found from its config: rates per source, spool, "
                    "deliveries, key state, reloads, last error.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_config_option(parser)
    parser.add_argument("--once", action="store_true",
                        help="print one plain-text frame and exit (rates over --interval)")
    parser.add_argument("--interval", type=_seconds, default=1.0, metavar="SECONDS",
                        help="time between samples (default %(default)s)")
    parser.set_defaults(func=run)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.1 <= value <= 60:
        raise argparse.ArgumentTypeError(f"--interval must be between 0.1 and 60 seconds, not {text}")
    return value


def _sample(settings: Settings, interval: float) -> Sample:
    """The agent found as ``status`` finds it: a /status or pidfile ``identity`` refuses is shown as such."""
    try:
        _, document = client.find_agent(settings, settings.pidfile, timeout=min(2.0, interval * 2))
    except identity.Untrusted as error:
        return Sample(time.monotonic(), None, str(error))
    return Sample(time.monotonic(), document)


def run(args: argparse.Namespace) -> int:
    settings = options.settings_for(args)
    if settings.health_listen is None:
        sys.stderr.write(f"doow-track top: health.listen is disabled in {options.config_path(args)}; "
                         "top reads the agent's /status there\n")
        return exits.EX_CONFIG
    where = str(settings.health_listen)
    if args.once:
        return _once(settings, where, args.interval)
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        sys.stderr.write("doow-track top: needs a terminal; use --once for one plain-text frame\n")
        return exits.EX_USAGE
    _watch(settings, where, args.interval)
    return 0


def _once(settings: Settings, where: str, interval: float) -> int:
    first = _sample(settings, interval)
    if first.document is not None:
        time.sleep(interval)
    current = _sample(settings, interval) if first.document is not None else first
    console = Console(file=sys.stdout, width=80, color_system=None, force_terminal=False, highlight=False,
                      emoji=False)
    console.print(frame(first, current, where))
    if current.untrusted is not None:
        return exits.EX_UNAVAILABLE
    return 0 if current.document is not None else exits.EX_NOT_RUNNING


def _watch(settings: Settings, where: str, interval: float) -> None:
    console = Console(highlight=False, emoji=False)
    seen: Optional[Sample] = None  # the last sample that had an answer: rates and "last seen" use it
    with _keys() as quit_pressed, Live(console=console, screen=True, auto_refresh=False) as live:
        while True:
            current = _sample(settings, interval)
            live.update(frame(seen, current, where, tuple(console.size)), refresh=True)
            if current.document is not None:
                seen = current
            if quit_pressed(max(0.0, current.at + interval - time.monotonic())):
                return


@contextmanager
def _keys() -> Iterator[Callable[[float], bool]]:
    """The terminal in cbreak mode, restored on the way out; yields ``wait(seconds)``.

    ``wait`` returns True as soon as ``q`` is pressed or the terminal goes away (EOF: the SSH
    session dropped), False once ``seconds`` passed; other keys are ignored.
    """
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def wait(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            readable, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                return False
            data = os.read(fd, 64)
            if not data or b"q" in data.lower():
                return True

    try:
        yield wait
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
