"""The exit-status table is sysexits.h's where it borrows a name, and every status has a documented meaning."""

from __future__ import annotations

import os

from doow_track_agent import exits


def _table() -> dict:
    return {name: value for name, value in vars(exits).items() if name.startswith("EX_")}


def test_sysexits_names_keep_their_numbers():
    borrowed = {name: value for name, value in _table().items() if hasattr(os, name)}
    assert set(borrowed) >= {"EX_OK", "EX_USAGE", "EX_DATAERR", "EX_NOINPUT", "EX_UNAVAILABLE", "EX_SOFTWARE",
                             "EX_TEMPFAIL", "EX_NOPERM", "EX_CONFIG"}
    assert borrowed == {name: getattr(os, name) for name in borrowed}


def test_every_status_has_one_name_and_a_meaning():
    values = list(_table().values())
    assert len(values) == len(set(values))
    assert set(exits.MEANINGS) == set(values)
