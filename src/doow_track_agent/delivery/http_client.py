"""The one way to build an httpx client for the endpoint, and to say why a request to it failed.

Deliveries (pipe mode, ``send --direct``, the agent) and doctor all build
their client here, so the proxy, the trust store, the client certificate,
the User-Agent and the redirect policy cannot differ between them.  The SSL
context is built only when a connection will use TLS: a plain-http endpoint
(the local receiver) starts without loading any CA bundle.
"""

from __future__ import annotations

import logging
import os
import ssl
import zlib
from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import httpx

from doow_track_agent.delivery import replies
from doow_track_agent.delivery.workers import Workers
from doow_track_agent.intake import wire
from doow_track_agent.config import ConfigError, Settings
from doow_track_agent.egress import EgressError, needs_tls, ssl_context, untrusted_hint
from doow_track_agent.redact import server_text, shown_url

_httpx_log = logging.getLogger("httpx")


def context(settings: Settings, env: Mapping[str, str] = os.environ) -> ssl.SSLContext:
    """The verifying SSL context for these settings; raises ConfigError naming a bad tls.* file."""
    try:
        return ssl_context(settings.tls, env)
    except EgressError as error:
        raise ConfigError(error.source, [error.problem]) from None


def check(settings: Settings) -> None:
    """Fail early (ConfigError) when the TLS files cannot be used; free for plain-http endpoints."""
    if needs_tls(settings.endpoint, settings.route.proxy):
        context(settings)


def transport(settings: Settings, *, limits: Optional[httpx.Limits] = None, verify: bool = True) -> httpx.HTTPTransport:
    """The httpx transport to ``settings.endpoint`` through ``settings.route`` (proxy and trust as configured).

    ``verify=False`` only serves :func:`peer_certificate`.  Raises ConfigError for unusable TLS files.
    """
    if not needs_tls(settings.endpoint, settings.route.proxy):
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # trusts nothing: no TLS is expected on this route
    elif verify:
        tls = context(settings)
    else:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        tls.check_hostname, tls.verify_mode = False, ssl.CERT_NONE
    proxy = None
    if settings.route.proxy:
        https_proxy = settings.route.proxy.startswith("https://")
        proxy = httpx.Proxy(settings.route.proxy, ssl_context=tls if https_proxy else None)
    options: Dict[str, Any] = dict(verify=tls, proxy=proxy, trust_env=False)
    if limits is not None:
        options["limits"] = limits
    return httpx.HTTPTransport(**options)


def build(settings: Settings, *, headers: Dict[str, str], limits: Optional[httpx.Limits] = None,
          timeout: Optional[float] = None, verify: bool = True,
          via: Optional[httpx.HTTPTransport] = None) -> httpx.Client:
    """An httpx client for ``settings.endpoint`` over :func:`transport` (or ``via``, one made by it);
    never follows redirects.

    ``verify=False`` only serves :func:`peer_certificate` (no headers are
    sent with it).  Raises ConfigError for unusable TLS files.
    """
    options = dict(base_url=settings.endpoint, headers=headers, trust_env=False, follow_redirects=False,
                   timeout=settings.timeout if timeout is None else timeout,
                   transport=via or transport(settings, limits=limits, verify=verify))
    return httpx.Client(**options)


class Answer(NamedTuple):
    """What came back for one request: the status, the headers and at most ``replies.MAX_REPLY_BYTES`` of the body."""

    status_code: int
    headers: httpx.Headers
    body: bytes


class Sender:
    """POSTs to one path of the endpoint over httpx's blocking transport, on worker threads awaited from
    the event loop.

    The URL, the headers (the client's defaults with ours) and the timeouts
    are taken from ``client.build_request`` at the start; each request then
    goes straight to the client's transport (``httpx.HTTPTransport``, made
    by :func:`transport`: proxy and trust as configured).  What
    ``client.send`` adds per request is left out because a batch needs none
    of it: auth flows, cookies, event hooks, and redirects, which are never
    followed anyway (a 3xx is the answer).

    Why threads (``workers``, one per connection) and not httpx's
    asynchronous transport: the blocking one never imports anyio nor runs
    httpcore's asynchronous locks, which cost 14 ms of a one-event run
    (issue 16).
    """

    def __init__(self, settings: Settings, *, headers: Dict[str, str], path: str, limits: httpx.Limits) -> None:
        self._transport = transport(settings, limits=limits)
        self.client = build(settings, headers=headers, via=self._transport)
        template = self.client.build_request("POST", path)
        self._url = template.url
        # Content-Length is each body's own; httpx.Request sets it from the content.
        self._headers = [(name, value) for name, value in template.headers.raw if name.lower() != b"content-length"]
        self._merged: Dict[Tuple[Tuple[str, str], ...], httpx.Headers] = {}  # by the headers a request adds
        self._timeout = self.client.timeout.as_dict()
        self._workers = Workers(limits.max_connections or 1, "doow-track-http")
        self._active = 0  # requests in flight
        self._retired = self._closed = False

    async def post(self, body: bytes, headers: Dict[str, str]) -> Answer:
        """Send ``body`` with ``headers`` added and read the answer (capped: see :func:`read_capped`).

        Raises what ``client.post`` raises: httpx.TransportError and its kin (no answer).
        """
        self._active += 1
        try:
            return await self._workers.run(lambda: self.exchange(body, headers))
        finally:
            self._active -= 1
            if self._retired and not self._active:
                self.close()

    def exchange(self, body: bytes, headers: Dict[str, str]) -> Answer:
        """One request and its (capped) answer, blocking; raises as :meth:`post` does."""
        added = tuple(headers.items())
        merged = self._merged.get(added)
        if merged is None:
            merged = self._merged[added] = httpx.Headers([*self._headers, *added])
        request = httpx.Request("POST", self._url, headers=merged, content=body, extensions={"timeout": self._timeout})
        response = self._transport.handle_request(request)
        try:
            # httpx's own request line (what ``--verbose``/``debug`` shows), on httpx's logger as the client logs it.
            _httpx_log.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url, response.http_version,
                            response.status_code, response.reason_phrase)
            return Answer(response.status_code, response.headers, read_capped(response))
        finally:
            response.close()

    def retire(self) -> None:
        """No new requests will come: close once the requests in flight are done (now, if none is)."""
        self._retired = True
        if not self._active:
            self.close()

    def close(self) -> None:
        """Close the connections and end the worker threads (an exchange still running ends with an error)."""
        if not self._closed:
            self._closed = True
            self._workers.close()
            self.client.close()


