"""The spool writer thread (issue 10, case 18): when it cannot go on, every producer waiting for an
acknowledgement gets an error, later ones at once, and the agent is told; nobody waits forever.

Real SQLite files, a real thread and a real event loop."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from typing import List, Optional

import pytest

from doow_track_agent.buffers.spool_file import SCHEMA
from doow_track_agent.buffers.spool_writer import Op, Writer
from doow_track_agent.intake.events import Accepted


async def appends(path: str, between=lambda: None) -> dict:
    """Three appends through a Writer on ``path``, ``between()`` after the first; what each producer
    was told and what the agent learnt."""
    loop = asyncio.get_running_loop()
    told: dict = {"errors": [], "failure": None}
    failed = asyncio.Event()

    def on_failure(reason: str) -> None:
        told["failure"] = reason
        failed.set()

    writer = Writer(path, "FULL", loop, on_failure)
    writer.start()
    for number in range(3):
        answered: "asyncio.Future[Optional[BaseException]]" = loop.create_future()
        writer.submit(Op("append", [("ev-1", b"{}")], lambda error, _last, done=answered: done.set_result(error)))
        told["errors"].append(await asyncio.wait_for(answered, 10))
        if number == 0:
            between()
    await asyncio.wait_for(failed.wait(), 10)
    writer.submit(None)
    writer.join(10)
    told["alive"] = writer.is_alive()
    return told


def spool_file(path: str) -> None:
    with sqlite3.connect(path) as conn:
        conn.executescript(SCHEMA)
    conn.close()


def garble(path: str) -> None:
    with open(path, "r+b") as handle:
        handle.write(b"not a database, " * 256)


@pytest.mark.parametrize("how", ["cannot-open", "not-a-database-at-start", "corrupted-while-open",
                                 "deleted-while-open", "replaced-while-open"])
def test_a_writer_that_cannot_go_on_answers_every_producer_and_tells_the_agent(tmp_path, how):
    path = str(tmp_path / "spool.sqlite3")
    between = lambda: None  # noqa: E731
    if how == "cannot-open":
        os.mkdir(path)
    elif how == "not-a-database-at-start":
        spool_file(path)
        garble(path)
    elif how == "corrupted-while-open":
        spool_file(path)
        between = lambda: [garble(name) for name in (path, path + "-shm")]  # noqa: E731
    else:
        spool_file(path)
        spool_file(path + ".new")
        between = {"deleted-while-open": lambda: os.unlink(path),
                   "replaced-while-open": lambda: os.replace(path + ".new", path)}[how]
    told = asyncio.run(appends(path, between))
    errors: List[Optional[BaseException]] = told["errors"]
    assert all(error is not None for error in errors[how.endswith("while-open"):]), errors
    assert "spool writer stopped" in str(errors[-1])
    assert told["failure"] and not told["alive"]
    expected = {"cannot-open": "unable to open database file", "deleted-while-open": "was deleted or replaced",
                "replaced-while-open": "was deleted or replaced"}.get(how, "file is not a database")
    assert expected in told["failure"], told["failure"]


def test_an_error_short_of_corruption_fails_one_group_and_the_writer_goes_on(tmp_path):
    """A full disk, an I/O error, a lock or a bad row is one group's: the writer stays, the next commit may work."""
    path = str(tmp_path / "spool.sqlite3")
    spool_file(path)

    async def run() -> list:
        loop = asyncio.get_running_loop()
        writer = Writer(path, "FULL", loop)
        writer.start()
        results = []
        for rows in ([Accepted("ev-1", None)], [Accepted("ev-2", b"{}")]):  # body NOT NULL: a bad row
            answered: "asyncio.Future[Optional[BaseException]]" = loop.create_future()
            writer.submit(Op("append", rows, lambda error, _last, done=answered: done.set_result(error)))
            results.append(await asyncio.wait_for(answered, 10))
        writer.submit(None)
        writer.join(10)
        return results

    first, second = asyncio.run(run())
    assert first is not None and second is None
