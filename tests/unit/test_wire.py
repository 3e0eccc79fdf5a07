"""Event ids: valid UUID4s, unique, and never shared with a forked child."""

from __future__ import annotations

import os
import uuid

from doow_track_agent.intake.wire import BoundedMemo, new_uuid4, new_uuid4s


def test_ids_are_uuid4_and_unique():
    ids = [new_uuid4() for _ in range(20_000)]
    assert len(set(ids)) == len(ids)
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 for i in ids[:500])


def test_a_block_of_ids_is_canonical_uuid4_text_with_every_digit_random():
    ids = new_uuid4s(2000) + new_uuid4s(0) + new_uuid4s(1)
    assert len(ids) == len(set(ids)) == 2001
    assert all(str(uuid.UUID(i)) == i and uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122
               for i in ids)
    assert {i[19] for i in ids} == set("89ab")  # the variant digit keeps its two random bits
    assert all({i[place] for i in ids} == set("0123456789abcdef") for place in range(36)
               if place not in (8, 13, 14, 18, 19, 23))


def test_a_forked_child_draws_fresh_randomness():
    new_uuid4()  # fill the parent's buffer
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.write(write, new_uuid4().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 64).decode()
    assert from_child != new_uuid4()


def test_a_bounded_memo_forgets_everything_once_over_its_limit_and_keeps_the_newest():
    memo = BoundedMemo(limit=10)
    assert memo.keep("a", "A", 4) == "A" and memo.keep("b", "B", 4) == "B"
    assert (memo.get("a"), memo.get("b")) == ("A", "B")
    memo.keep("c", "C", 4)  # 12 > 10: a and b are forgotten, c stays
    assert (memo.get("a"), memo.get("b"), memo.get("c")) == (None, None, "C")