def read_capped(response: httpx.Response) -> bytes:
    """At most ``replies.MAX_REPLY_BYTES`` of an answer, read and decompressed: a hostile or broken server
    (a gzip bomb included) cannot make us buffer more.  httpx would inflate a whole chunk at once, so the
    raw bytes are read and inflated here with a bound on the output.
    """
    limit = replies.MAX_REPLY_BYTES
    encoding = response.headers.get("content-encoding", "").strip().lower()
    inflater = zlib.decompressobj(_WBITS[encoding]) if encoding in _WBITS else None
    out = b""
    for chunk in response.iter_raw():
        try:
            out += inflater.decompress(chunk, limit + 1 - len(out)) if inflater else chunk
        except zlib.error:
            break  # a corrupt answer: its status still counts, its text is what inflated so far
        if len(out) > limit:
            break
    return out[:limit]


# zlib window bits for the encodings we may be sent (RFC 9110 8.4.1): gzip, and zlib-wrapped deflate.
_WBITS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def default_headers(api_key: Optional[str], agent: str = wire.USER_AGENT) -> Dict[str, str]:
    headers = {"User-Agent": agent}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def peer_certificate(settings: Settings, timeout: float) -> Optional[bytes]:
    """The endpoint's certificate (DER), fetched without verifying it, through the same proxy; None if none came.

    Only the TLS handshake matters: the request carries no key and its answer is not read.
    """
    try:
        with build(settings, headers={"User-Agent": wire.USER_AGENT}, timeout=timeout,
                   verify=False) as client:
            with client.stream("GET", "/") as response:
                tls = response.extensions["network_stream"].get_extra_info("ssl_object")
                return tls.getpeercert(True) if tls else None
    except (httpx.HTTPError, OSError, KeyError):
        return None


def issuer(der: Optional[bytes]) -> Optional[str]:
    """The issuer of a DER certificate as an RFC 4514 string, when the ``cryptography`` package is installed."""
    if not der:
        return None
    try:
        from cryptography import x509
    except ImportError:
        return None
    try:
        return server_text(x509.load_der_x509_certificate(der).issuer.rfc4514_string())
    except ValueError:
        return None


def cause(error: BaseException, kind: type) -> Optional[BaseException]:
    """The exception of ``kind`` behind an httpx error (httpx chains the socket's and ssl's own), or None."""
    seen: Optional[BaseException] = error
    while seen is not None and not isinstance(seen, kind):
        seen = seen.__cause__ or seen.__context__
    return seen


def explain(error: Exception, settings: Settings, issued_by: Optional[str] = None) -> str:
    """Why no answer came, naming the proxy when the proxy failed and the trust when the certificate did.

    The proxy is shown with its password masked; server text is made safe to print.
    """
    route = settings.route
    failed = cause(error, ssl.SSLCertVerificationError)
    if isinstance(failed, ssl.SSLCertVerificationError):
        by = f" (issued by {issued_by})" if issued_by else ""
        return (f"TLS certificate of {shown_url(settings.endpoint)} not trusted: {failed.verify_message}{by}; "
                f"{untrusted_hint(settings.tls, os.environ)}")
    detail = server_text(str(error) or type(error).__name__)
    if route.password:
        detail = detail.replace(route.password, "***")
    if route.proxy and isinstance(error, httpx.ProxyError):
        return f"the proxy {route.shown} (from {route.origin}) refused: {detail}"
    if route.proxy and isinstance(error, (httpx.ConnectError, httpx.ConnectTimeout)) and not cause(error, ssl.SSLError):
        return f"cannot connect to the proxy {route.shown} (from {route.origin}): {detail}"
    return f"{type(error).__name__}: {detail}"

