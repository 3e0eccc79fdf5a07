"""Proving a line repeats no key by counting, without checking every object as it is parsed.

Each key in JSON text is followed by ``":``, or by blanks and a colon
(``"key" :``).  When a line has none of the spaced kind and holds exactly as
many ``":`` as its parsed objects hold keys, no key was repeated (a parser
keeps one value per repeated key, so a repeat leaves fewer keys than
``":``).  A ``":`` inside a string value only adds to the line's count: a
mismatch means "check the slow way", never "accept".
"""

from __future__ import annotations

import re
from typing import Any

SPACED_COLON = re.compile(rb'"\s+:')


def key_count(value: Any) -> int:
    """The keys of every object in a parsed JSON value (a dict or a list), nested ones included."""
    count, items = (len(value), value.values()) if type(value) is dict else (0, value)
    for item in items:
        kind = type(item)
        if kind is dict or kind is list:
            count += key_count(item)
    return count
