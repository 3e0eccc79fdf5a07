"""The local receiver: a loopback HTTP server that speaks Doow's ingest protocol.

Endpoints:

- ``POST /telemetry/events``: ingest, as the real API (docs/protocol.md).
- ``GET /sdk/licenses/{id}``: the management API's license check.
- ``GET /``: a page of what arrived, for people (see ``page``).
- ``GET /_receiver/stats`` and ``POST /_receiver/faults``: unauthenticated
  controls for tests; they exist only here, never on the real API.

http.server with HTTP/1.1 keep-alive is enough: clients hold a few
connections open and each request carries up to 500 events, so the per
request overhead of the stdlib parser is small next to the per event work.
"""

from __future__ import annotations

import json
import logging
import socket
import socketserver
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, FrozenSet, Iterable, Optional, Set, Tuple
from urllib.parse import unquote, urlsplit

from doow_track_agent import __version__
from doow_track_agent.receiver import page
from doow_track_agent.log_throttle import Throttled
from doow_track_agent.receiver.faults import RETRY_AFTER_STATUSES, Faults, FaultState
from doow_track_agent.receiver.page_access import page_allowed
from doow_track_agent.receiver.protocol import (
    ProtocolError,
    decode_body,
    normal_encoding,
    parse_batch,
    split_events,
)
from doow_track_agent.receiver.store import STATUS_RESET, Request, Store, utc_now
from doow_track_agent.secure_files import require_regular

MAX_BODY_BYTES = 5 * 1024 * 1024
INGEST_PATH = "/telemetry/events"
LICENSE_PREFIX = "/sdk/licenses/"
REJECTED_BY_FAULT = "rejected by fault injection (reject_every)"
# How often the accept loop checks for stop(): bounds how long stop() takes.
POLL_SECONDS = 0.05
# How long a TLS client may take to finish its handshake.
HANDSHAKE_TIMEOUT_SECONDS = 10.0
# How long stop() waits for handlers to finish a request in progress.
STOP_TIMEOUT_SECONDS = 10.0
# How long a connection may stay silent (between requests, or in the middle of a body): Node's
# http.Server keepAliveTimeout.  A body shorter than its Content-Length is answered 400 after it.
IDLE_TIMEOUT_SECONDS = 5.0
# Open connections (each has a thread); more are closed at once.
MAX_CONNECTIONS = 128

logger = logging.getLogger("doow_track_agent.receiver")


@dataclass
class _App:
    """What request handlers share: configuration, the store and the fault counters."""

    store: Store
    faults: FaultState
    licenses: Optional[FrozenSet[str]]
    keys: Optional[FrozenSet[str]]
    max_body_bytes: int
    stopping: threading.Event = field(default_factory=threading.Event)
    # Batches are decoded, validated and stored one at a time. The work is
    # CPU-bound Python under one GIL; letting four connection threads
    # interleave it made the receiver slower (threads holding the store lock
    # while waiting for the GIL), not faster. Socket I/O stays concurrent.
    processing: threading.Lock = field(default_factory=threading.Lock)

    def pause(self, milliseconds: int) -> None:
        """Sleep for a fault, but wake at once when the receiver stops."""
        if milliseconds:
            self.stopping.wait(milliseconds / 1000)

    def key_ok(self, authorization: str) -> bool:
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key.startswith("dk_") or len(key) == 3:
            return False
        return self.keys is None or key in self.keys


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer that closes its keep-alive connections on stop.

    Without that, stop() would leave handler threads serving idle keep-alive
    connections against a closed store; with it, clients see the receiver go
    away like a real server would. Handler threads are daemons, so that a
    receiver a test forgot to stop cannot hold the interpreter's exit, and
    close_connections() waits for them instead of server_close().
    """

    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, address: Tuple[str, int], app: _App, tls: Optional[ssl.SSLContext] = None) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app = app
        self.tls = tls
        self._connections: Set[socket.socket] = set()
        self._connections_changed = threading.Condition()
        self._refusals = Throttled(logger)
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host name, which can stall for
        # seconds on a machine without DNS; nothing here needs it.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._connections_changed:
            full = len(self._connections) >= MAX_CONNECTIONS
            if not full:
                self._connections.add(request)
        if full:
            self._refusals.warning("full", "refused a connection from %s: %d connections open (the limit)",
                                   client_address[0], MAX_CONNECTIONS)
            socketserver.TCPServer.shutdown_request(self, request)
            return
        super().process_request(request, client_address)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """With TLS, handshake in the connection's own thread, so one slow client cannot stall accept()."""
        if self.tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        try:
            wrapped = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as error:
            logger.info("TLS handshake with %s failed: %s", client_address[0], error)
            return
        with self._connections_changed:
            self._connections.add(wrapped)
        try:
            super().finish_request(wrapped, client_address)
        finally:
            wrapped.close()
            with self._connections_changed:
                self._connections.discard(wrapped)
                self._connections_changed.notify_all()

    def shutdown_request(self, request: Any) -> None:
        """The last step of a handler thread: once all are gone, nothing uses the store."""
        super().shutdown_request(request)
        with self._connections_changed:
            self._connections.discard(request)
            self._connections_changed.notify_all()

    def close_connections(self, timeout: float) -> None:
        """Shut every open connection and wait (up to timeout) for its handler to finish."""
        with self._connections_changed:
            for connection in self._connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self._connections_changed.wait_for(lambda: not self._connections, timeout)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-request is ordinary; anything else gets its traceback."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            logger.info("client %s closed the connection mid-request", client_address[0])
        else:
            logger.exception("unexpected error serving %s", client_address[0])


