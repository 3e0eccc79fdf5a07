"""What an ingest answer means for a batch: the response table of docs/protocol.md as code.

Kept apart from the sending loop so that every status code's meaning is in
one place and can be read (and tested) without any networking.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any, Collection, Dict, List, NamedTuple, Optional

from doow_track_agent.redact import server_text

MAX_REPLY_BYTES = 64 * 1024

ACCEPTED = "accepted"      # every event recorded
PARTIAL = "partial"        # 207: recorded, some events rejected
RETRY = "retry"            # transient: network, 408, 429, 5xx
TOO_LARGE = "too_large"    # 413: split and retry the halves
KEY = "key"                # 401/403: stop using this key
MISDIRECTED = "misdirected"  # 3xx, 404, 405: the endpoint is wrong; keep the events, fix the config
INVALID = "invalid"        # 400, 422: something in the batch is refused: split it to find what
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


def _json_object(body: bytes) -> Optional[dict]:
    try:
        parsed = json.loads(body[:MAX_REPLY_BYTES])
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def rejections_207(body: bytes) -> Dict[str, str]:
    """Parse both 207 shapes into ``{event_id: reason}``.

    ``{"rejected": 2, "rejections": [{event_id, reason}]}`` and
    ``{"accepted": [ids], "rejected": [{event_id, reason}]}``.
    """
    parsed = _json_object(body) or {}
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


def _count(value: Any) -> Optional[int]:
    """A count field: an int, or the length of a list of ids/rejections; None when absent or odd."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    return len(value) if isinstance(value, list) else None


def _unaccounted_207(body: bytes, sent: Collection[str]) -> Optional[str]:
    """Why a 207 does not say what became of the events sent, or None when it does."""
    parsed = _json_object(body)
    if parsed is None:
        return "the body is not a JSON object"
    rejections = rejections_207(body)
    unknown = [event_id for event_id in rejections if event_id not in sent]
    if unknown:
        return f"it rejects {len(unknown)} event id(s) that were not sent (e.g. {server_text(unknown[0])!r})"
    rejected = _count(parsed.get("rejected"))
    if rejected is not None and rejected != len(rejections):
        return f"it counts {rejected} rejected event(s) but gives reasons for {len(rejections)}"
    accepted = parsed.get("accepted")
    if isinstance(accepted, list) and any(not isinstance(item, str) or item not in sent for item in accepted):
        return "it accepts event ids that were not sent"
    return None


def _unaccounted_2xx(status: int, headers: Dict[str, str], body: bytes, sent: Collection[str]) -> Optional[str]:
    """Why a success answer is not the ingest API's (an HTML page, a count that does not match), or None."""
    if not body.strip():
        return None  # a bare 202 accepts the batch as a whole
    parsed = _json_object(body)
    if parsed is None:
        kind = headers.get("content-type", "").split(";")[0].strip() or "no Content-Type"
        return f"the body is not the ingest API's JSON ({kind}: {server_text(body[:80].decode('utf-8', 'replace'))!r})"
    accepted = _count(parsed.get("accepted"))
    if accepted is not None and accepted + (_count(parsed.get("rejected")) or 0) < len(sent):
        return f"it counts {accepted} accepted of {len(sent)} sent"
    return None


def classify(status: int, headers: Dict[str, str], body: bytes, sent: Collection[str] = ()) -> Reply:
    """Map an HTTP answer to what the sender must do with the batch of event ids ``sent``.

    An answer that does not account for the events sent (a 207 naming other
    ids, a 200 with an HTML page) is no delivery: it is retried, which the
    events' stable ids make safe, and its reason says what the server answered.
    """
    if 300 <= status < 400:
        location = server_text(headers.get("location", "")) or "no Location"
        return Reply(MISDIRECTED, f"HTTP {status} redirect to {location}: the endpoint is wrong (redirects are "
                                  "not followed, so the key is never sent elsewhere); fix endpoint and reload")
    if 200 <= status < 300:
        problem = _unaccounted_207(body, sent) if status == 207 else _unaccounted_2xx(status, headers, body, sent)
        if problem:
            return Reply(RETRY, f"HTTP {status} that does not account for the {len(sent)} event(s) sent: {problem}")
        if status == 207:
            return Reply(PARTIAL, "HTTP 207", rejections=rejections_207(body))
        return Reply(ACCEPTED, f"HTTP {status}")
    reason = _reason(status, body)
    if status in (401, 403):
        return Reply(KEY, reason)
    if status == 407:  # from a forward proxy, not the API: the events are fine, the proxy credentials are not
        return Reply(RETRY, f"{reason}: the proxy wants other credentials (user:password@ in the proxy URL)")
    if status in (404, 405):
        return Reply(MISDIRECTED, f"{reason}: no ingest API at this endpoint; fix endpoint and reload")
    if status == 413:
        return Reply(TOO_LARGE, reason)
    if status in (400, 422):
        return Reply(INVALID, reason)
    if status in (408, 429) or status >= 500:
        return Reply(RETRY, reason, retry_after(headers.get("retry-after")))
    return Reply(REJECTED, reason)


def unreachable(error: Exception, explained: Optional[str] = None) -> Reply:
    """A transport failure (refused, reset, timeout, untrusted certificate): always worth a retry.

    ``explained`` is the caller's account of it (naming the proxy or the trust), when it has one.
    """
    if explained:
        return Reply(RETRY, explained)
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
