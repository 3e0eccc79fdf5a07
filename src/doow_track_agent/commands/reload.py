"""``doow-track reload``: SIGHUP the agent and wait until it says whether it took the new config."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from typing import Optional

from doow_track_agent import client, exits, identity
from doow_track_agent.cli import options
from doow_track_agent.config import Settings
from doow_track_agent.modes.agent import pidfile

_POLL_SECONDS = 0.05

EPILOG = """\
examples:
  doow-track reload
  doow-track reload --config /etc/doow-track/doow-track.json --json
  kill -HUP $(cat /run/doow-track/doow-track.pid)     # the same, without confirmation

exit status: 0 the agent runs the new config (its generation went up),
78 the agent kept its previous config (the new one is invalid: see "error";
   a config that fails validation here is not even sent to the agent),
3 no agent runs, 69 what answers as the agent (its /status, its pidfile) is not
trusted: no signal sent, 75 no answer within --timeout.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reload", help="make the agent re-read its config (SIGHUP)", epilog=EPILOG,
        description="Send SIGHUP to the running agent and wait until it reports a new config "
                    "generation with the same pid, or the reason it kept the old config.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_locating_options(parser)
    parser.add_argument("--timeout", type=options.seconds, default=10.0, metavar="S",
                        help="seconds to wait for the agent's answer (default 10)")
    parser.set_defaults(func=run)


def _status_after(settings: Settings, args: argparse.Namespace) -> Optional[dict]:
    """The agent's status; a reload may have moved health.listen, so the new config is tried too."""
    document = client.fetch_status(settings, timeout=1.0)
    if document is None:
        reloaded, _ = options.try_settings(args)
        document = client.fetch_status(reloaded, timeout=1.0) if reloaded else None
    return document


def _wait(settings: Settings, args: argparse.Namespace, pid: int, attempts: int) -> Optional[dict]:
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        document = _status_after(settings, args)
        if document is not None and (document["pid"] != pid or document["reload"]["attempts"] > attempts):
            return document
        time.sleep(_POLL_SECONDS)
    return None


def _refuse_invalid(args: argparse.Namespace, error: str) -> int:
    """An invalid config is not sent to the agent: it would refuse it and keep running the old one."""
    path = getattr(args, "pidfile", None)
    try:
        pid = pidfile.trusted_pid(path) if path else None
    except identity.Untrusted:
        pid = None
    result = {"ok": False, "pid": pid, "generation_before": None, "generation": None,
              "error": f"the config is invalid; the agent was not signalled and keeps its current config: {error}"}
    sys.stderr.write(f"doow-track: {result['error']}\n")
    options.emit(args, result, "reload not attempted: invalid config")
    return exits.EX_CONFIG


def run(args: argparse.Namespace) -> int:
    settings, error = options.try_settings(args)
    if settings is None:
        return _refuse_invalid(args, str(error))
    pid, before = options.locate_agent(args, settings)
    result = {"ok": False, "pid": pid, "generation_before": before and before["generation"],
              "generation": None, "error": None}
    if pid is None:
        result["error"] = "no doow-track agent is running"
        options.emit(args, result, result["error"])
        return exits.EX_NOT_RUNNING
    os.kill(pid, signal.SIGHUP)
    if before is None:
        sys.stderr.write("doow-track: SIGHUP sent; the health listener does not answer, so the outcome "
                         "cannot be confirmed: check the agent's log\n")
        result.update(ok=True, confirmed=False)
        options.emit(args, result, f"reload signal sent to pid {pid} (not confirmed)")
        return exits.EX_OK
    after = _wait(settings, args, pid, before["reload"]["attempts"])
    code = _verdict(result, pid, after, args.timeout)
    options.emit(args, result, f"agent (pid {pid}) reloaded: config generation {result['generation_before']} -> "
                               f"{result['generation']}" if result["ok"] else f"reload failed: {result['error']}")
    return code


def _verdict(result: dict, pid: int, after: Optional[dict], timeout: float) -> int:
    if after is None:
        result["error"] = f"the agent did not report the reload within {timeout:g}s"
        return exits.EX_TEMPFAIL
    result["generation"] = after["generation"]
    if after["pid"] != pid:
        result["error"] = f"the agent restarted instead of reloading (pid {pid} -> {after['pid']})"
        return exits.EX_TEMPFAIL
    if not after["reload"]["ok"]:
        result["error"] = f"kept the previous config: {after['reload']['error']}"
        return exits.EX_CONFIG
    result["ok"] = True
    return exits.EX_OK
