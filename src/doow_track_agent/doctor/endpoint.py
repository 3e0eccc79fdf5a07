"""Endpoint checks, in the order a request needs them: DNS, TCP, TLS, HTTP, round trip, clock.

Each step that fails skips the steps after it, so that one cause (a typo in
the host name) is reported once and not as six failures.  Every network step
has its own short timeout, so doctor answers in seconds even when packets
are silently dropped.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import socket
import ssl
import threading
import time
from email.utils import parsedate_to_datetime
from typing import Any, Callable, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import httpx

from doow_track_agent.delivery import http_client
from doow_track_agent.intake import wire
from doow_track_agent.config import Listen, Settings
from doow_track_agent.egress import describe_trust, untrusted_hint
from doow_track_agent.doctor.api import PROBE_LICENSE, Answer, Api
from doow_track_agent.doctor.config import NO_SETTINGS
from doow_track_agent.doctor.report import FAIL, OK, SKIP, WARN, Check, skipped
from doow_track_agent.doctor.subject import Subject
from doow_track_agent.redact import server_text

NAMES = ("endpoint.dns", "endpoint.tcp", "endpoint.tls", "endpoint.http", "endpoint.latency", "endpoint.clock")
CERT_WARN_DAYS = 14
SLOW_SECONDS = 1.0
# A Date header has one-second resolution: less than that is no evidence of skew.
SKEW_OK_SECONDS, SKEW_FAIL_SECONDS = 5.0, 300.0

Address = Tuple[int, Any]  # (address family, sockaddr)


def checks(subject: Subject, api: Optional[Api]) -> Iterator[Check]:
    if subject.settings is None or api is None:
        yield from skipped(NAMES, NO_SETTINGS)
        return
    settings = subject.settings
    url = urlsplit(settings.endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    # Through a proxy, this host resolves and connects to the proxy only; the proxy reaches the endpoint.
    first_hop = urlsplit(settings.route.proxy) if settings.route.proxy else url
    hop_host = first_hop.hostname or ""
    hop_port = first_hop.port or (443 if first_hop.scheme == "https" else 80)
    hint = _route_hint(settings)
    addresses, check = _resolve(hop_host, hop_port, subject.timeout)
    yield _via(check, settings)
    if not addresses:
        yield from skipped(NAMES[1:], "the host name does not resolve (see endpoint.dns)")
        return
    check = _connect(addresses, subject.timeout, hint)
    yield _via(check, settings)
    if check.status == FAIL:
        yield from skipped(NAMES[2:], "no TCP connection (see endpoint.tcp)")
        return
    yield _tls(settings, subject.timeout) if url.scheme == "https" else _plain(host, port)
    api.probe, check = _http(api, settings)
    yield check
    if api.probe is None:
        yield from skipped(NAMES[4:], "no HTTP answer (see endpoint.http)")
        return
    yield _latency(api.probe, subject.settings.timeout)
    yield _clock(api.probe)


def _bounded(work: Callable[[], Any], timeout: float) -> Any:
    """Run a call that has no timeout of its own (getaddrinfo) with one; raises what it raised."""
    results: "queue.Queue[Tuple[bool, Any]]" = queue.Queue()

    def target() -> None:
        try:
            results.put((True, work()))
        except Exception as error:  # handed to the caller's thread, re-raised there
            results.put((False, error))

    threading.Thread(target=target, daemon=True).start()
    try:
        done, value = results.get(timeout=timeout)
    except queue.Empty:
        raise TimeoutError(f"no answer within {timeout:g} s") from None
    if not done:
        raise value
    return value


def _resolve(host: str, port: int, timeout: float) -> Tuple[List[Address], Check]:
    started = time.perf_counter()
    try:
        found = _bounded(lambda: socket.getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout)
    except (OSError, TimeoutError) as error:
        return [], Check("endpoint.dns", FAIL, f"{host}: {getattr(error, 'strerror', None) or error}",
                         "check the endpoint's spelling and this host's resolver (/etc/resolv.conf)")
    addresses = list(dict.fromkeys((family, sockaddr) for family, _, _, _, sockaddr in found))
    shown = ", ".join(sockaddr[0] for _, sockaddr in addresses)
    if shown == host:
        return addresses, Check("endpoint.dns", OK, f"{host} is an address: nothing to resolve")
    return addresses, Check("endpoint.dns", OK, f"{host} -> {shown} ({_ms(time.perf_counter() - started)})")


def _route_hint(settings: Settings) -> str:
    if settings.route.proxy:
        return (f"deliveries go through the proxy {settings.route.shown} (from {settings.route.origin}): "
                "is it running and does it allow this host?")
    return (f"deliveries connect directly ({settings.route.origin}): is a firewall in the way, the endpoint "
            "wrong, or is a proxy needed (proxy, HTTPS_PROXY)?")


def _via(check: Check, settings: Settings) -> Check:
    """Name the proxy in a DNS or TCP check's detail: those steps reached it, not the endpoint."""
    if not settings.route.proxy:
        return check
    return dataclasses.replace(check, detail=f"proxy {settings.route.shown} (from {settings.route.origin}): {check.detail}")


