"""The one HTTP client doctor talks to the endpoint with, built as the delivery engine's is.

``http_client.build`` makes both: the same proxy, trust store, client
certificate and redirect policy, so an answer here predicts what deliveries get.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

import httpx

from doow_track_agent.config import Settings
from doow_track_agent.delivery import http_client
from doow_track_agent.intake import wire

# A license id no workspace has: the read is authenticated, so 404 proves the key, 401 refutes it.
PROBE_LICENSE = "lic_doow_track_doctor_probe"
MAX_BODY_BYTES = 64 * 1024


@dataclass(frozen=True)
class Answer:
    """What one ``GET /sdk/licenses/{id}`` returned; only the status and headers matter."""

    status: int
    seconds: float
    midpoint: float
    date: Optional[str]
    location: Optional[str]


class Api:
    """Authenticated reads of the management API over one keep-alive connection."""

    def __init__(self, settings: Settings, timeout: float) -> None:
        """Raises ConfigError when a tls.* file cannot be used."""
        headers = http_client.default_headers(settings.api_key, f"{wire.USER_AGENT} (doctor)")
        client = http_client.build(settings, headers=headers, timeout=timeout)
        assert isinstance(client, httpx.Client)
        self._client = client
        self.probe: Optional[Answer] = None  # the endpoint's first answer, kept by the endpoint checks

    def license(self, license_id: str) -> Answer:
        """Raises ``httpx.HTTPError`` when no HTTP answer comes."""
        sent, started = time.time(), time.perf_counter()
        with self._client.stream("GET", f"/sdk/licenses/{quote(license_id, safe='')}") as response:
            seconds = time.perf_counter() - started
            _drain(response)
            return Answer(response.status_code, seconds, sent + seconds / 2, response.headers.get("Date"),
                          response.headers.get("Location"))

    def close(self) -> None:
        self._client.close()


def _drain(response: httpx.Response) -> None:
    """Read (at most 64 KiB of) the body, so that the connection is reused rather than reset."""
    received = 0
    for chunk in response.iter_raw():
        received += len(chunk)
        if received > MAX_BODY_BYTES:
            break
