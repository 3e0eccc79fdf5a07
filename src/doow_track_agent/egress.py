"""How the endpoint is reached: the proxy (if any) and the TLS trust, resolved from settings and environment.

Pure decisions, no sockets: ``route`` picks the proxy for an endpoint the
way curl, pip and httpx read the standard variables, ``ssl_context`` builds
the trust deliveries verify against.  ``http_client`` turns both into the one
httpx client every caller of the endpoint uses.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
import sys
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Tuple, Union
from urllib.parse import unquote, urlsplit

from doow_track_agent.intake.validation import Problem
from doow_track_agent.redact import mask_userinfo
from doow_track_agent.secure_files import require_regular

CERTIFI, SYSTEM = "certifi", "system"
# curl and urllib read the lower-case spelling first; either works.
_PROXY_VARIABLES = {"https": ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"),
                    "http": ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY")}
_NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")


class EgressError(Exception):
    """A proxy or TLS setting that cannot be used; ``source`` and ``problem`` name where and what."""

    def __init__(self, source: str, problem: Problem) -> None:
        self.source = source
        self.problem = problem
        super().__init__(f"{source}: {problem.path}: {problem.message}")


@dataclass(frozen=True)
class Tls:
    """The ``tls`` config section: the base trust store, an added CA bundle, a client certificate (paths)."""

    trust_store: str = CERTIFI
    ca_file: Optional[str] = None
    cert_file: Optional[str] = None
    key_file: Optional[str] = None


@dataclass(frozen=True)
class Route:
    """The proxy requests to the endpoint go through (None: direct) and which setting decided it."""

    proxy: Optional[str] = field(repr=False)
    origin: str

    @property
    def shown(self) -> Optional[str]:
        """The proxy URL with its password masked; None when direct."""
        return mask_url(self.proxy) if self.proxy else None

    @property
    def password(self) -> Optional[str]:
        return unquote(urlsplit(self.proxy).password or "") or None if self.proxy else None

    def describe(self) -> str:
        """``proxy http://user:***@host:3128 (from HTTPS_PROXY)`` or ``direct (NO_PROXY matches ...)``."""
        return f"proxy {self.shown} (from {self.origin})" if self.proxy else f"direct ({self.origin})"

    def as_json(self) -> Dict[str, Optional[str]]:
        return {"proxy": self.shown, "origin": self.origin}


def mask_url(url: str) -> str:
    """``http://user:secret@host:3128`` -> ``http://user:***@host:3128``, whatever else is wrong with the URL."""
    return mask_userinfo(url)


def proxy_url(text: str, source: str, name: str) -> str:
    """A proxy URL as curl reads it (``host:port`` means ``http://host:port``); raises EgressError."""
    url = text.strip() if "://" in text else f"http://{text.strip()}"
    try:
        parts = urlsplit(url)
        parts.port  # raises ValueError on a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise EgressError(source, Problem(name, f"{mask_url(url)!r} is not an http:// or https:// proxy URL "
                                                "with a host"))
    return url


def route(endpoint: str, setting: Union[str, bool], origin: str, env: Mapping[str, str]) -> Route:
    """Choose the proxy for ``endpoint``.

    ``setting`` is the resolved ``proxy`` value: a URL (from ``origin``:
    ``--proxy``, ``DOOW_TRACK_PROXY`` or the config file), ``False`` (direct,
    whatever the environment says) or ``True`` (the default: the standard
    variables HTTPS_PROXY/HTTP_PROXY/ALL_PROXY).  NO_PROXY applies to every
    proxy, as in curl.  Raises EgressError for a malformed variable.
    """
    if setting is False:
        return Route(None, f"proxy is off in {origin}")
    parts = urlsplit(endpoint)
    if setting is True:
        name, value = _proxy_variable(parts.scheme, env)
        if not value:
            return Route(None, "no proxy set: HTTPS_PROXY, HTTP_PROXY and ALL_PROXY are empty")
        url, origin = proxy_url(value, "environment", name), name
    else:
        url = proxy_url(setting, origin, "proxy")
    entry = bypass(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80), env)
    if entry is not None:
        return Route(None, f"NO_PROXY entry {entry!r} matches {parts.hostname}")
    return Route(url, origin)


def _proxy_variable(scheme: str, env: Mapping[str, str]) -> Tuple[str, Optional[str]]:
    for name in _PROXY_VARIABLES.get(scheme, ()):
        # Under CGI, HTTP_PROXY is the client's "Proxy:" header (httpoxy): never trust it there.
        if name == "HTTP_PROXY" and "REQUEST_METHOD" in env:
            continue
        if env.get(name, "").strip():
            return name, env[name]
    return "", None


def bypass(host: str, port: int, env: Mapping[str, str]) -> Optional[str]:
    """The NO_PROXY entry that sends ``host`` direct, or None.

    Entries as curl reads them: ``*``, a domain (``example.com`` and
    ``.example.com`` both match it and its subdomains), an address or CIDR
    block, each optionally with ``:port``.
    """
    listed = next((env[name] for name in _NO_PROXY_VARIABLES if env.get(name, "").strip()), "")
    host = host.lower().strip("[]").rstrip(".")
    for raw in listed.split(","):
        entry = raw.strip().lower()
        if entry and _matches(entry, host, port):
            return raw.strip()
    return None


