"""The odd lines of issue 10 through every agent source: the agent stays up, answers per line, delivers neighbours."""

from __future__ import annotations

import json
import os
import socket

from tests.support.agent import EVENT, free_port, wait_for

ODD = [
    b'{"metric":"m","quantity":1,"license_id":"lic_1","timestamp":"0001-01-01T00:00:00+01:00"}',
    b'{"metric":"m","quantity":1,"license_id":"lic_1","timestamp":"9999-12-31T23:59:59-01:00"}',
    b'{"metric":"m","quantity":1,"license_id":"lic_1","attribution":{"k":"\\ud800"}}',
    b"x" * (70 * 1024),
]


def interleaved() -> bytes:
    good = json.dumps(EVENT).encode()
    return b"".join(good + b"\n" + odd + b"\n" for odd in ODD) + good + b"\n"


def converse(sock: socket.socket, data: bytes, replies: int) -> list:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)
    lines = sock.makefile("rb").read().splitlines()
    assert len(lines) == replies
    return [json.loads(line) for line in lines]


def check_replies(replies: list) -> None:
    assert [reply["ok"] for reply in replies] == [True, False] * len(ODD) + [True]
    assert all(reply["line"] == index + 1 for index, reply in enumerate(replies))


def test_socket_tcp_and_file_tail_judge_odd_lines_one_by_one(make_agent, receiver):
    port = free_port()
    agent = make_agent(tcp={"listen": f"127.0.0.1:{port}"})
    tailed = os.path.join(agent.dir, "usage.jsonl")
    with open(tailed, "wb") as handle:
        handle.write(b"\xef\xbb\xbf" + interleaved())
    agent.write_config(input={"mode": "file", "path": tailed})
    assert agent.start().code == 0
    expected = len(ODD) + 1
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(agent.socket)
        check_replies(converse(sock, interleaved(), 2 * len(ODD) + 1))
    with socket.create_connection(("127.0.0.1", port)) as sock:
        check_replies(converse(sock, interleaved(), 2 * len(ODD) + 1))
    wait_for(lambda: receiver.store.count() == 3 * expected, 30, "the neighbours from all three sources")
    assert agent.get("/readyz")[0] == 200
    log = agent.log()
    assert f"{tailed}:2: $.timestamp" in log and "longer than 64 KiB" in log


def test_a_second_agent_on_the_same_spool_is_refused_naming_the_holder(make_agent):
    first = make_agent()
    assert first.start().code == 0
    second = make_agent(spool={"dir": first.settings["spool"]["dir"]})
    result = second.start()
    assert result.code == 69 and f"pid {first.pid}" in result.err
