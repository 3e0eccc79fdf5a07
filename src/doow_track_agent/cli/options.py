"""Command-line pieces the agent-facing commands share: locating the agent's config and pidfile, output.

Nothing here exits: a problem that ends the command is a ``CommandError``
carrying its exit status, which ``cli.main`` reports.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from typing import Optional, Tuple

from doow_track_agent import client, config, identity
from doow_track_agent.config import Settings
from doow_track_agent.exits import EX_CONFIG, EX_UNAVAILABLE, CommandError


MAX_SECONDS = 86400.0  # a day: longer is a typo, and time_t and socket timeouts take it everywhere


def seconds(text: str) -> float:
    """An argparse type: a finite number of seconds greater than 0 (``nan``, ``inf`` and ``-1`` are usage errors)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not (math.isfinite(value) and 0 < value <= MAX_SECONDS):
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_SECONDS:g} seconds, not {text!r}")
    return value


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config``: where the agent's config is, from which the agent is found."""
    parser.add_argument("-c", "--config", metavar="FILE",
                        help=f"the agent's config (default: $DOOW_TRACK_CONFIG or {config.DEFAULT_CONFIG_PATH})")


def add_locating_options(parser: argparse.ArgumentParser, *, socket: bool = False) -> None:
    """``--config``, ``--pidfile`` (or ``--socket``) and ``--json``: the contract's shared options."""
    add_config_option(parser)
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
    """``try_settings``; raises CommandError (78) naming every problem when the config is invalid."""
    settings, error = try_settings(args)
    if settings is None:
        raise CommandError(EX_CONFIG, f"bad configuration:\n{error}")
    return settings


def pidfile_path(args: argparse.Namespace, settings: Settings) -> Optional[str]:
    """``--pidfile`` when the command has it and it was given, else the config's ``pidfile``."""
    return getattr(args, "pidfile", None) or settings.pidfile


def flush_line(flush: dict) -> str:
    """``/status``'s ``flush`` object as one line: when the waiting events go out, and why they wait."""
    due = flush["next_in_seconds"]
    when = f"in {due:.1f} s: " if due else ""
    return f"next flush: {when}{flush['reason']}"


def locate_agent(args: argparse.Namespace, settings: Settings) -> Tuple[Optional[int], Optional[dict]]:
    """``client.find_agent``; when what claims to be the agent cannot be trusted, raises CommandError (69)
    saying why, after the ``--json`` document."""
    try:
        return client.find_agent(settings, pidfile_path(args, settings))
    except identity.Untrusted as error:
        message = f"{error}; no signal sent"
        emit(args, {"ok": False, "running": None, "pid": None, "error": message}, f"refused: {message}")
        raise CommandError(EX_UNAVAILABLE, message) from None


def emit(args: argparse.Namespace, document: dict, human: str) -> None:
    """One JSON object on stdout with ``--json``, else the human text."""
    if getattr(args, "json", False):
        sys.stdout.write(json.dumps(document) + "\n")
    else:
        sys.stdout.write(human.rstrip("\n") + "\n")
    sys.stdout.flush()
