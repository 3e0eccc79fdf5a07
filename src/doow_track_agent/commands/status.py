"""``doow-track status``: is the agent running, ready, delivering; what is in its spool."""

from __future__ import annotations

import argparse
from typing import List

from doow_track_agent import exits
from doow_track_agent.buffers import spool_offline
from doow_track_agent.cli import options
from doow_track_agent.modes.agent import logs
from doow_track_agent.redact import shown_url

EPILOG = """\
examples:
  doow-track status
  doow-track status --config /etc/doow-track/doow-track.json --json
  doow-track status --json | jq .spool.events

exit status: 0 the agent runs (ready or not: see "ready"), 3 no agent runs,
69 what answers as the agent (its /status, its pidfile) is not trusted (the
message says why), 78 the config cannot be read. With no agent, the spool on disk is still shown.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status", help="show the running agent's state", epilog=EPILOG,
        description="Ask the agent found from its config (health.listen, else the pidfile) for its "
                    "state: pid, readiness, config generation, spool depth, counters, last error.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    options.add_locating_options(parser)
    parser.set_defaults(func=run)


def _describe(document: dict) -> str:
    if not document["running"]:
        text = ["no doow-track agent is running"]
        if document.get("spool"):
            text.append(_spool_line(document["spool"]))
        text.append(f"its log, when started detached with this config: {document['log']}")
        return "\n".join(text)
    lines: List[str] = [f"doow-track agent running (pid {document['pid']}, version {document.get('version', '?')}, "
                        f"up {document.get('uptime_seconds', 0):.0f}s, config generation {document.get('generation')})"]
    reasons = document.get("not_ready") or [document.get("error")]
    lines.append("ready: yes" if document.get("ready") else f"ready: NO ({'; '.join(r for r in reasons if r)})")
    if "counters" not in document:
        return "\n".join(lines)
    lines.append(f"key {document['key']} -> {shown_url(str(document['endpoint']))}")
    route = document.get("route") or {}
    lines.append(f"route: {'proxy ' + route['proxy'] + ' (from ' if route.get('proxy') else 'direct ('}"
                 f"{route.get('origin')})")
    lines.append(_spool_line(document["spool"]))
    if "flush" in document:
        lines.append(options.flush_line(document["flush"]))
    lines.append("counters: " + ", ".join(f"{name.replace('_', '-')} {value}"
                                          for name, value in document["counters"].items()))
    lines.append(f"last success: {document['last_success'] or 'never'}; last error: {document['last_error'] or 'none'}")
    lines.append(f"logs: {document.get('log') or 'unknown'}")
    return "\n".join(lines)


def _spool_line(figures: dict) -> str:
    age = figures.get("oldest_age_seconds")
    oldest = f", oldest {age:.0f}s old" if age is not None else ""
    full = " FULL" if figures.get("full") else ""
    return (f"spool: {figures['events']} events ({figures['bytes']} of {figures['max_bytes']} bytes{full}{oldest}), "
            f"{figures['dead_letters']} dead letters")


def run(args: argparse.Namespace) -> int:
    settings = options.settings_for(args)
    pid, document = options.locate_agent(args, settings)
    if document is None and pid is not None:
        document = {"running": True, "ready": False, "pid": pid, "generation": None,
                    "error": f"the health listener ({settings.health_listen or 'disabled'}) does not answer"}
    if document is None:
        document = {"running": False, "ready": False, "pid": None,
                    "spool": spool_offline.offline_figures(settings.spool_dir, settings.spool_max_bytes),
                    "log": logs.target(settings, foreground=False),
                    "config": options.config_path(args)}
    options.emit(args, document, _describe(document))
    return exits.EX_OK if document["running"] else exits.EX_NOT_RUNNING
