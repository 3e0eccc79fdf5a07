"""What an ingest answer means for a batch: the response table of docs/protocol.md as code.

Kept apart from the sending loop so that every status code's meaning is in
one place and can be read (and tested) without any networking.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Dict, List, NamedTuple, Optional

from doow_track_agent.redact import server_text

MAX_REPLY_BYTES = 64 * 1024

ACCEPTED = "accepted"      # every event recorded
PARTIAL = "partial"        # 207: recorded, some events rejected
RETRY = "retry"            # transient: network, 408, 429, 5xx
TOO_LARGE = "too_large"    # 413: split and retry the halves
KEY = "key"                # 401/403: stop using this key
REJECTED = "rejected"      # other 4xx: the batch is refused for good


class Reply(NamedTuple):
    """A classified answer; ``rejections`` maps event_id to reason (207 only)."""

    kind: str
    reason: str
    retry_after: Optional[float] = None
    rejections: Dict[str, str] = {}


def retry_after(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """Seconds to wait from a ``Retry-After`` header (seconds or an HTTP date), as the server asks.

    Uncapped here: the sender bounds it (``retry.maxRetryAfter``, and in
    pipe mode the batch's retry budget).
    """
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - (now or time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    if seconds != seconds:  # NaN
        return None
    return max(seconds, 0.0)


def _reason(status: int, body: bytes) -> str:
    text = body[:MAX_REPLY_BYTES].decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            text = str(parsed.get("error") or parsed.get("message") or parsed.get("reason") or text)
    except ValueError:
        pass
    return f"HTTP {status}: {server_text(text)}" if text.strip() else f"HTTP {status}"


def rejections_207(body: bytes) -> Dict[str, str]:
    """Parse both 207 shapes into ``{event_id: reason}``.

    ``{"rejected": 2, "rejections": [{event_id, reason}]}`` and
    ``{"accepted": [ids], "rejected": [{event_id, reason}]}``.
    """
    try:
        parsed = json.loads(body[:MAX_REPLY_BYTES])
    except ValueError:
        return {}
    if not isinstance(parsed, dict):
        return {}
    items = parsed.get("rejections")
    if not isinstance(items, list):
        items = parsed.get("rejected")
    if not isinstance(items, list):
        return {}
    found: Dict[str, str] = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("event_id"), str):
            found[item["event_id"]] = server_text(str(item.get("reason") or "rejected"))
        elif isinstance(item, str):
            found[item] = "rejected"
    return found


def classify(status: int, headers: Dict[str, str], body: bytes) -> Reply:
    """Map an HTTP answer to what the sender must do with the batch."""
    if status == 207:
        return Reply(PARTIAL, "HTTP 207", rejections=rejections_207(body))
    if 200 <= status < 300:
        return Reply(ACCEPTED, f"HTTP {status}")
    reason = _reason(status, body)
    if status in (401, 403):
        return Reply(KEY, reason)
    if status == 413:
        return Reply(TOO_LARGE, reason)
    if status in (408, 429) or status >= 500:
        return Reply(RETRY, reason, retry_after(headers.get("retry-after")))
    return Reply(REJECTED, reason)


def unreachable(error: Exception) -> Reply:
    """A transport failure (refused, reset, timeout): always worth a retry."""
    name = type(error).__name__
    detail = server_text(str(error)) if str(error) else name
    return Reply(RETRY, f"{name}: {detail}" if detail != name else name)


def split(events: List, rejections: Dict[str, str]) -> tuple:
    """Split ``Queued`` events of a 207 into (accepted, [(event, reason)])."""
    accepted, rejected = [], []
    for event in events:
        reason = rejections.get(event.event_id)
        if reason is None:
            accepted.append(event)
        else:
            rejected.append((event, reason))
    return accepted, rejected
