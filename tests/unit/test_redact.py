"""What every printed URL goes through: no userinfo, no key-shaped segment."""

from __future__ import annotations

from hypothesis import given, strategies as st

from doow_track_agent.redact import shown_url

_WORD = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=12)


@given(user=_WORD, password=_WORD, key=st.text(alphabet="ABCDEFabcdef0123456789_-", min_size=9, max_size=40))
def test_a_shown_url_holds_neither_userinfo_nor_a_key(user, password, key):
    shown = shown_url(f"https://{user}:{password}@api.example.com/ingest/dk_{key}/v1")
    assert shown.startswith("https://***@api.example.com/ingest/dk_…") and shown.endswith(f"{key[-4:]}/v1")
    assert f"dk_{key}" not in shown and f":{password}@" not in shown


def test_a_plain_url_is_shown_as_is():
    assert shown_url("http://127.0.0.1:8080/base") == "http://127.0.0.1:8080/base"
