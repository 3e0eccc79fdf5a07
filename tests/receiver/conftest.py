"""Fixtures for the receiver tests: a real receiver on 127.0.0.1, real HTTP, real SQLite."""

from __future__ import annotations

import gzip
import json
from typing import Any, Callable, Iterator

import httpx
import pytest

from doow_track_agent.receiver.server import Receiver
from tests.receiver.wire import KEY

@pytest.fixture
def db_path(tmp_path) -> str:
    return str(tmp_path / "receiver.sqlite")


@pytest.fixture
def receiver(db_path: str) -> Iterator[Receiver]:
    with Receiver(db_path) as server:
        yield server


@pytest.fixture
def client(receiver: Receiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=receiver.url, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as http:
        yield http


@pytest.fixture
def post(client: httpx.Client) -> Callable[..., httpx.Response]:
    """POST a batch (a dict, or raw bytes) to the ingest endpoint, gzipped on request."""

    def send(payload: Any, gzipped: bool = False, **kwargs: Any) -> httpx.Response:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Content-Type": "application/json", **kwargs.pop("headers", {})}
        if gzipped:
            body = gzip.compress(body)
            headers["Content-Encoding"] = "gzip"
        return client.post("/telemetry/events", content=body, headers=headers, **kwargs)

    return send
