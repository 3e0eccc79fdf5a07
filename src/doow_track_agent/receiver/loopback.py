"""What the receiver counts as loopback: where it may listen, and who may see its page.

The receiver accepts any ``dk_`` key and its page and ``/_receiver/*``
endpoints need none, so it stays on loopback.  A loopback listener is not
enough for the page: a web page elsewhere can rebind its own host name to
127.0.0.1 and read the answer, so the page also wants the Host header to
name a loopback host.
"""

from __future__ import annotations

import ipaddress
from typing import Optional


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP literal (127.0.0.0/8, ::1); never a name that merely starts with 127."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_of(host_header: str) -> str:
    """The host of a Host header: ``127.0.0.1:8080`` -> ``127.0.0.1``, ``[::1]:8080`` -> ``::1``."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def page_allowed(client: str, host_header: Optional[str]) -> bool:
    """Only a loopback client that asked for a loopback host sees the page."""
    return is_loopback(client) and bool(host_header) and is_loopback(host_of(host_header or ""))