def _matches(entry: str, host: str, port: int) -> bool:
    if entry == "*":
        return True
    name, wanted = entry, None
    if entry.count(":") == 1 or entry.startswith("["):  # host:port or [v6]:port, not a bare IPv6 address
        name, _, text = entry.rpartition(":")
        wanted = int(text) if text.isdigit() else -1
    if wanted is not None and wanted != port:
        return False
    name = name.strip("[]").rstrip(".")
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(name, strict=False)
    except ValueError:
        pass
    domain = name.lstrip(".")
    return bool(domain) and (host == domain or host.endswith("." + domain))


def needs_tls(endpoint: str, proxy: Optional[str]) -> bool:
    """Whether any connection will be TLS: an https endpoint or an https proxy."""
    return urlsplit(endpoint).scheme == "https" or (proxy or "").startswith("https://")


def base_trust(tls: Tls, env: Mapping[str, str]) -> str:
    """Which store certificates are verified against, before ``tls.caFile`` is added."""
    if env.get("SSL_CERT_FILE") or env.get("SSL_CERT_DIR"):
        named = [f"{name}={env[name]}" for name in ("SSL_CERT_FILE", "SSL_CERT_DIR") if env.get(name)]
        return " ".join(named)
    if tls.trust_store == SYSTEM:
        return "the system trust store" + (" (truststore)" if _truststore() else "")
    return "the certifi bundle"


def describe_trust(tls: Tls, env: Mapping[str, str]) -> str:
    """One line for outputs: ``the certifi bundle + tls.caFile /etc/corp-ca.pem; client certificate ...``."""
    text = base_trust(tls, env)
    if tls.ca_file:
        text += f" + tls.caFile {tls.ca_file}"
    if tls.cert_file:
        text += f"; client certificate tls.certFile {tls.cert_file}"
    return text


_contexts: Dict[tuple, ssl.SSLContext] = {}


def ssl_context(tls: Tls, env: Mapping[str, str]) -> ssl.SSLContext:
    """The verifying context for the endpoint (and an https proxy); raises EgressError naming the setting.

    Built once per distinct setting and file version (mtime, size): callers
    may ask freely, and a reload after a CA file changed reads it again.
    """
    key = (tls, env.get("SSL_CERT_FILE"), env.get("SSL_CERT_DIR"),
           tuple(_stamp(path) for path in (tls.ca_file, tls.cert_file, tls.key_file)))
    if key not in _contexts:
        _contexts.clear()
        _contexts[key] = _build_context(tls, env)
    return _contexts[key]


def _stamp(path: Optional[str]) -> Optional[Tuple[int, int]]:
    try:
        info = os.stat(path) if path else None
    except OSError:
        return None
    return (info.st_mtime_ns, info.st_size) if info else None


def _build_context(tls: Tls, env: Mapping[str, str]) -> ssl.SSLContext:
    cafile, capath = env.get("SSL_CERT_FILE") or None, env.get("SSL_CERT_DIR") or None
    truststore = _truststore() if tls.trust_store == SYSTEM and not (cafile or capath) else None
    if truststore is not None:
        context = truststore.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    elif cafile or capath or tls.trust_store == SYSTEM:
        # OpenSSL's default paths, which honour SSL_CERT_FILE and SSL_CERT_DIR.
        context = _loaded(lambda: require_regular(cafile) or ssl.create_default_context(cafile=cafile, capath=capath),
                          "environment", "SSL_CERT_FILE" if cafile else "SSL_CERT_DIR", cafile or capath or "")
    else:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    if tls.ca_file:
        _loaded(lambda: require_regular(tls.ca_file) or context.load_verify_locations(cafile=tls.ca_file), "config",
                "tls.caFile", tls.ca_file)
    if tls.cert_file:
        _loaded(lambda: require_regular(tls.cert_file, tls.key_file) or context.load_cert_chain(tls.cert_file,
                                                                                                  tls.key_file),
                "config",
                "tls.certFile/tls.keyFile", tls.cert_file)
    return context


def _loaded(step, source: str, name: str, path: str):
    try:
        return step()
    except FileNotFoundError:
        raise EgressError(source, Problem(name, f"{path}: no such file")) from None
    except PermissionError:
        raise EgressError(source, Problem(name, f"{path}: permission denied")) from None
    except (OSError, ssl.SSLError, ValueError) as error:
        raise EgressError(source, Problem(name, f"{path}: not a usable PEM file ({error})")) from None


def _truststore():
    """The ``truststore`` module on Python 3.10+ when installed, else None (OpenSSL's paths stand in)."""
    if sys.version_info < (3, 10):
        return None
    try:
        import truststore
    except ImportError:
        return None
    return truststore


def untrusted_hint(tls: Tls, env: Mapping[str, str]) -> str:
    """What to change when the endpoint's certificate is not trusted."""
    return (f"verified against {describe_trust(tls, env)}: add the issuing CA (e.g. the proxy's "
            "inspection CA) with tls.caFile or SSL_CERT_FILE, or set tls.trustStore to \"system\"")
