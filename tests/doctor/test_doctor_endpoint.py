"""The endpoint checks against servers the receiver cannot imitate: a skewed clock, an untrusted certificate."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Iterator, Optional

import pytest

from tests.doctor.conftest import doctor
from tests.support.cli import KEY


class _Handler(BaseHTTPRequestHandler):
    """Answers every GET with 404, dated ``skew`` seconds off."""

    skew = 0.0

    def do_GET(self) -> None:
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def date_time_string(self, timestamp: Optional[float] = None) -> str:
        return formatdate(time.time() + self.skew, usegmt=True)

    def log_message(self, *args: object) -> None:
        pass


def _serve(skew: float, context: Optional[ssl.SSLContext] = None) -> HTTPServer:
    handler = type("Skewed", (_Handler,), {"skew": skew})
    server = HTTPServer(("127.0.0.1", 0), handler)
    if context is not None:
        server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


@pytest.fixture
def skewed_server(request) -> Iterator[HTTPServer]:
    server = _serve(request.param)
    yield server
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("skewed_server, status", [(0, "ok"), (60, "warn"), (-3600, "fail")],
                         indirect=["skewed_server"])
def test_clock_skew_from_the_date_header(skewed_server, status):
    url = f"http://127.0.0.1:{skewed_server.server_port}"
    result = doctor("--api-key", KEY, "--endpoint", url)
    assert result.status("endpoint.clock") == status, result.checks["endpoint.clock"]
    if status == "fail":
        assert "3600 s ahead of the server's" in result.checks["endpoint.clock"]["detail"]
        assert result.code == 1


def test_untrusted_certificate(tmp_path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "30", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server = _serve(0, context)
    try:
        result = doctor("--api-key", KEY, "--endpoint", f"https://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
    assert result.status("endpoint.tls") == "fail"
    assert "self-signed" in result.checks["endpoint.tls"]["detail"]
    assert result.status("endpoint.http") == "fail"  # deliveries would fail the same way
