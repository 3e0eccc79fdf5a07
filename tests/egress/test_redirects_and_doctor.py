"""The key never follows a redirect (to another origin, or from https down to http), whichever client sends it;
doctor goes through the same proxy and trust as deliveries and says which."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator, List, Optional

import pytest

from doow_track_agent.receiver.server import tls_context
from tests.support.cli import KEY, lines, run
from tests.support.proxy import PASSWORD

EVENTS = lines({"metric": "redirect", "quantity": 1, "license_id": "lic_redirect"})


class Server:
    """Answers every request with ``status`` (and a Location), recording the Authorization headers it saw."""

    def __init__(self, status: int = 200, location: Optional[str] = None, tls=None) -> None:
        seen: List[Optional[str]] = []
        self.seen = seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append(self.headers.get("Authorization"))
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                if location:
                    self.send_header("Location", location + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.httpd.socket = tls.wrap_socket(self.httpd.socket, server_side=True)
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def catcher() -> Iterator[Server]:
    server = Server()
    yield server
    server.stop()


@pytest.mark.parametrize("tls", [False, True], ids=["other-origin", "https-to-http"])
@pytest.mark.parametrize("status", [307, 308])
def test_the_key_never_follows_a_redirect(catcher, pki, write_config, tls, status):
    redirector = Server(status, catcher.url, tls_context(pki.server.cert, pki.server.key) if tls else None)
    try:
        config = write_config(tls={"caFile": pki.ca})
        common = ["--api-key", KEY, "--endpoint", redirector.url]
        outbox = ["--outbox", config + ".outbox", "--rejects", config + ".rejects"]
        # What a 3xx means for the events is issue 10's; here: nobody but the endpoint ever sees the key.
        run(["--config", config, *common, *outbox], stdin=EVENTS)
        run(["send", "--direct", "--config", config, *common, *outbox], stdin=EVENTS)
        run(["doctor", "--config", config, *common])
        assert redirector.seen.count(f"Bearer {KEY}") >= 3  # pipe mode, send --direct and doctor all asked
        assert catcher.seen == [], "a redirect carried a request to another origin"
    finally:
        redirector.stop()


def test_doctor_goes_through_the_proxy_and_names_proxy_and_trust(https_receiver, auth_proxy, pki, write_config):
    config = write_config(proxy=auth_proxy.url, tls={"caFile": pki.ca})
    report = run(["doctor", "--config", config, "--api-key", KEY, "--endpoint", https_receiver.url, "--json"],
                 secrets=[PASSWORD]).json
    checks = {check["name"]: check for check in report["checks"]}
    assert checks["endpoint.tcp"]["detail"].startswith(f"proxy http://egress:***@{auth_proxy.address}")
    assert checks["endpoint.tls"]["status"] == "ok" and f"tls.caFile {pki.ca}" in checks["endpoint.tls"]["detail"]
    assert checks["endpoint.http"]["status"] != "fail" and "via the proxy http://egress:***@" in checks["endpoint.http"]["detail"]
    assert f"CONNECT {https_receiver.url[len('https://'):]} " in auth_proxy.log()

    untrusted = run(["doctor", "--config", write_config(proxy=auth_proxy.url), "--api-key", KEY,
                     "--endpoint", https_receiver.url, "--json"], secrets=[PASSWORD]).json
    tls = {check["name"]: check for check in untrusted["checks"]}["endpoint.tls"]
    assert tls["status"] == "fail" and "issued by CN=doow-track Test Private CA" in tls["detail"]
    assert "tls.caFile" in tls["hint"]
