"""Pipe mode and ``send --direct`` behind egress: a real tinyproxy, a private CA, mutual TLS, all on 127.0.0.1."""

from __future__ import annotations

from typing import Dict, Optional

import pytest

from doow_track_agent.receiver.server import Receiver
from tests.support.agent import free_port
from tests.support.cli import KEY, Result, lines, run
from tests.support.proxy import PASSWORD, Tinyproxy
from tests.support.tls import CA_NAME

EVENTS = lines(*({"metric": "egress", "quantity": 1, "license_id": f"lic_{n}"} for n in range(3)))


def pipe(endpoint: str, config: str, env: Optional[Dict[str, str]] = None, *extra: str) -> Result:
    """One pipe-mode run at -v; neither the key nor the proxy password may appear in its output."""
    return run(["--api-key", KEY, "--endpoint", endpoint, "--config", config, "--verbose", "--outbox", config + ".outbox",
                "--rejects", config + ".rejects", *extra],
               stdin=EVENTS, env=env, secrets=[PASSWORD])


def stored(receiver: Receiver) -> int:
    return receiver.store.summary()["events"]


@pytest.mark.parametrize("auth", [False, True], ids=["open", "basic-auth"])
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_delivers_through_the_proxy(request, receiver, https_receiver, pki, write_config, scheme, auth):
    proxy: Tinyproxy = request.getfixturevalue("auth_proxy" if auth else "proxy")
    target = https_receiver if scheme == "https" else receiver
    variable = "HTTPS_PROXY" if scheme == "https" else "http_proxy"
    config = write_config(tls={"caFile": pki.ca})
    result = pipe(target.url, config, {variable: proxy.url})
    assert result.code == 0, result.err
    assert stored(target) == 3
    port = target.url.rsplit(":", 1)[1]
    verb = "CONNECT" if scheme == "https" else "POST"
    assert f"{verb} {'http://' if verb == 'POST' else ''}127.0.0.1:{port}" in proxy.log(), proxy.log()


def test_wrong_proxy_password_names_the_proxy(auth_proxy, https_receiver, pki, write_config):
    wrong = auth_proxy.url.replace(PASSWORD, "not_the_password")
    result = pipe(https_receiver.url, write_config(tls={"caFile": pki.ca}), {"HTTPS_PROXY": wrong})
    assert result.code == 75 and stored(https_receiver) == 0
    assert f"the proxy http://egress:***@{auth_proxy.address} (from HTTPS_PROXY) refused" in result.err
    assert "not_the_password" not in result.err + result.out


def test_no_proxy_bypasses_it_and_proxy_off_ignores_the_environment(receiver, write_config):
    dead = f"http://egress:{PASSWORD}@127.0.0.1:{free_port()}"
    assert pipe(receiver.url, write_config(), {"HTTP_PROXY": dead, "NO_PROXY": "example.com,127.0.0.0/8"}).code == 0
    assert pipe(receiver.url, write_config(proxy=False), {"HTTP_PROXY": dead}).code == 0
    assert run(["send", "--direct", "--api-key", KEY, "--endpoint", receiver.url, "--proxy", "off"],
               stdin=EVENTS, env={"HTTP_PROXY": dead}).code == 0
    assert stored(receiver) == 9


def test_a_proxy_that_is_down_is_named(receiver, write_config):
    port = free_port()
    result = pipe(receiver.url, write_config(proxy=f"http://egress:{PASSWORD}@127.0.0.1:{port}"))
    assert result.code == 75
    assert f"cannot connect to the proxy http://egress:***@127.0.0.1:{port}" in result.err
    assert "from the config file" in result.err and stored(receiver) == 0


def test_the_flag_beats_the_file_which_beats_the_environment(receiver, proxy, write_config):
    dead = f"http://127.0.0.1:{free_port()}"
    config = write_config(proxy=dead)
    assert pipe(receiver.url, config, {"HTTP_PROXY": proxy.url}).code == 75
    assert pipe(receiver.url, config, {"DOOW_TRACK_PROXY": proxy.url}).code == 0
    assert pipe(receiver.url, write_config(proxy=proxy.url), {"DOOW_TRACK_PROXY": dead}, "--proxy", proxy.url).code == 0


def test_private_ca_refused_by_default_accepted_when_trusted(https_receiver, pki, write_config):
    refused = pipe(https_receiver.url, write_config())
    assert refused.code == 75 and stored(https_receiver) == 0
    assert f"issued by CN={CA_NAME}" in refused.err and "tls.caFile" in refused.err
    assert pipe(https_receiver.url, write_config(tls={"caFile": pki.ca})).code == 0
    assert pipe(https_receiver.url, write_config(), {"SSL_CERT_FILE": pki.ca}).code == 0
    assert pipe(https_receiver.url, write_config(tls={"trustStore": "system"}), {"SSL_CERT_FILE": pki.ca}).code == 0
    assert pipe(https_receiver.url, write_config(tls={"trustStore": "system", "caFile": pki.ca})).code == 0
    assert stored(https_receiver) == 12


def test_mutual_tls(mtls_receiver, pki, write_config):
    without = pipe(mtls_receiver.url, write_config(tls={"caFile": pki.ca}))
    assert without.code == 75 and stored(mtls_receiver) == 0
    client = {"caFile": pki.ca, "certFile": pki.client.cert, "keyFile": pki.client.key}
    assert pipe(mtls_receiver.url, write_config(tls=client)).code == 0
    assert stored(mtls_receiver) == 3


@pytest.mark.parametrize("key,value", [("caFile", "missing.pem"), ("certFile", "not-a-cert.pem")])
def test_unusable_tls_files_are_configuration_errors(https_receiver, write_config, tmp_path, key, value):
    (tmp_path / "not-a-cert.pem").write_text("hello\n")
    result = pipe(https_receiver.url, write_config(tls={key: str(tmp_path / value)}))
    assert result.code == 78 and f"tls.{key}" in result.err


def test_check_shows_the_route_and_the_trust(proxy, pki, write_config):
    config = write_config(proxy=proxy.url.replace("http://", f"http://egress:{PASSWORD}@"), tls={"caFile": pki.ca})
    shown = run(["check", "--config", config, "--json"], secrets=[PASSWORD]).json
    assert shown["route"] == {"proxy": f"http://egress:***@{proxy.address}", "origin": f"the config file {config}"}
    assert shown["trust"] == f"the certifi bundle + tls.caFile {pki.ca}"
    direct = run(["check", "--config", write_config()], env={"HTTPS_PROXY": proxy.url, "NO_PROXY": "*"})
    assert "route: direct (NO_PROXY entry '*' matches api.doow.co)" in direct.out
