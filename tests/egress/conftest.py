"""A private CA, an https receiver signed by it, and tinyproxy: everything on 127.0.0.1, made per test run."""

from __future__ import annotations

import json
import os
from typing import Callable, Iterator

import pytest

from doow_track_agent.receiver.server import Receiver, tls_context
from tests.support.proxy import Tinyproxy
from tests.support.tls import Pki, make_pki


@pytest.fixture(scope="session")
def pki(tmp_path_factory) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def https_receiver(tmp_path, pki) -> Iterator[Receiver]:
    with Receiver(str(tmp_path / "tls.sqlite"), tls=tls_context(pki.server.cert, pki.server.key)).start() as server:
        yield server


@pytest.fixture
def mtls_receiver(tmp_path, pki) -> Iterator[Receiver]:
    context = tls_context(pki.server.cert, pki.server.key, pki.client_ca)
    with Receiver(str(tmp_path / "mtls.sqlite"), tls=context).start() as server:
        yield server


@pytest.fixture(scope="module")
def proxy() -> Iterator[Tinyproxy]:
    with Tinyproxy() as running:
        yield running


@pytest.fixture(scope="module")
def auth_proxy() -> Iterator[Tinyproxy]:
    with Tinyproxy(auth=True) as running:
        yield running


@pytest.fixture
def write_config(tmp_path) -> Callable[..., str]:
    """A pipe-mode config with fast retries (2 attempts), so a failing run ends in well under a second."""
    def write(**settings: object) -> str:
        path = os.path.join(str(tmp_path), "doow-track.json")
        base = {"retry": {"maxAttempts": 2, "initialDelay": 10, "maxDelay": 20}, "timeout": 5000}
        with open(path, "w") as handle:
            json.dump({**base, **settings}, handle)
        os.chmod(path, 0o600)
        return path
    return write
