"""The optional TCP source (the official sidecar's ``tcp:PORT``), loopback unless a token guards it.

Anyone who can reach a TCP port can bill usage to the key's workspace, so a
non-loopback address is refused unless ``tcp.token`` is set, and then every
connection must send the token as its first line.
"""

from __future__ import annotations

import asyncio
from typing import Optional

from doow_track_agent.config import Listen, Settings
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


def require_token(listen: Listen, token: Optional[str]) -> None:
    """Refuse a listener beyond loopback that anyone could bill through."""
    if not listen.is_loopback and not token:
        raise SourceError(f"tcp.listen {listen} is not a loopback address: set tcp.token, "
                          "which producers must send as their first line")


def _origin(writer: asyncio.StreamWriter) -> str:
    peer = writer.get_extra_info("peername")
    return f"tcp:{peer[0]}:{peer[1]}" if peer else "tcp"


class TcpSource:
    """A TCP listener speaking the same NDJSON protocol as the Unix socket."""

    def __init__(self, listen: Listen, token: Optional[str]) -> None:
        require_token(listen, token)
        self.listen = listen
        self.token = token
        self._server: Optional[asyncio.AbstractServer] = None

    async def start(self, producers: Producers) -> None:
        source = Source("tcp", str(self.listen))
        try:
            self._server = await asyncio.start_server(
                lambda r, w: producers.serve(r, w, source, _origin(w), self.token),
                self.listen.host, self.listen.port, limit=STREAM_LIMIT, reuse_address=True)
        except OSError as exc:
            raise SourceError(f"cannot listen on tcp.listen {self.listen}: {exc.strerror}") from None
        producers.stats.add_source(source)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()  # stops listening; open connections stay with Producers
            self._server = None
