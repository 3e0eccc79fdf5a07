"""The collection's module_utils must stay stdlib-only, so it carries copies of two runtime facts: keep them equal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.doow.track.plugins.module_utils import doow_cli
from doow_track_agent import egress, exits, redact

KEYS = st.one_of(st.none(), st.text(max_size=40), st.text(max_size=40).map(lambda body: f"dk_{body}"))


@given(KEYS)
def test_mask_key_is_the_runtimes(key):
    assert doow_cli.mask_key(key) == redact.mask_key(key)


def test_mask_key_examples():
    """The behaviour both copies document (the issue's example included)."""
    assert redact.mask_key("dk_abcdefg") == "dk_…"
    assert redact.mask_key("dk_live_abcdefgh1234") == "dk_…1234"
    assert redact.mask_key("") == redact.mask_key(None) == "(none)"


def test_exit_statuses_are_the_runtimes():
    copied = {name[len("EXIT_"):]: value for name, value in vars(doow_cli).items() if name.startswith("EXIT_")
              and isinstance(value, int)}
    assert copied, "doow_cli defines no EXIT_* constants"
    assert {name: getattr(exits, f"EX_{name}", None) for name in copied} == copied


URLS = st.builds(lambda scheme, user, password, host: f"{scheme}{user}{password}{host}",
                 st.sampled_from(["http://", "https://", ""]),
                 st.sampled_from(["", "egress", "a%40b"]),
                 st.one_of(st.just(""), st.text(alphabet="abc%40:!#/? @[", max_size=12).map(lambda text: f":{text}")),
                 st.sampled_from(["@proxy.example:3128", "@127.0.0.1:3128", "proxy.example:3128", "@[::1", "@"]))


@given(URLS)
def test_mask_url_is_the_runtimes(url):
    assert doow_cli.mask_url(url) == egress.mask_url(url)
