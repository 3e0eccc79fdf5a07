"""docs/protocol.md's response table, as the sender must read it."""

from __future__ import annotations

import json
from email.utils import formatdate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    (202, {"accepted": 1}, "1 accepted and 0 rejected of 2"),
    (202, {"accepted": 0, "rejected": 1}, "counts 1 rejected"),
    (202, {"accepted": -1, "rejected": 2}, "counts 2 rejected"),
    (202, {"accepted": -1}, "counts -1 accepted"),
    (207, {"rejected": 0, "rejections": [], "accepted": 0}, "0 accepted and 0 rejected of 2"),
    (200, {"accepted": 3}, "counts 3 accepted of 2"),
    (202, {"accepted": True}, "accepted is true"),
    (202, {"accepted": "2"}, 'accepted is "2"'),
    (207, {"rejected": [{"event_id": "e1"}], "accepted": ["e1", "e2"]}, "both accepts and rejects"),
    (207, {"accepted": 0, "rejected": 2, "rejections": [{"event_id": "e1"}, {"event_id": "e1"}]}, "same event id twice"),
])
def test_answers_that_do_not_account_for_the_events_are_retried(status, body, what):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    reply = replies.classify(status, {"content-type": "text/html"}, raw, ["e1", "e2"])
    assert reply.kind == replies.RETRY
    assert what in reply.reason and f"HTTP {status}" in reply.reason


def test_a_redirect_names_its_location():
    reply = replies.classify(301, {"location": "https://api.doow.co/telemetry/events"}, b"", {"e1"})
    assert reply.kind == replies.MISDIRECTED and "https://api.doow.co/telemetry/events" in reply.reason


SENT = ["e1", "e2", "e3"]
_ids = st.sampled_from([*SENT, "other", ""])
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10) | st.floats(allow_nan=True) | _ids
    | st.fixed_dictionaries({"event_id": _ids}, optional={"reason": st.text(max_size=5)}),
    lambda inner: st.lists(inner, max_size=5), max_leaves=8)
_bodies = st.dictionaries(st.sampled_from(["accepted", "rejected", "rejections", "duplicates", "batch_id"]),
                          _values, max_size=4)


@settings(max_examples=400, deadline=None)
@given(status=st.sampled_from([200, 202, 207]), body=_bodies, sent=st.integers(1, 3))
def test_a_success_is_a_delivery_of_exactly_the_events_it_accounts_for(status, body, sent):
    ids = SENT[:sent]
    reply = replies.classify(status, {}, json.dumps(body).encode(), ids)
    assert reply.kind in (replies.ACCEPTED, replies.PARTIAL, replies.RETRY)
    if reply.kind == replies.RETRY:
        assert "does not account for" in reply.reason
        return
    delivered = [event_id for event_id in ids if event_id not in reply.rejections]
    assert set(reply.rejections) <= set(ids)
    assert 0 <= reply.duplicates <= len(delivered)
    counted = {"accepted", "rejected", "rejections"} & set(body)
    if reply.kind == replies.ACCEPTED and not counted:
        assert status != 207  # a bare 2xx: the batch as a whole
        return
    accepted = body["accepted"]
    if isinstance(accepted, list):
        assert sorted(accepted) == sorted(delivered)
    else:
        assert type(accepted) is int and accepted == len(delivered)
    if type(body.get("rejected")) is int:
        assert body["rejected"] == len(reply.rejections)
