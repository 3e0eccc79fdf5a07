"""Doctor against the real receiver over real HTTP on 127.0.0.1, through the real ``doow-track`` process."""

from __future__ import annotations

import json
import os
from typing import Callable, Dict, Iterator, List, Optional

import pytest

from doow_track_agent.receiver.server import Receiver
from tests.support.cli import KEY, Result, run

LICENSE = "lic_known"
EVENT = {"metric": "tokens", "quantity": 3, "license_id": LICENSE}
STATUSES = {"ok", "warn", "fail", "skip"}


class Doctor:
    """One ``doow-track doctor --json`` run, with its checks by name."""

    def __init__(self, result: Result) -> None:
        self.result = result
        self.document = result.json
        self.checks: Dict[str, dict] = {check["name"]: check for check in self.document["checks"]}

    @property
    def code(self) -> int:
        return self.result.code

    def status(self, name: str) -> str:
        return self.checks[name]["status"]

    def failed(self) -> List[str]:
        return [name for name, check in self.checks.items() if check["status"] == "fail"]


def doctor(*args: str, env: Optional[Dict[str, str]] = None, secret: str = KEY) -> Doctor:
    """Run doctor with --json; the key must not appear in its output (``run`` checks)."""
    return Doctor(run(["doctor", "--json", *args], env=env, secret=secret, timeout=60))


@pytest.fixture
def receiver(tmp_path) -> Iterator[Receiver]:
    """A Doow workspace with one license that accepts one key."""
    server = Receiver(str(tmp_path / "receiver.sqlite3"), licenses=[LICENSE], keys=[KEY]).start()
    yield server
    server.stop()


@pytest.fixture
def write_config(tmp_path) -> Callable[..., str]:
    def write(settings: dict, mode: int = 0o600, name: str = "doow-track.json") -> str:
        path = str(tmp_path / name)
        with open(path, "w") as handle:
            json.dump(settings, handle)
        os.chmod(path, mode)
        return path

    return write


@pytest.fixture
def pipe_config(receiver: Receiver, write_config: Callable[..., str]) -> str:
    """The seed's config file: key, endpoint, batching, attribution; no agent sections."""
    return write_config({"apiKey": KEY, "endpoint": receiver.url, "flushAt": 20, "flushInterval": 10000,
                         "attribution": {"env": "test"}})
