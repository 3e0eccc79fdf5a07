"""Wire-format builders shared by the receiver tests."""

from __future__ import annotations

import uuid
from typing import Any, Dict, List, Optional

KEY = "dk_receiver_tests"


def make_event(**overrides: Any) -> Dict[str, Any]:
    """A wire event shaped exactly as the official Python SDK builds it."""
    event: Dict[str, Any] = {
        "event_id": str(uuid.uuid4()),
        "license_id": "lic_abc123",
        "occurred_at": "2026-11-24T10:00:00.123456Z",
        "source_system": "sdk",
        "kind": "USAGE",
        "attribution": {"model": "gpt-4o", "env": "prod"},
        "metadata": None,
        "measurements": [{"metric_name": "tokens", "quantity": 512.0}],
        "unit": "tokens",
    }
    event.update(overrides)
    return event


def make_batch(events: List[Any], batch_id: Optional[str] = None) -> Dict[str, Any]:
    return {"batch_id": batch_id or str(uuid.uuid4()), "sdk_version": "0.1.2", "events": events}
