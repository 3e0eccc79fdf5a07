"""GET /sdk/licenses/{id}: the management API's check that a license_id is real."""

from __future__ import annotations

import httpx

from doow_track_agent.receiver.server import Receiver
from tests.receiver.wire import KEY

AUTH = {"Authorization": f"Bearer {KEY}"}


def test_every_license_exists_without_a_license_list(receiver):
    response = httpx.get(f"{receiver.url}/sdk/licenses/lic_anything", headers=AUTH)
    assert response.status_code == 200
    assert response.json() == {"id": "lic_anything", "name": "lic_anything", "license_type": "USAGE_BASED"}


def test_with_a_license_list_only_those_exist(db_path):
    with Receiver(db_path, licenses=["lic_a", "lic_b"]) as receiver:
        found = httpx.get(f"{receiver.url}/sdk/licenses/lic_b", headers=AUTH)
        missing = httpx.get(f"{receiver.url}/sdk/licenses/lic_c", headers=AUTH)
    assert (found.status_code, found.json()["id"]) == (200, "lic_b")
    assert (missing.status_code, missing.json()["error"]) == (404, "not_found")


def test_the_license_check_needs_a_key(receiver):
    assert httpx.get(f"{receiver.url}/sdk/licenses/lic_a").status_code == 401
    assert httpx.get(f"{receiver.url}/sdk/licenses/lic_a", headers={"Authorization": "Bearer nope"}).status_code == 401


def test_license_lookups_are_not_counted_as_ingest_requests(receiver):
    httpx.get(f"{receiver.url}/sdk/licenses/lic_a", headers=AUTH)
    assert receiver.stats()["requests_total"] == 0
