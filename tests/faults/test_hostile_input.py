"""Hostile input: never a crash or a hang, every bad line reported by number, good lines delivered."""

from __future__ import annotations

import json
import subprocess
import threading
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from doow_track_agent.intake.events import Accepted, Intake, Invalid
from doow_track_agent.sources.lines import LineSplitter
from tests.support import cli
from tests.support.cli import KEY

GOOD = b'{"metric":"api_calls","quantity":1,"license_id":"lic_abc123"}'

json_ish = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=200).map(str.encode),
    st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                 max_leaves=12).map(lambda v: json.dumps(v).encode()),
    st.sampled_from([b"NaN", b"[" * 5000, b'{"a":' * 3000, b"1e99999", b"-Infinity", b'{"a":1,"a":2}',
                     b"\x00\x01\x1b[2J", b"\xff\xfe\xfd", b'"\\ud800"', GOOD]),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(json_ish, max_size=12), st.integers(min_value=1, max_value=64))
def test_reader_and_validator_never_crash(chunks, cut):
    intake = Intake({"env": "fuzz"})
    splitter = LineSplitter()
    stream = b"\n".join(chunks)
    lines = []
    for start in range(0, len(stream), cut):
        lines += splitter.feed(stream[start:start + cut])
    lines += splitter.finish()
    assert [number for number, _ in lines] == list(range(1, len(lines) + 1))
    for number, raw in lines:
        result = intake.accept(raw, number)
        assert result is None or isinstance(result, Accepted) or (isinstance(result, Invalid) and result.line == number)
        if raw.strip() == GOOD:
            assert isinstance(result, Accepted)


def test_a_file_of_hostile_lines_reports_each_and_delivers_the_rest(receiver):
    hostile = [
        b"\xff\xfe not utf-8",
        b"x" * 1_500_000,
        b"[" * 200_000,
        b'{"metric":"m","quantity":1e400,"license_id":"l"}',
        b'{"metric":"m","quantity":NaN,"license_id":"l"}',
        b'{"metric":"m","quantity":1,"quantity":1000,"license_id":"l"}',
        b'{"metric":"m\x07","quantity":1,"license_id":"l"}',
        b'{"metric":"m","quantity":123456789012345678901234567890,"license_id":"l\x00"}',
        b"\x1b]0;owned\x07",
    ]
    data = b"\n".join(line for bad in hostile for line in (GOOD, bad)) + b"\n" + GOOD + b"\n"
    result = cli.run(["--api-key", KEY, "--endpoint", receiver.url, "--json"], stdin=data)
    assert result.code == 65
    assert [error["line"] for error in result.json["errors"]] == list(range(2, 2 * len(hostile) + 1, 2))
    assert receiver.store.count() == len(hostile) + 1
    assert "\x1b" not in result.err and "\x07" not in result.err


def test_one_endless_line_keeps_memory_bounded():
    """200 MB without a newline: read and skipped with bounded memory, then reported as too long."""
    process = subprocess.Popen([cli.BIN, "--dry-run", "--json"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=cli.base_env())
    block = b"7" * (1 << 20)
    peak = []

    def watch() -> None:
        while process.poll() is None:
            peak.append(_peak_rss_kib(process.pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    for _ in range(200):
        process.stdin.write(block)
    process.stdin.write(b"\n" + GOOD + b"\n")
    out, err = process.communicate(timeout=120)
    watcher.join()
    summary = json.loads(out)
    assert summary["invalid"] == 1 and summary["valid"] == 1
    assert "at most 65536" in err.decode()
    assert max(peak) < 100 * 1024, f"peak RSS {max(peak)} KiB while reading one endless line"


def _peak_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        return 0


def test_stale_replay_warns():
    old = {"metric": "m", "quantity": 1, "license_id": "l", "event_id": "e-1", "timestamp": "2020-01-01T00:00:00Z"}
    result = cli.run(["--dry-run"], stdin=json.dumps(old) + "\n")
    assert result.code == 0 and "over 24 h old" in result.err
