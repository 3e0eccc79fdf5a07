"""Whether a host names this machine only: the one test behind every "loopback unless ..." rule.

The agent's TCP source needs a token off loopback, the health listener and
the receiver refuse other hosts unless told; they all ask here.  A name is
loopback only if it is ``localhost`` or an address in 127.0.0.0/8 or ::1
(an IPv4-mapped ::ffff:127.x.y.z included): ``127.example.com`` is not.
"""

from __future__ import annotations

import ipaddress


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (brackets around IPv6 allowed)."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return address.is_loopback or bool(mapped and mapped.is_loopback)
