"""Rules beyond the schema: size limits and values that look like secrets.

Doow's SDK docs say never to send payloads, customer content, secrets or raw
logs as event data.  Sizes are cheap to check on the raw line; secrets are
looked for in the raw line first (a few substring tests) and only located
field by field when a marker is present or the line uses JSON escapes that
could hide one.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Iterator, Optional, Tuple

MAX_LINE_BYTES = 64 * 1024
MAX_METADATA_BYTES = 4 * 1024

_SECRET_KINDS = (
    ("a Doow SDK key", r"\bdk_[A-Za-z0-9_-]{8,}"),
    ("a Bearer token", r"\bBearer\s+[A-Za-z0-9._~+/=-]{8,}"),
    ("a JSON Web Token", r"\beyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\."),
    ("an AWS access key id", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    ("a PEM private key", r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
)
_SECRETS = [(kind, re.compile(pattern)) for kind, pattern in _SECRET_KINDS]
_MARKERS = re.compile(rb"dk_|Bearer|eyJ|AKIA|ASIA|PRIVATE KEY|\\")
# Only a \\u escape can put a lone surrogate in a parsed string: raw UTF-8 cannot encode one.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def secret_kind(text: str) -> Optional[str]:
    """Name the kind of secret ``text`` looks like, or None."""
    for kind, pattern in _SECRETS:
        if pattern.search(text):
            return kind
    return None


def _strings(value: Any, path: str) -> Iterator[Tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(key, path)
            yield from _strings(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")


def may_hide_secret(raw: bytes) -> bool:
    """Whether a line's text holds a secret marker or a JSON escape (which could spell one); False: no secret."""
    return _MARKERS.search(raw) is not None


def find_secret(raw: bytes, event: dict) -> Optional[Tuple[str, str]]:
    """Return ``(json_path, kind)`` of the first secret-looking value, or None."""
    if not may_hide_secret(raw):
        return None
    for path, text in _strings(event, "$"):
        kind = secret_kind(text)
        if kind:
            return path, kind
    return None


def encoding_problem(raw: bytes, event: Any) -> Optional[Tuple[str, str]]:
    """Return ``(json_path, reason)`` when a string (key or value) cannot be encoded as UTF-8.

    JSON's ``\\ud800`` escape parses to a lone UTF-16 surrogate, which no
    UTF-8 encoder (the API's storage included) accepts; caught here, not by a 500.
    """
    if _ESCAPED_SURROGATE.search(raw) is None:
        return None
    for path, text in _strings(event, "$"):
        found = _SURROGATE.search(text)
        if found:
            return path, (f"contains a lone UTF-16 surrogate (U+{ord(found.group()):04X}), "
                          "which cannot be encoded as UTF-8")
    return None


def name_problem(event: dict) -> Optional[Tuple[str, str]]:
    """Return ``(json_path, reason)`` when license_id holds a character the API refuses in names.

    The schema keeps out C0 controls; the API also refuses other non-printable
    characters (C1 controls, line and paragraph separators, format characters).
    """
    license_id = event.get("license_id")
    if type(license_id) is str and not license_id.isprintable():
        bad = next(char for char in license_id if not char.isprintable())
        return "$.license_id", f"contains the non-printable character U+{ord(bad):04X}; names must be printable"
    return None


def _floats(value: Any, path: str) -> Iterator[Tuple[str, float]]:
    if type(value) is float:
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _floats(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _floats(item, f"{path}[{index}]")


def number_problem(event: dict) -> Optional[Tuple[str, str]]:
    """Return ``(json_path, reason)`` for a number too large for a double (``1e400``) where the schema allows any
    value (``metadata``): JSON has no Infinity, so the event could not be sent."""
    for path, number in _floats(event.get("metadata"), "$.metadata"):
        if not math.isfinite(number):
            return path, "a number out of range: JSON numbers must be finite (at most about 1.8e308)"
    return None


def size_problem(event: dict) -> Optional[Tuple[str, str]]:
    """Return ``(json_path, reason)`` when a field is over its size limit."""
    metadata = event.get("metadata")
    if metadata:
        size = len(json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode())
        if size > MAX_METADATA_BYTES:
            return "$.metadata", f"metadata is {size} bytes serialized; at most {MAX_METADATA_BYTES} allowed"
    return None
