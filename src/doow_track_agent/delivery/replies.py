"""What an ingest answer means for a batch: the response table of docs/protocol.md as code.

Kept apart from the sending loop so that every status code's meaning is in
one place and can be read (and tested) without any networking.
"""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime
from typing import Any, Collection, Dict, List, Mapping, NamedTuple, Optional, Union

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
    """A classified answer; ``rejections`` maps event_id to reason (207 only); ``duplicates`` counts the
    accepted events the server already had (its own figure, 0 when it gives none)."""

    kind: str
    reason: str
    retry_after: Optional[float] = None
    rejections: Dict[str, str] = {}
    duplicates: int = 0


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
    """Parse both 207 shapes into ``{event_id: reason}`` (items without an event id are skipped).

    ``{"rejected": 2, "rejections": [{event_id, reason}]}`` and
    ``{"accepted": [ids], "rejected": [{event_id, reason}]}``.
    """
    return _rejections(_json_object(body) or {})


def _rejections(parsed: dict) -> Dict[str, str]:
    items = _rejection_items(parsed)
    found: Dict[str, str] = {}
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and isinstance(item.get("event_id"), str):
            found[item["event_id"]] = server_text(str(item.get("reason") or "rejected"))
        elif isinstance(item, str):
            found[item] = "rejected"
    return found


def _rejection_items(parsed: dict) -> Any:
    """The list of rejections: ``rejections``, else a ``rejected`` that is a list; None when there is none."""
    if "rejections" in parsed:
        return parsed["rejections"]
    rejected = parsed.get("rejected")
    return rejected if isinstance(rejected, list) else None


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _accepted_count(value: Any, sent: Collection[str]) -> Union[int, str]:
    """``accepted`` as a number of events (of the ids ``sent``), or why it cannot be one."""
    if _is_count(value):
        return value if 0 <= value <= len(sent) else f"it counts {value} accepted of {len(sent)} sent"
    if isinstance(value, list):
        known = set(sent)
        if any(not isinstance(item, str) or item not in known for item in value):
            return "it accepts event ids that were not sent"
        if len(set(value)) != len(value):
            return "it accepts the same event id twice"
        return len(value)
    return f"its accepted is {_spelled(value)}, not a count or a list of event ids"


def _spelled(value: Any) -> str:
    return server_text(json.dumps(value))[:40] if value is not None else "missing"


def _unaccounted(status: int, headers: Mapping[str, str], body: bytes, parsed: Optional[dict],
                 sent: Collection[str]) -> Optional[str]:
    """Why a success answer does not say what became of each event sent, or None when it does.

    It does when accepted (a count in [0, sent] or a list of sent ids) plus
    the rejections, each naming a sent event id, is exactly the number sent,
    and a ``rejected`` count matches the reasons given.  A non-207 2xx whose
    body is empty or names none of ``accepted``/``rejected``/``rejections``
    accepts the batch as a whole (docs/protocol.md: 202 "batch accepted").
    """
    if not body.strip() and status != 207:
        return None
    if parsed is None:
        if status == 207:
            return "the body is not a JSON object"
        kind = headers.get("content-type", "").split(";")[0].strip() or "no Content-Type"
        return f"the body is not the ingest API's JSON ({kind}: {server_text(body[:80].decode('utf-8', 'replace'))!r})"
    if status != 207 and not {"accepted", "rejected", "rejections"} & set(parsed):
        return None
    items = _rejection_items(parsed)
    if items is not None and not isinstance(items, list):
        return f"its rejections are {_spelled(items)}, not a list"
    for item in items or ():
        if not (isinstance(item, str) or isinstance(item, dict) and isinstance(item.get("event_id"), str)):
            return f"it rejects {_spelled(item)}, which names no event id"
    rejections = _rejections(parsed)
    known = set(sent) if rejections else ()
    unknown = [event_id for event_id in rejections if event_id not in known]
    if unknown:
        return f"it rejects {len(unknown)} event id(s) that were not sent (e.g. {server_text(unknown[0])!r})"
    if len(rejections) != len(items or ()):
        return "it rejects the same event id twice"
    rejected = parsed.get("rejected")
    if "rejected" in parsed and not isinstance(rejected, list) and (not _is_count(rejected)
                                                                    or rejected != len(rejections)):
        return f"it counts {_spelled(rejected)} rejected event(s) but gives reasons for {len(rejections)}"
    accepted = _accepted_count(parsed.get("accepted"), sent)
    if isinstance(accepted, str):
        return accepted
    if isinstance(parsed.get("accepted"), list) and set(parsed["accepted"]) & set(rejections):
        return "it both accepts and rejects the same event id"
    if accepted + len(rejections) != len(sent):
        return f"it counts {accepted} accepted and {len(rejections)} rejected of {len(sent)} sent"
    return None


def duplicates(parsed: dict, accepted: int) -> int:
    """The server's ``duplicates`` count (accepted events it already had, so not counted again), if it gives one.

    ``parsed`` is the answer's JSON object.  The local receiver answers it
    (``receiver/server.py``); anything but a count in [0, accepted] is
    ignored, as a figure for the user, never an outcome.
    """
    value = parsed.get("duplicates")
    return value if _is_count(value) and 0 <= value <= accepted else 0


def classify(status: int, headers: Mapping[str, str], body: bytes, sent: Collection[str] = ()) -> Reply:
    """Map an HTTP answer to what the sender must do with the batch of event ids ``sent``.

    ``sent`` holds one id per event of the batch.  An answer that does not
    account for each of them (a 207 naming other ids, counts that do not add
    up to the number sent, a 200 with an HTML page: see ``_unaccounted``) is
    no delivery: it is retried, which the events' stable ids make safe, and
    its reason says what the server answered.
    """
    if 300 <= status < 400:
        location = server_text(headers.get("location", "")) or "no Location"
        return Reply(MISDIRECTED, f"HTTP {status} redirect to {location}: the endpoint is wrong (redirects are "
                                  "not followed, so the key is never sent elsewhere); fix endpoint and reload")
    if 200 <= status < 300:
        parsed = _json_object(body)  # once: an answer for 500 events is read per batch, never per event
        problem = _unaccounted(status, headers, body, parsed, sent)
        if problem:
            return Reply(RETRY, f"HTTP {status} that does not account for the {len(sent)} event(s) sent: {problem}")
        rejections = _rejections(parsed or {})
        twice = duplicates(parsed or {}, len(sent) - len(rejections))
        if status == 207 or rejections:
            return Reply(PARTIAL, f"HTTP {status}", rejections=rejections, duplicates=twice)
        return Reply(ACCEPTED, f"HTTP {status}", duplicates=twice)
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
