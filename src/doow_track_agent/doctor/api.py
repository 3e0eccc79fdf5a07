"""The one HTTP client doctor talks to the endpoint with, configured as the delivery engine's is.

It sends the same User-Agent, trusts the same certificates (certifi, no
environment proxies or CA overrides: ``trust_env=False``, as in
``delivery.new_client``), so an answer here predicts what deliveries get.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Optional
from urllib.parse import quote

import httpx

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

    def __init__(self, endpoint: str, key: Optional[str], timeout: float) -> None:
        headers = {"User-Agent": f"{wire.USER_AGENT} (doctor)"}
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=endpoint, headers=headers, timeout=timeout, trust_env=False)
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
