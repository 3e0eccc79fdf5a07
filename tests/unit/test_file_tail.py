"""The file tail on its own, against a real spool: exactly once across restarts, rotations and truncation."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
from typing import Callable, List

from doow_track_agent.buffers import spool_offline
from doow_track_agent.buffers.spool import Spool
from doow_track_agent.intake.events import Intake
from doow_track_agent.intake.policy import MAX_LINE_BYTES
from doow_track_agent.sources.file_tail import FileTail, line_event_id
from doow_track_agent.stats import Stats


def event(seq: int, **extra: object) -> bytes:
    return json.dumps({"metric": "rows", "quantity": 1, "license_id": "lic_tail",
                       "attribution": {"seq": seq}, **extra}).encode() + b"\n"


def append(path, data: bytes) -> None:
    with open(path, "ab") as handle:
        handle.write(data)


def spooled(directory) -> List[tuple]:
    """(event_id, seq) of every spooled event, in spool order."""
    conn = spool_offline.open_existing(str(directory))
    rows = conn.execute("SELECT event_id, body FROM events ORDER BY id").fetchall()
    conn.close()
    return [(event_id, json.loads(body)["attribution"].get("seq")) for event_id, body in rows]


async def tail_until(directory, paths, condition: Callable[[], bool], actions=(), timeout: float = 10.0) -> Stats:
    """Run a tail over ``paths`` (a fresh Spool on ``directory``), do ``actions`` between polls, stop."""
    stats = Stats()
    spool = Spool(str(directory), 10**9, "batch", stats)
    spool.open()
    tail = FileTail([str(path) for path in paths], spool, stats, Intake({"env": "t"}), poll=0.02)
    tail.start()
    try:
        for action in actions:
            await asyncio.sleep(0.15)
            action()
        deadline = asyncio.get_running_loop().time() + timeout
        while not condition() and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
    finally:
        await tail.stop()
        await spool.close()
    return stats


def run(directory, paths, expected: int, actions=(), timeout: float = 10.0) -> Stats:
    def enough() -> bool:
        return len(spooled(directory)) >= expected
    return asyncio.run(tail_until(directory, paths, enough, actions, timeout))


def test_complete_lines_only_invalid_ones_logged_and_skipped(tmp_path, caplog):
    log = tmp_path / "usage.jsonl"
    log.write_bytes(event(0) + b"not json\n\n" + event(2, event_id="producer-id-2") + b'{"metric":"rows"')
    caplog.set_level(logging.WARNING)
    stats = run(tmp_path / "spool", [log], 2)
    assert [seq for _, seq in spooled(tmp_path / "spool")] == [0, 2]
    ids = [event_id for event_id, _ in spooled(tmp_path / "spool")]
    assert ids[0] == line_event_id(_key(tmp_path / "spool"), 0, event(0)[:-1])
    assert ids[1] == "producer-id-2", "a producer-supplied event_id wins over the derived one"
    assert stats.invalid == 1 and f"{log}:2: $: invalid JSON" in caplog.text

    append(log, b',"quantity":1,"license_id":"lic_tail","attribution":{"seq":4}}\n')  # the partial line completes
    run(tmp_path / "spool", [log], 3)
    assert [seq for _, seq in spooled(tmp_path / "spool")] == [0, 2, 4], "resumed exactly: none twice, none skipped"


def _key(directory) -> str:
    conn = spool_offline.open_existing(str(directory))
    fingerprint, epoch = conn.execute("SELECT fingerprint, epoch FROM checkpoints").fetchone()
    conn.close()
    return fingerprint if not epoch else f"{fingerprint}+{epoch}"


def test_a_lost_checkpoint_rereads_with_the_same_event_ids(tmp_path):
    log = tmp_path / "usage.jsonl"
    log.write_bytes(b"".join(event(n) for n in range(50)))
    run(tmp_path / "first", [log], 50)
    run(tmp_path / "second", [log], 50)
    assert spooled(tmp_path / "first") == spooled(tmp_path / "second")


def test_rename_rotation_finishes_the_old_file_then_reads_the_new(tmp_path):
    log = tmp_path / "usage.jsonl"
    log.write_bytes(b"".join(event(n) for n in range(10)))

    def rotate() -> None:
        append(log, b"".join(event(n) for n in range(10, 20)))
        os.rename(log, tmp_path / "usage.jsonl.1")
        append(tmp_path / "usage.jsonl.1", event(20))           # a late write to the old file
        log.write_bytes(b"".join(event(n) for n in range(21, 30)))

    run(tmp_path / "spool", [log], 30, actions=[rotate])
    assert sorted(seq for _, seq in spooled(tmp_path / "spool")) == list(range(30))


def test_lines_left_in_a_file_rotated_while_stopped_are_read_after_restart(tmp_path):
    log = tmp_path / "usage.jsonl"
    log.write_bytes(b"".join(event(n) for n in range(10)))
    run(tmp_path / "spool", [log], 10)
    append(log, b"".join(event(n) for n in range(10, 15)))
    os.rename(log, tmp_path / "usage.jsonl.1")
    log.write_bytes(b"".join(event(n) for n in range(15, 20)))
    run(tmp_path / "spool", [log], 20)
    assert sorted(seq for _, seq in spooled(tmp_path / "spool")) == list(range(20))


def test_copy_truncate_is_detected_and_read_from_the_start(tmp_path):
    log = tmp_path / "usage.jsonl"
    log.write_bytes(b"".join(event(n) for n in range(10)))

    def copy_truncate() -> None:
        shutil.copy(log, tmp_path / "usage.jsonl.1")
        with open(log, "r+b") as handle:
            handle.truncate(0)
        append(log, event(10) + event(11))

    run(tmp_path / "spool", [log], 12, actions=[copy_truncate])
    assert [seq for _, seq in spooled(tmp_path / "spool")] == list(range(12))


def test_rewritten_past_the_old_size_while_stopped_and_same_first_line_gets_new_ids(tmp_path):
    """Same first line, more bytes than before: only the changed bytes before the offset tell."""
    log = tmp_path / "usage.jsonl"
    log.write_bytes(event(0) + event(1))
    run(tmp_path / "spool", [log], 2)
    log.write_bytes(event(0) + event(7) + event(8))
    run(tmp_path / "spool", [log], 5)
    rows = spooled(tmp_path / "spool")
    assert [seq for _, seq in rows] == [0, 1, 0, 7, 8]
    assert len({event_id for event_id, _ in rows}) == 5, "new content must not reuse the old lines' ids"


def test_globs_and_several_paths(tmp_path):
    (tmp_path / "a.jsonl").write_bytes(event(0) + event(1))
    (tmp_path / "b.jsonl").write_bytes(event(2))
    (tmp_path / "other.log").write_bytes(event(3))

    def later() -> None:
        (tmp_path / "c.jsonl").write_bytes(event(4))

    run(tmp_path / "spool", [tmp_path / "*.jsonl", tmp_path / "other.log"], 5, actions=[later])
    assert sorted(seq for _, seq in spooled(tmp_path / "spool")) == [0, 1, 2, 3, 4]


def test_an_overlong_line_is_reported_and_skipped_with_bounded_reads(tmp_path, caplog):
    log = tmp_path / "usage.jsonl"
    log.write_bytes(event(0) + b"7" * (3 * MAX_LINE_BYTES))
    caplog.set_level(logging.WARNING)

    def finish_line() -> None:
        append(log, b"7" * 1000 + b"\n" + event(2))

    stats = run(tmp_path / "spool", [log], 2, actions=[finish_line])
    assert [seq for _, seq in spooled(tmp_path / "spool")] == [0, 2]
    assert stats.invalid == 1 and f"{log}:2: $: line is" in caplog.text
