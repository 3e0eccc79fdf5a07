"""Line splitting keeps memory bounded and numbers lines as the user counts them."""

from __future__ import annotations

import io

from doow_track_agent.sources.lines import LineSplitter, read_lines


def test_partial_lines_wait_for_their_newline():
    splitter = LineSplitter()
    assert splitter.feed(b'{"a":1}\n{"b"') == [(1, b'{"a":1}')]
    assert splitter.feed(b':2}\n') == [(2, b'{"b":2}')]
    assert splitter.finish() == []


def test_last_line_without_newline_still_counts():
    lines = [line for block in read_lines(io.BytesIO(b"one\ntwo")) for line in block]
    assert lines == [(1, b"one"), (2, b"two")]


def test_an_endless_line_is_truncated_not_buffered():
    splitter = LineSplitter(limit=100)
    for _ in range(1000):
        assert splitter.feed(b"x" * 1000) == []
    (number, raw), = splitter.feed(b"\n")
    assert number == 1 and len(raw) == 101
    assert splitter.feed(b"next\n") == [(2, b"next")]
