"""The agent's health listener: /healthz, /readyz, /status (JSON) and /metrics (Prometheus text, see metrics).

A tiny HTTP/1.1 responder on the event loop (one request per connection)
rather than ``http.server`` in a thread: the figures it reports are mutated
only in the loop thread, so reading them there needs no locks.  Everything
it serves comes from one status document, so /status, /metrics and the
``status`` command cannot disagree, and none of it contains the key.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from typing import Callable, Dict, List, Optional, Protocol, Tuple

from doow_track_agent import __version__
from doow_track_agent.buffers.spool import Spool
from doow_track_agent.config import Listen, Settings
from doow_track_agent.delivery.pump import flush_outlook
from doow_track_agent.modes.agent import metrics
from doow_track_agent.egress import describe_trust
from doow_track_agent.redact import mask_key, shown_url
from doow_track_agent.stats import Stats

log = logging.getLogger(__name__)

_REQUEST_TIMEOUT = 5.0    # seconds for a whole exchange: request head in, answer out
_MAX_CONNECTIONS = 64     # open at once; more are closed unanswered (the listener is for probes)
_MAX_HEAD = 8192
_COUNTERS = ("accepted", "invalid", "delivered", "rejected", "dead_lettered", "requests", "retries")


class Observed(Protocol):
    """What the health listener reads from the agent."""

    settings: Settings
    stats: Stats
    spool: Spool
    generation: int
    started: float
    stopping: bool
    reload_state: dict
    log_target: str

    def file_figures(self) -> List[dict]: ...

    def failures(self) -> List[str]: ...


def _iso(epoch: Optional[float]) -> Optional[str]:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch is not None else None


def not_ready_reasons(agent: Observed) -> List[str]:
    """Why /readyz says 503; empty when ready."""
    stats = agent.stats
    reasons = []
    if agent.stopping:
        reasons.append("shutting down")
    if stats.key_rejected:
        reasons.append("API key rejected (401/403): rotate it and reload")
    elif stats.failing:
        reasons.append(f"deliveries failing: {stats.last_error}")
    if agent.spool.full:
        reasons.append("spool full: new events are refused")
    reasons += agent.failures()
    return reasons


def status_document(agent: Observed) -> dict:
    """The ``/status`` JSON of docs/cli-contract.md (plus a few added fields)."""
    stats, settings = agent.stats, agent.settings
    reasons = not_ready_reasons(agent)
    return {
        "running": True, "ready": not reasons, "pid": os.getpid(), "version": __version__,
        "uptime_seconds": round(time.monotonic() - agent.started, 3), "generation": agent.generation,
        "key": mask_key(settings.api_key), "endpoint": shown_url(settings.endpoint), "route": settings.route.as_json(),
        "trust": describe_trust(settings.tls, os.environ),
        "spool": agent.spool.figures(),
        "flush": flush_outlook(settings, agent.spool, stats, time.monotonic()),
        "counters": {name: getattr(stats, name) for name in _COUNTERS},
        "last_success": _iso(stats.last_success), "last_error": stats.last_error,
        "last_error_at": _iso(stats.last_error_at), "failing": stats.failing, "key_rejected": stats.key_rejected,
        "not_ready": reasons, "reload": agent.reload_state,
        "config": settings.source, "socket": settings.socket_path, "log": agent.log_target,
        "files": agent.file_figures(), "sources": stats.source_figures(),
    }


Response = Tuple[int, str, bytes]


def _text(status: int, body: str) -> Response:
    return status, "text/plain; charset=utf-8", body.encode("utf-8")


class HealthServer:
    """Answers the four endpoints from the live agent."""

    def __init__(self, agent: Observed) -> None:
        self.agent = agent
        self._server: Optional[asyncio.AbstractServer] = None
        self._collectors = metrics.registry(lambda: status_document(agent))
        self._open = 0
        self._routes: Dict[str, Callable[[], Response]] = {
            "/healthz": lambda: _text(200, "ok\n"),
            "/readyz": self._readyz,
            "/status": self._status,
            "/metrics": self._metrics,
        }

    async def start(self, listen: Listen) -> None:
        self._server = await asyncio.start_server(self._handle, listen.host, listen.port, reuse_address=True)

    def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def _readyz(self) -> Response:
        reasons = not_ready_reasons(self.agent)
        return _text(503, "not ready: " + "; ".join(reasons) + "\n") if reasons else _text(200, "ready\n")

    def _status(self) -> Response:
        return 200, "application/json", json.dumps(status_document(self.agent)).encode("utf-8")

    def _metrics(self) -> Response:
        return 200, metrics.CONTENT_TYPE, metrics.exposition(self._collectors)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= _MAX_CONNECTIONS:
            writer.close()
            return
        self._open += 1
        try:
            await asyncio.wait_for(self._exchange(reader, writer), _REQUEST_TIMEOUT)
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            pass
        except Exception:  # a bug in one answer must not go unseen, nor take the listener down
            log.exception("health listener: cannot answer")
        finally:
            self._open -= 1
            writer.close()

    async def _exchange(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        writer.write(self._respond(head))
        await writer.drain()

    def _respond(self, head: bytes) -> bytes:
        parts = head.split(b"\r\n", 1)[0].decode("latin-1").split()
        if len(parts) != 3 or len(head) > _MAX_HEAD:
            status, kind, body = _text(400, "bad request\n")
        elif parts[0] not in ("GET", "HEAD"):
            status, kind, body = _text(405, "only GET\n")
        else:
            route = self._routes.get(parts[1].split("?", 1)[0])
            status, kind, body = route() if route else _text(404, "try /healthz, /readyz, /status or /metrics\n")
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
                  503: "Service Unavailable"}[status]
        header = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                  f"Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode("latin-1")
        return header + (b"" if parts[:1] == ["HEAD"] else body)
