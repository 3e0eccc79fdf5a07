"""docs/protocol.md's response table, as the sender must read it."""

from __future__ import annotations

import json
from email.utils import formatdate

import pytest

from doow_track_agent.delivery import replies


@pytest.mark.parametrize("status,kind", [
    (202, replies.ACCEPTED), (200, replies.ACCEPTED), (400, replies.INVALID), (422, replies.INVALID),
    (404, replies.MISDIRECTED), (301, replies.MISDIRECTED), (307, replies.MISDIRECTED), (410, replies.REJECTED),
    (401, replies.KEY), (403, replies.KEY), (408, replies.RETRY), (413, replies.TOO_LARGE),
    (429, replies.RETRY), (500, replies.RETRY), (503, replies.RETRY),
])
def test_status_classes(status, kind):
    assert replies.classify(status, {}, b"").kind == kind


def test_207_both_body_shapes():
    counted = {"batch_id": "b", "accepted": 1, "rejected": 1, "rejections": [{"event_id": "e2", "reason": "bad license"}]}
    listed = {"accepted": ["e1"], "rejected": [{"event_id": "e2", "reason": "bad license"}]}
    for body in (counted, listed):
        reply = replies.classify(207, {}, json.dumps(body).encode(), {"e1", "e2"})
        assert reply.kind == replies.PARTIAL
        assert reply.rejections == {"e2": "bad license"}


def test_retry_after_seconds_and_http_date():
    assert replies.classify(429, {"retry-after": "3"}, b"").retry_after == 3.0
    date = formatdate(1_000_010, usegmt=True)
    assert replies.retry_after(date, now=1_000_000) == pytest.approx(10, abs=1)
    assert replies.retry_after("garbage") is None
    assert replies.retry_after("999999") == 999999  # bounded by the sender: retry.maxRetryAfter, the budget


def test_server_text_is_sanitised_and_capped():
    hostile = ("\u202eevil\x1b[31m" + "x" * 5000).encode()
    reason = replies.classify(400, {}, hostile).reason
    assert "\u202e" not in reason and "\x1b" not in reason
    assert len(reason) < 400


@pytest.mark.parametrize("status,body,what", [
    (207, {"accepted": 0, "rejected": 1, "rejections": [{"event_id": "other", "reason": "x"}]}, "not sent"),
    (207, b"<html>oops</html>", "not a JSON object"),
    (207, {"accepted": 0, "rejected": 2}, "counts 2 rejected"),
    (200, b"<html><body>Welcome to nginx</body></html>", "text/html"),
    (202, {"accepted": 1}, "1 accepted of 2"),
])
def test_answers_that_do_not_account_for_the_events_are_retried(status, body, what):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = replies.classify(status, {"content-type": "text/html"}, raw, {"e1", "e2"})
    assert reply.kind == replies.RETRY
    assert what in reply.reason and f"HTTP {status}" in reply.reason


def test_a_redirect_names_its_location():
    reply = replies.classify(301, {"location": "https://api.doow.co/telemetry/events"}, b"", {"e1"})
    assert reply.kind == replies.MISDIRECTED and "https://api.doow.co/telemetry/events" in reply.reason