class _Handler(BaseHTTPRequestHandler):
    """One connection; requests on it are dispatched by path and method."""

    protocol_version = "HTTP/1.1"
    server_version = f"doow-track-receiver/{__version__}"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        self._status = 0
        self._note = ""
        path = urlsplit(self.path).path
        try:
            self._check_framing()
            self._route(method, path)(path)
        except ProtocolError as exc:
            self._send_json(exc.status, {"error": exc.error, "message": exc.message}, exc.headers)
        except Exception:
            logger.exception("error handling %s %s", method, path)
            self.close_connection = True
            self._send_json(500, {"error": "internal", "message": "receiver error"})
        finally:
            elapsed = (time.perf_counter() - started) * 1000
            status = str(self._status) if self._status else "no response"
            logger.info(
                "%s %s %s %s%s %.1fms",
                self.client_address[0], method, repr(path)[1:-1], status, self._note, elapsed,
            )

    def _route(self, method: str, path: str) -> Callable[[str], None]:
        if path.startswith(LICENSE_PREFIX) and "/" not in path[len(LICENSE_PREFIX):]:
            methods = {"GET": self._license}
        else:
            methods = {
                INGEST_PATH: {"POST": self._ingest},
                "/": {"GET": self._page},
                "/_receiver/stats": {"GET": self._stats},
                "/_receiver/faults": {"POST": self._set_faults},
            }.get(path, {})
        if not methods:
            raise ProtocolError(404, "not_found", "no such endpoint")
        if method not in methods:
            raise ProtocolError(405, "method_not_allowed", f"use {', '.join(methods)}",
                                {"Allow": ", ".join(methods)})
        return methods[method]

    # -- endpoints --------------------------------------------------------------

    def _ingest(self, path: str) -> None:
        app = self.server.app
        encoding = normal_encoding(self.headers.get("Content-Encoding", ""))
        try:
            body = self._read_body()
            app.pause(app.faults.faults.latency_ms)
            if app.faults.take_reset():
                app.store.record_request(Request(STATUS_RESET, content_encoding=encoding))
                self.close_connection = True
                return
            with app.processing:
                status, payload = self._accept(body, encoding)
        except ProtocolError as exc:
            app.store.record_request(Request(exc.status, content_encoding=encoding))
            raise
        app.pause(app.faults.faults.slow_accept_ms)
        self._send_json(status, payload)

    def _accept(self, body: bytes, encoding: str) -> Tuple[int, Dict[str, Any]]:
        """Validate and store a batch; the status and JSON to answer with."""
        app = self.server.app
        faults = app.faults.faults
        failure = app.faults.take_failure()
        if failure is not None:
            raise _injected_failure(failure, faults)
        self._authorize()
        batch = parse_batch(decode_body(body, encoding, app.max_body_bytes), faults.max_events)
        accepted, rejections = split_events(batch.events, app.licenses)
        kept = {position for position, _ in accepted}
        refused = [event for position, event in enumerate(batch.events) if position not in kept]  # rejections' order
        for position in reversed(app.faults.take_rejections(len(accepted))):
            _, event = accepted.pop(position)
            refused.append(event)
            rejections.append({"event_id": event["event_id"], "reason": REJECTED_BY_FAULT})
        status = 207 if rejections else 202
        request = Request(status, batch.batch_id, len(batch.events), len(rejections), encoding, body)
        duplicates = app.store.record_batch(
            request, accepted, [(event, rejection["reason"]) for event, rejection in zip(refused, rejections)])
        self._note = (
            f" batch={batch.batch_id} events={len(batch.events)} accepted={len(accepted)}"
            f" rejected={len(rejections)} duplicates={duplicates}"
        )
        payload: Dict[str, Any] = {"batch_id": batch.batch_id, "accepted": len(accepted), "duplicates": duplicates}
        if rejections:
            payload.update(rejected=len(rejections), rejections=rejections)
        return status, payload

    def _license(self, path: str) -> None:
        app = self.server.app
        app.pause(app.faults.faults.latency_ms)
        self._authorize()
        license_id = unquote(path[len(LICENSE_PREFIX):])
        if app.licenses is not None and license_id not in app.licenses:
            raise ProtocolError(404, "not_found", "license not found")
        self._send_json(200, {"id": license_id, "name": license_id, "license_type": "USAGE_BASED"})

    def _stats(self, path: str) -> None:
        self._send_json(200, self.server.app.store.stats())

    def _page(self, path: str) -> None:
        if not page_allowed(self.client_address[0], self.headers.get("Host")):
            raise ProtocolError(403, "forbidden", "the page is served to loopback clients asking for a loopback host")
        body = page.render(self.server.app.store.recent(page.RECENT_ROWS), utc_now())
        self._send(200, body, page.HEADERS)

    def _set_faults(self, path: str) -> None:
        try:
            faults = Faults.from_dict(json.loads(self._read_body()))
        except (ValueError, TypeError) as exc:
            raise ProtocolError(400, "invalid_faults", str(exc)) from None
        self.server.app.faults.replace(faults)
        self._send_json(200, faults.to_dict())

    # -- helpers ----------------------------------------------------------------

    def _check_framing(self) -> None:
        """One unambiguous body length: Transfer-Encoding with Content-Length, or two Content-Lengths, are
        how requests are smuggled past a proxy (RFC 9112 6.1, 6.3), so they are refused with 400."""
        lengths = self.headers.get_all("Content-Length") or []
        if self.headers.get("Transfer-Encoding") is not None:
            self.close_connection = True  # a chunked body is never read here (ingest answers 411)
            if lengths:
                raise ProtocolError(400, "bad_framing", "both Transfer-Encoding and Content-Length")
        if len(lengths) > 1:
            self.close_connection = True
            raise ProtocolError(400, "bad_framing", "more than one Content-Length header")
        if self.command == "GET" and lengths and lengths[0] != "0":
            self.close_connection = True  # a body nobody reads must not be taken for the next request

    def _read_body(self) -> bytes:
        """Read exactly the declared body, refusing what is too large before reading it.

        A refused body stays unread, so the connection cannot be reused.
        """
        length = self.headers.get("Content-Length")
        if length is not None:
            length = length.strip(" \t")  # a field value's surrounding whitespace is not part of it (RFC 9110 5.5)
        if length is None:
            self.close_connection = True
            raise ProtocolError(411, "length_required", "a Content-Length header is required")
        if not (length.isascii() and length.isdigit()):  # str.isdigit alone takes "²" and other Unicode digits
            self.close_connection = True  # RFC 9112 6.3: an invalid Content-Length is unrecoverable framing
            raise ProtocolError(400, "bad_framing", f"Content-Length {length[:40]!r} is not a number of bytes")
        # More digits than any allowed size is too large before int() (which refuses over 4,300 digits).
        if len(length.lstrip("0")) > len(str(self.server.app.max_body_bytes)) or \
                int(length) > self.server.app.max_body_bytes:
            self.close_connection = True
            raise ProtocolError(413, "body_too_large", f"body exceeds {self.server.app.max_body_bytes} bytes")
        try:
            body = self.rfile.read(int(length))
        except (TimeoutError, socket.timeout):  # the same class from Python 3.10 on
            body = b""
        if len(body) < int(length):
            self.close_connection = True
            raise ProtocolError(400, "incomplete_body", "the body is shorter than its Content-Length (the "
                                f"connection closed, or stayed silent for {IDLE_TIMEOUT_SECONDS:g}s)")
        return body

    def _authorize(self) -> None:
        if not self.server.app.key_ok(self.headers.get("Authorization", "")):
            raise ProtocolError(401, "unauthorized", "missing or invalid API key",
                                {"WWW-Authenticate": "Bearer"})

    def _send_json(self, status: int, payload: Any, headers: Optional[Dict[str, str]] = None) -> None:
        self._send(status, json.dumps(payload).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _send(self, status: int, body: bytes, headers: Dict[str, str]) -> None:
        """One response; ``headers`` include its Content-Type."""
        try:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            # The client gave up (a timeout, typically during slow_accept):
            # what was stored stays stored, as on the real API.
            self.close_connection = True

    def log_request(self, code: Any = "-", size: Any = "-") -> None:
        """Remember the status for the one log line _dispatch writes per request."""
        self._status = int(code) if str(code).isdigit() else 0

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.client_address[0], format % args)


