"""Finding and talking to a running agent: what ``status``, ``reload``, ``stop`` and ``send`` share.

The agent is found from its config (``--config``, else ``$DOOW_TRACK_CONFIG``,
else ``/etc/doow-track/doow-track.json``): the health listener answers
``/status`` with the pid and config generation, and the pidfile is the
fallback when the health listener is off or unreachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from typing import Optional, Tuple

from doow_track_agent import config
from doow_track_agent.modes.agent import pidfile
from doow_track_agent.config import Listen, Settings

EX_NOT_RUNNING, EX_USAGE, EX_UNAVAILABLE, EX_TEMPFAIL, EX_CONFIG = 3, 64, 69, 75, 78
_WILDCARDS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def add_locating_options(parser: argparse.ArgumentParser, *, socket: bool = False) -> None:
    """``--config``, ``--pidfile`` (or ``--socket``) and ``--json``: the contract's shared options."""
    parser.add_argument("--config", metavar="FILE",
                        help=f"the agent's config (default: $DOOW_TRACK_CONFIG or {config.DEFAULT_CONFIG_PATH})")
    if socket:
        parser.add_argument("--socket", metavar="PATH", help="the agent's socket (overrides socket.path)")
    else:
        parser.add_argument("--pidfile", metavar="FILE", help="the agent's pidfile (overrides pidfile)")
    parser.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")


def config_path(args: argparse.Namespace) -> str:
    return args.config or config.default_config_path(os.environ)


def try_settings(args: argparse.Namespace) -> Tuple[Optional[Settings], Optional[str]]:
    """The agent's settings as its config file says (a missing file means defaults), or the error.

    Relative paths in the config are taken from the current directory, as
    the agent takes them from the directory it was started in.
    """
    try:
        settings = config.load(config_path(args), os.environ, require_file=bool(args.config))
    except config.ConfigError as error:
        return None, str(error)
    return config.resolve_paths(settings, os.getcwd()), None


def settings_for(args: argparse.Namespace) -> Settings:
    """``try_settings``, exiting 78 with every problem named when the config is invalid."""
    settings, error = try_settings(args)
    if settings is None:
        sys.stderr.write(f"doow-track: bad configuration:\n{error}\n")
        raise SystemExit(EX_CONFIG)
    return settings


def health_url(listen: Listen, path: str) -> str:
    host = _WILDCARDS.get(listen.host, listen.host)
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{listen.port}{path}"


def fetch_status(settings: Settings, timeout: float = 3.0) -> Optional[dict]:
    """The agent's ``/status`` document, or None when nothing (or something else) answers."""
    if settings.health_listen is None:
        return None
    try:
        with urllib.request.urlopen(health_url(settings.health_listen, "/status"), timeout=timeout) as reply:
            document = json.loads(reply.read(1024 * 1024))
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) and document.get("running") is True else None


def pidfile_path(args: argparse.Namespace, settings: Settings) -> Optional[str]:
    return getattr(args, "pidfile", None) or settings.pidfile


def find_agent(args: argparse.Namespace, settings: Settings) -> Tuple[Optional[int], Optional[dict]]:
    """(pid, status document): by the health listener first, by the pidfile when it does not answer."""
    status = fetch_status(settings)
    if status is not None:
        return int(status["pid"]), status
    path = pidfile_path(args, settings)
    return (pidfile.running_pid(path) if path else None), None


def emit(args: argparse.Namespace, document: dict, human: str) -> None:
    """One JSON object on stdout with ``--json``, else the human text."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")
    sys.stdout.flush()
