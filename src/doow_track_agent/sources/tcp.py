"""The optional TCP source (the official sidecar's ``tcp:PORT``), loopback unless a token guards it.

Anyone who can reach a TCP port can bill usage to the key's workspace, so a
non-loopback address is refused unless ``tcp.token`` is set, and then every
connection must send the token as its first line.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, List, Optional

from doow_track_agent.config import Listen, Settings, loopback_only
from doow_track_agent.sources import STREAM_LIMIT, SourceError
from doow_track_agent.sources.producers import Producers
from doow_track_agent.stats import Source


def address(settings: Settings) -> Optional[Listen]:
    """``tcp.listen``, else ``input: {"mode": "tcp", "port": N}`` on loopback, else no TCP source."""
    if settings.tcp_listen is not None:
        return settings.tcp_listen
    if settings.input and settings.input.get("mode") == "tcp":
        return Listen("127.0.0.1", int(settings.input["port"]))
    return None


def require_token(listen: Listen, token: Optional[str]) -> List[str]:
    """The addresses to bind; refuse a listener beyond loopback that anyone could bill through.

    Loopback needs both a loopback spelling (``loopback.is_loopback``) and every address the host
    resolves to on loopback: a name in /etc/hosts pointing elsewhere is caught either way.
    """
    addresses = listen.addresses()
    if not addresses:
        raise SourceError(f"tcp.listen {listen}: the host does not resolve")
    if not (listen.is_loopback and loopback_only(addresses)) and not token:
        raise SourceError(f"tcp.listen {listen} is not a loopback address (it resolves to "
                          f"{', '.join(addresses)}): set tcp.token, which producers must send as their first line")
    return addresses


def _serve(producers: Producers, source: Source, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
           token: Optional[str]) -> Awaitable[None]:
    address = writer.get_extra_info("peername")
    origin, peer = (f"tcp:{address[0]}:{address[1]}", f"tcp:{address[0]}") if address else ("tcp", "tcp")
    return producers.serve(reader, writer, source, origin, token, peer)


class TcpSource:
    """A TCP listener speaking the same NDJSON protocol as the Unix socket."""

    def __init__(self, listen: Listen, token: Optional[str]) -> None:
        self.addresses = require_token(listen, token)
        self.listen = listen
        self.token = token
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self, producers: Producers) -> None:
        source = Source("tcp", str(self.listen))
        try:
            # Bind the addresses that were checked, not the name again: a second lookup could differ.
            self._server = await asyncio.start_server(
                lambda r, w: _serve(producers, source, r, w, self.token),
                self.addresses, self.listen.port, limit=STREAM_LIMIT, reuse_address=True)
        except OSError as exc:
            raise SourceError(f"cannot listen on tcp.listen {self.listen}: {exc.strerror}") from None
        producers.stats.add_source(source)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()  # stops listening; open connections stay with Producers
            self._server = None