def _injected_failure(status: int, faults: Faults) -> ProtocolError:
    headers = {"Retry-After": faults.retry_after_header()} if status in RETRY_AFTER_STATUSES else {}
    return ProtocolError(status, "injected_fault", "failure injected by the receiver (fail_first)", headers)


def _optional_set(values: Optional[Iterable[str]]) -> Optional[FrozenSet[str]]:
    return None if values is None else frozenset(values)


def tls_context(cert_file: str, key_file: str, client_ca: Optional[str] = None) -> ssl.SSLContext:
    """A server context for ``--tls-cert``/``--tls-key`` (PEM); with ``client_ca``, clients must present a
    certificate it issued (mutual TLS).  Raises OSError or ssl.SSLError for unusable files."""
    require_regular(cert_file, key_file, client_ca)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if client_ca:
        context.load_verify_locations(cafile=client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


class Receiver:
    """A receiver bound to host:port (port 0 picks a free one), storing into db_path.

    licenses: the license ids that exist (None: every id exists).
    keys: the API keys accepted (None: any dk_ key).
    tls: serve https with this context (see ``tls_context``); plain http when None.
    """

    def __init__(
        self,
        db_path: str,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Optional[Faults] = None,
        licenses: Optional[Iterable[str]] = None,
        keys: Optional[Iterable[str]] = None,
        max_body_bytes: int = MAX_BODY_BYTES,
        tls: Optional[ssl.SSLContext] = None,
    ) -> None:
        self._app = _App(
            store=Store(db_path),
            faults=FaultState(faults),
            licenses=_optional_set(licenses),
            keys=_optional_set(keys),
            max_body_bytes=max_body_bytes,
        )
        self._httpd = _Server((host, port), self._app, tls)
        self._serving = False
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        scheme = "https" if self._httpd.tls else "http"
        return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"

    @property
    def store(self) -> Store:
        return self._app.store

    def set_faults(self, faults: Optional[Faults] = None, **fields: Any) -> None:
        """Switch faults in a running receiver: a Faults, or its fields; none clears all.

        Counters restart, so fail_first=2 means the next two requests.
        """
        self._app.faults.replace(faults or Faults(**fields))

    def stats(self) -> Dict[str, Any]:
        """What GET /_receiver/stats answers; see Store.stats()."""
        return self._app.store.stats()

    def start(self) -> "Receiver":
        """Serve in a background thread; returns self for `with Receiver(...).start()`."""
        self._serving = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(POLL_SECONDS,),
                                        name="doow-receiver", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until stop() or an exception (Ctrl-C)."""
        self._serving = True
        self._httpd.serve_forever(POLL_SECONDS)

    def stop(self) -> None:
        """Stop accepting, drop open connections, wait for handlers, close the store."""
        self._app.stopping.set()
        if self._serving:
            self._httpd.shutdown()
            self._serving = False
        self._httpd.server_close()
        self._httpd.close_connections(STOP_TIMEOUT_SECONDS)
        self._app.store.close()

    def __enter__(self) -> "Receiver":
        return self if self._serving else self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