def _connect(addresses: List[Address], timeout: float, hint: str) -> Check:
    """Try each address in turn, as a client does; report the first that connects."""
    failures = []
    for family, sockaddr in addresses:
        started = time.perf_counter()
        try:
            with socket.socket(family, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout)
                probe.connect(sockaddr)
        except OSError as error:
            failures.append(f"{_where(sockaddr)}: {error.strerror or error}")
            continue
        return Check("endpoint.tcp", OK, f"connected to {_where(sockaddr)} in {_ms(time.perf_counter() - started)}")
    return Check("endpoint.tcp", FAIL, "; ".join(failures), hint)


def _tls(settings: Settings, timeout: float) -> Check:
    """Handshake the way deliveries do (same proxy, trust store, client certificate), then read the expiry."""
    trust = f"verified against {describe_trust(settings.tls, os.environ)}"
    try:
        with http_client.build(settings, headers={"User-Agent": wire.USER_AGENT},
                               timeout=timeout) as client, client.stream("GET", "/") as response:
            tls = response.extensions["network_stream"].get_extra_info("ssl_object")
            certificate, version = tls.getpeercert() or {}, tls.version()
    except httpx.HTTPError as error:
        if http_client.cause(error, ssl.SSLCertVerificationError) is not None:
            issued_by = http_client.issuer(http_client.peer_certificate(settings, timeout))
            return Check("endpoint.tls", FAIL, http_client.explain(error, settings, issued_by),
                         untrusted_hint(settings.tls, os.environ))
        return Check("endpoint.tls", FAIL, f"TLS handshake failed: {http_client.explain(error, settings)}",
                     "a client certificate may be required (tls.certFile, tls.keyFile)"
                     if http_client.cause(error, ssl.SSLError) else _route_hint(settings))
    expires = ssl.cert_time_to_seconds(certificate["notAfter"])
    days = (expires - time.time()) / 86400
    detail = (f"{version}, certificate valid until {time.strftime('%Y-%m-%d', time.gmtime(expires))} "
              f"({days:.0f} days), {trust}")
    if days < CERT_WARN_DAYS:
        return Check("endpoint.tls", WARN, detail, "the certificate expires soon: tell the endpoint's operator")
    return Check("endpoint.tls", OK, detail)


def _plain(host: str, port: int) -> Check:
    if Listen(host, port).is_loopback:
        return Check("endpoint.tls", SKIP, "plain HTTP on loopback (a local receiver): no certificate")
    return Check("endpoint.tls", WARN, "plain HTTP: the key and events cross the network unencrypted",
                 "use https:// (Doow's API is https://api.doow.co)")


def _http(api: Api, settings: Settings) -> Tuple[Optional[Answer], Check]:
    route = settings.route
    via = f"via the proxy {route.shown} (from {route.origin})" if route.proxy else f"directly ({route.origin})"
    asked = f"GET /sdk/licenses/{PROBE_LICENSE} {via}"
    try:
        answer = api.license(PROBE_LICENSE)
    except httpx.TimeoutException:
        return None, Check("endpoint.http", FAIL, f"{asked}: no answer in time", _route_hint(settings))
    except httpx.HTTPError as error:
        return None, Check("endpoint.http", FAIL, f"{asked}: {http_client.explain(error, settings)}",
                           _route_hint(settings))
    detail = f"{asked}: HTTP {answer.status}"
    if 300 <= answer.status < 400:
        return answer, Check("endpoint.http", WARN, f"{detail}, redirected to {server_text(answer.location or '?')}",
                             "set endpoint to the final URL: deliveries do not follow redirects")
    if answer.status >= 500:
        return answer, Check("endpoint.http", WARN, f"{detail}: the API has trouble right now",
                             "deliveries are retried with backoff; the agent keeps events in its spool meanwhile")
    return answer, Check("endpoint.http", OK, detail)


def _latency(answer: Answer, request_timeout: float) -> Check:
    detail = f"round trip {_ms(answer.seconds)} (request timeout {request_timeout:g} s)"
    if answer.seconds > min(SLOW_SECONDS, request_timeout / 2):
        return Check("endpoint.latency", WARN, detail,
                     "a slow path to the API: check proxies and VPNs, or raise timeout in the config")
    return Check("endpoint.latency", OK, detail)


def _clock(answer: Answer) -> Check:
    """Events are stamped with this host's clock; Doow books usage at ``occurred_at``."""
    if not answer.date:
        return Check("endpoint.clock", SKIP, "the endpoint sent no Date header")
    try:
        server = parsedate_to_datetime(answer.date).timestamp() + 0.5  # the header truncates to the second
    except (TypeError, ValueError):
        return Check("endpoint.clock", SKIP, f"unreadable Date header {server_text(answer.date)!r}")
    skew = answer.midpoint - server
    if abs(skew) < 1.5:
        return Check("endpoint.clock", OK, "this host's clock is within a second of the server's")
    detail = f"this host's clock is {abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the server's"
    if abs(skew) <= SKEW_OK_SECONDS:
        return Check("endpoint.clock", OK, detail)
    hint = "events carry this host's time: sync the clock (chronyd, systemd-timesyncd)"
    return Check("endpoint.clock", FAIL if abs(skew) > SKEW_FAIL_SECONDS else WARN, detail, hint)


def _where(sockaddr: Any) -> str:
    host, port = sockaddr[0], sockaddr[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"
