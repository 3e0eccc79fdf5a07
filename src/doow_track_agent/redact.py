"""Keeping secrets and hostile server text out of everything we print."""

from __future__ import annotations

import logging
import re
from typing import Optional

_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)
MAX_SERVER_TEXT = 300
_KEY = re.compile(r"dk_[A-Za-z0-9_-]+")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
# In free text: a scheme, a user, a colon, then everything up to the last "@" of the same word.
_CREDENTIALS = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^\s'\"/:@]*:)[^\s'\"]*@")


def mask_key(key: Optional[str]) -> str:
    """Show a key as ``dk_…abcd``: enough to tell keys apart, never enough to use one.

    The ``dk_`` prefix stays when the key has it; the last 4 characters show
    only when more than 8 follow the prefix (``dk_abcdefg`` -> ``dk_…``,
    ``dk_live_abcdefgh1234`` -> ``dk_…1234``); no key reads ``(none)``.  The
    collection's ``module_utils/doow_cli.py`` has a stdlib-only copy that
    ``tests/unit/test_collection_in_step.py`` keeps identical in behaviour.
    """
    if not key:
        return "(none)"
    prefix = "dk_" if key.startswith("dk_") else ""
    return f"{prefix}…{key[-4:]}" if len(key) > len(prefix) + 8 else f"{prefix}…"


def server_text(text: str, limit: int = MAX_SERVER_TEXT) -> str:
    """Make server-supplied text safe to log: no control or bidi characters, capped length."""
    clean = _UNSAFE.sub("?", text.replace("\n", " ").replace("\r", " ").replace("\t", " "))
    return clean if len(clean) <= limit else clean[:limit] + "…"


def scrub(text: str, key: Optional[str]) -> str:
    """Replace every occurrence of the key in ``text`` by its masked form."""
    return text.replace(key, mask_key(key)) if key else text


def scrub_keys(text: str) -> str:
    """Mask every key-shaped token in ``text``: for text that may quote input nobody checked for keys."""
    return _KEY.sub(lambda match: mask_key(match.group(0)), text)


def shown_url(url: str) -> str:
    """A URL fit to print: userinfo (``user:password@``) shown as ``***@``, key-shaped segments masked."""
    return scrub_keys(mask_userinfo(url, keep_user=False))


def mask_userinfo(url: str, keep_user: bool = True) -> str:
    """``http://user:secret@host:3128`` -> ``http://user:***@host:3128`` (``http://***@host:3128`` without
    ``keep_user``); a user without a password stays when ``keep_user``.

    Made for values a user typed, valid or not, and never raises: the scheme may be missing
    (``user:pw@host:3128``, as curl reads a proxy) and the password may hold ``#``, ``/``, ``?``, ``@``
    or blanks, so the userinfo runs to the *last* ``@`` (a URL with an ``@`` in its path loses a little
    more than needed, never a secret).  The collection's ``module_utils/doow_cli.py`` has a stdlib-only
    copy that ``tests/unit/test_collection_in_step.py`` keeps identical in behaviour.
    """
    match = _SCHEME.match(url)
    start = match.end() if match else 0
    userinfo, at, host = url[start:].rpartition("@")
    if not at:
        return url
    user, colon, _ = userinfo.partition(":")
    if not keep_user:
        userinfo = "***"
    elif colon:
        userinfo = f"{user}:***"
    return f"{url[:start]}{userinfo}@{host}"


def scrub_credentials(text: str) -> str:
    """Mask ``scheme://user:password@`` wherever it appears in ``text`` (``scheme://user:***@``).

    For messages that may quote a URL nobody masked; a value with a blank or no scheme is not
    recognizable in free text, so whatever quotes a URL setting shows it with ``shown_url`` first.
    """
    return _CREDENTIALS.sub(r"\1***@", text)


def scrub_secrets(text: str) -> str:
    """``scrub_keys`` and ``scrub_credentials``: for errors and log lines that may quote configuration."""
    return scrub_credentials(scrub_keys(text))


class ScrubbingFormatter(logging.Formatter):
    """A ``logging.Formatter`` whose lines never hold a key-shaped token (httpx logs request URLs) nor
    a URL's password."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub_secrets(super().format(record))
