"""Who may see the receiver's page: a loopback client that asked for a loopback host.

The receiver accepts any ``dk_`` key and its page and ``/_receiver/*``
endpoints need none, so it stays on loopback.  A loopback listener is not
enough for the page: a web page elsewhere can rebind its own host name to
127.0.0.1 and read the answer, so the page also wants the Host header to
name a loopback host.
"""

from __future__ import annotations

from typing import Optional

from doow_track_agent.loopback import is_loopback


def host_of(host_header: str) -> str:
    """The host of a Host header: ``127.0.0.1:8080`` -> ``127.0.0.1``, ``[::1]:8080`` -> ``::1``."""
    host = host_header.strip()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else ""
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def page_allowed(client: str, host_header: Optional[str]) -> bool:
    """Only a loopback client that asked for a loopback host sees the page."""
    return is_loopback(client) and bool(host_header) and is_loopback(host_of(host_header or ""))
