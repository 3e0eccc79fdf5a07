"""systemd integration: the unit file, and readiness/reload/stop notifications over NOTIFY_SOCKET.

With ``Type=notify`` systemd considers the agent started only when it says
``READY=1`` (socket bound, spool open), which is what makes ``systemctl
start`` and the Ansible health gate trustworthy.  The protocol is one
datagram of ``KEY=VALUE`` lines, so it needs no library.
"""

from __future__ import annotations

import math
import os
import socket
import time
from typing import List, Optional

from doow_track_agent.config import Settings

STOP_MARGIN_SECONDS = 15
_SHELL_SPECIAL = set(' \t"\'\\$;%')


def notify(*fields: str) -> bool:
    """Send ``fields`` to the service manager; False when not under systemd (or it is unreachable)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto("\n".join(fields).encode("utf-8"), address)
    except OSError:
        return False
    return True


def ready(status: str) -> None:
    notify("READY=1", f"STATUS={status}")


def reloading() -> None:
    """``MONOTONIC_USEC`` lets systemd (253+, Type=notify-reload) tell this reload from an older one."""
    notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")


def stopping() -> None:
    notify("STOPPING=1", "STATUS=draining deliveries before exit")


def _quote(arg: str) -> str:
    if arg and not (_SHELL_SPECIAL & set(arg)):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"'


def _writable_paths(settings: Settings) -> List[str]:
    """Directives that let the service write where its config says, under ProtectSystem=strict."""
    lines: List[str] = []
    spool = settings.spool_dir.rstrip("/")
    if os.path.dirname(spool) == "/var/lib":
        lines += [f"StateDirectory={os.path.basename(spool)}", "StateDirectoryMode=0750"]
    else:
        lines.append(f"ReadWritePaths=-{spool}")
    if settings.socket_path:
        socket_dir = os.path.dirname(settings.socket_path)
        if os.path.dirname(socket_dir) == "/run":
            lines += [f"RuntimeDirectory={os.path.basename(socket_dir)}", "RuntimeDirectoryMode=0755"]
        else:
            lines.append(f"ReadWritePaths=-{socket_dir}")
    if settings.log_file:
        lines.append(f"ReadWritePaths=-{os.path.dirname(settings.log_file)}")
    return lines


def _under(paths: List[str], prefixes: tuple) -> bool:
    return any(path.startswith(prefixes) for path in paths)


def unit(settings: Settings, exec_path: str, config_path: str, user: Optional[str] = None,
         group: Optional[str] = None) -> str:
    """The text of ``doow-track.service`` for this config, run as ``user``:``group`` when given.

    ``TimeoutStopSec`` exceeds ``shutdownTimeout`` so systemd never SIGKILLs a
    drain in progress; home and /tmp are hidden unless the config lives there.
    """
    paths = [config_path, settings.spool_dir, settings.socket_path or "", settings.log_file or ""]
    stop_seconds = math.ceil(settings.shutdown_timeout) + STOP_MARGIN_SECONDS
    command = " ".join(_quote(arg) for arg in (exec_path, "--config", config_path, "--foreground"))
    service = [
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={command}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        f"TimeoutStopSec={stop_seconds}",
        "KillSignal=SIGTERM",
        "Restart=on-failure",
        "RestartSec=2",
        *([f"User={user}"] if user else []),
        *([f"Group={group}"] if group else []),
        "UMask=0027",
        # Room for producers.maxConnectionsPerSource from many users; the agent's limits stay below it.
        "LimitNOFILE=65536",
        "LimitCORE=0",  # a core dump would hold the key and billing events
        *_writable_paths(settings),
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        f"ProtectHome={'read-only' if _under(paths, ('/home/', '/root/')) else 'yes'}",
        f"PrivateTmp={'no' if _under(paths, ('/tmp/', '/var/tmp/')) else 'yes'}",
        "PrivateDevices=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        # @system-service keeps chown (socket.group) and setrlimit (no core dumps).
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        "RemoveIPC=yes",
        "PrivateMounts=yes",
        "ProtectProc=invisible",
        # root needs CAP_CHOWN only to hand the socket to socket.group; nothing else, ever.
        f"CapabilityBoundingSet={'CAP_CHOWN' if settings.socket_group and not (user or group) else ''}",
    ]
    return "\n".join([
        "[Unit]",
        "Description=doow-track agent: delivers usage events to Doow",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        *service,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ])
