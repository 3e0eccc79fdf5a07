"""Where doow-track keeps its files when the config does not say: the system's directories or the user's.

Root, and a user who can write the system directories (the service user
the Ansible role or a package creates them for), uses ``/run/doow-track``
(socket, pidfile) and ``/var/lib/doow-track`` (spool, fallback log).  Any
other user gets the XDG Base Directory ones:
``$XDG_RUNTIME_DIR/doow-track`` and ``$XDG_STATE_HOME/doow-track`` (default
``~/.local/state/doow-track``); without ``$XDG_RUNTIME_DIR`` the runtime
files go to the state directory too, never to a shared ``/tmp`` where
another local user could have created the path first.
"""

from __future__ import annotations

import os
from typing import Mapping, Optional

SYSTEM_RUNTIME_DIR = "/run/doow-track"
SYSTEM_STATE_DIR = "/var/lib/doow-track"
SOCKET_NAME = "doow-track.sock"
PIDFILE_NAME = "doow-track.pid"


def _xdg(env: Mapping[str, str], name: str) -> Optional[str]:
    """An XDG variable's value; the specification says relative paths are invalid and to be ignored."""
    value = env.get(name, "")
    return value if os.path.isabs(value) else None


def user_state_dir(env: Mapping[str, str]) -> str:
    """``$XDG_STATE_HOME/doow-track``, default ``~/.local/state/doow-track`` (outbox, rejects, a user's spool)."""
    home = env.get("HOME") or os.path.expanduser("~")
    return os.path.join(_xdg(env, "XDG_STATE_HOME") or os.path.join(home, ".local", "state"), "doow-track")


def user_runtime_dir(env: Mapping[str, str]) -> str:
    """``$XDG_RUNTIME_DIR/doow-track``, else the user's state directory."""
    runtime = _xdg(env, "XDG_RUNTIME_DIR")
    return os.path.join(runtime, "doow-track") if runtime else user_state_dir(env)


def _system(directory: str) -> bool:
    return os.geteuid() == 0 or os.access(directory, os.W_OK)


def runtime_dir(env: Mapping[str, str]) -> str:
    """Socket and pidfile directory: ``/run/doow-track`` or the user's (see the module's rule).

    Producers of a system agent find its socket through its config
    (``/etc/doow-track/doow-track.json`` by default), which names the path.
    """
    return SYSTEM_RUNTIME_DIR if _system(SYSTEM_RUNTIME_DIR) else user_runtime_dir(env)


def state_dir(env: Mapping[str, str]) -> str:
    """Spool directory (and the log's when there is no syslog): ``/var/lib/doow-track`` or the user's."""
    return SYSTEM_STATE_DIR if _system(SYSTEM_STATE_DIR) else user_state_dir(env)


def config_defaults(env: Mapping[str, str]) -> dict:
    """The path defaults as a config layer, applied under the file.

    A user's own agent also gets a default pidfile, so that ``status`` and
    ``stop`` find it without flags; root's agent keeps none unless asked
    (systemd tracks it, the role and ``--pidfile`` name one).
    """
    runtime, system = runtime_dir(env), runtime_dir(env) == SYSTEM_RUNTIME_DIR
    layer: dict = {"socket": {"path": os.path.join(runtime, SOCKET_NAME)}, "spool": {"dir": state_dir(env)}}
    if not system:
        layer["pidfile"] = os.path.join(runtime, PIDFILE_NAME)
    return layer
