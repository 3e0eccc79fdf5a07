"""Local producers: many at once through the socket, a full spool, the TCP source and its token."""

from __future__ import annotations

import json
import os
import socket
import stat

from doow_track_agent.intake.events import BULK_LINES
from tests.support.agent import (EVENT, Load, assert_stored_exactly_once, fail_receiver, free_port, heal_receiver,
                                 wait_for)


def test_eight_concurrent_producers_every_ack_stored_once(agent, receiver):
    with Load(agent, producers=8, batch=40) as load:
        wait_for(lambda: load.count() >= 8000, 120, "8000 acknowledged events")
    assert not load.errors and not load.refused
    assert_stored_exactly_once(receiver, load.acked)
    # The receiver stores a batch before it answers: the agent counts it once the answer is in.
    wait_for(lambda: agent.status()["counters"]["delivered"] >= len(load.acked), 10, "the agent to count the answers")
    counters = agent.status()["counters"]
    assert counters["accepted"] == len(load.acked) and counters["delivered"] == len(load.acked)


def test_replies_name_the_line_and_the_problem(agent):
    producer = agent.producer()
    producer.sock.sendall(b'{"metric":"a","quantity":1,"license_id":"l"}\n\n{"metric":"a","quantity":-1,'
                          b'"license_id":"l"}\nnot json\n')
    replies = [json.loads(producer.replies.readline()) for _ in range(3)]
    producer.close()
    assert replies[0]["ok"] and replies[0]["line"] == 1
    assert replies[1] == {"ok": False, "line": 3, "error": replies[1]["error"], "kind": "schema"}
    assert replies[1]["error"].startswith("$.quantity: ")
    assert replies[2]["line"] == 4 and replies[2]["kind"] == "json"


def test_once_bulk_a_chunk_of_mixed_lines_is_answered_line_by_line_in_order(agent, receiver):
    """Past BULK_LINES intake judges whole chunks (the fast path): replies keep each line's number and verdict."""
    producer = agent.producer()
    warm = producer.send([EVENT] * (BULK_LINES + 10))
    assert all(reply["ok"] for reply in warm)
    producer.sock.sendall(b'{"metric":"a","quantity":1,"license_id":"l"}\n'
                          b'{"metric":"a","quantity":-1,"license_id":"l"}\n'
                          b'{"metric":"a","quantity":2,"license_id":"l","event_id":"own-7"}\n'
                          b'\n'
                          b'not json\n'
                          b'{"metric":"a","quantity":3,"license_id":"l","timestamp":"2026-11-24T10:00:00Z"}\n')
    replies = [json.loads(producer.replies.readline()) for _ in range(5)]
    producer.close()
    first = BULK_LINES + 11
    assert [(reply["line"], reply["ok"]) for reply in replies] == [
        (first, True), (first + 1, False), (first + 2, True), (first + 4, False), (first + 5, True)]
    assert replies[1]["kind"] == "schema" and replies[3]["kind"] == "json"
    assert replies[2]["event_id"] == "own-7"
    assert_stored_exactly_once(receiver, [reply["event_id"] for reply in warm + replies if reply["ok"]])


def test_a_silent_producer_does_not_block_the_others(agent):
    silent = socket.socket(socket.AF_UNIX)
    silent.connect(agent.socket)
    silent.sendall(b'{"metric":"half a line')  # and never more
    replies = agent.send([EVENT] * 10)
    assert all(reply["ok"] for reply in replies)
    silent.close()


def test_full_spool_refuses_producers_explicitly_and_recovers(make_agent, receiver):
    agent = make_agent()
    agent.write_config(spool={"dir": agent.dir + "/spool", "maxBytes": 1048576})
    assert agent.start().code == 0
    fail_receiver(receiver)
    refused = []
    acked = []
    producer = agent.producer()
    while not refused:
        for reply in producer.send([EVENT] * 100):
            (acked if reply["ok"] else refused).append(reply)
    producer.close()
    assert refused[0]["kind"] == "spool_full" and "spool full" in refused[0]["error"]

    sent = agent.cli("send", "--config", agent.config, "--json", json.dumps(EVENT))
    assert sent.code == 75 and sent.json["errors"][0]["kind"] == "spool_full"
    status, text = agent.get("/readyz")
    assert status == 503 and "spool full" in text
    assert agent.status()["spool"]["full"] is True

    heal_receiver(receiver)
    wait_for(lambda: agent.get("/readyz")[0] == 200, 60, "/readyz 200 once the spool drained")
    again = agent.send([EVENT])
    assert again[0]["ok"]
    assert_stored_exactly_once(receiver, [reply["event_id"] for reply in acked] + [again[0]["event_id"]])


def test_tcp_source_on_loopback(make_agent, receiver):
    port = free_port()
    agent = make_agent(tcp={"listen": f"127.0.0.1:{port}", "token": None})
    assert agent.start().code == 0
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(json.dumps(EVENT).encode() + b"\n")
        reply = json.loads(conn.makefile("rb").readline())
    assert reply["ok"]
    assert_stored_exactly_once(receiver, [reply["event_id"]])


def test_tcp_token_is_checked_first(make_agent):
    port = free_port()
    token = "t0ken-long-enough-1234"
    agent = make_agent(tcp={"listen": f"127.0.0.1:{port}", "token": token})
    assert agent.start().code == 0
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(b"wrong-token-xxxxxxxxxx\n" + json.dumps(EVENT).encode() + b"\n")
        replies = conn.makefile("rb").read().splitlines()
    assert len(replies) == 1 and json.loads(replies[0])["kind"] == "auth"
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(token.encode() + b"\n" + json.dumps(EVENT).encode() + b"\n")
        reply = json.loads(conn.makefile("rb").readline())
    assert reply["ok"] and reply["line"] == 2


def test_tcp_beyond_loopback_without_token_is_refused(make_agent):
    agent = make_agent(tcp={"listen": f"0.0.0.0:{free_port()}", "token": None})
    result = agent.start()
    assert result.code == 78 and "tcp.token" in result.err


def test_socket_mode_is_applied(agent):
    assert stat.S_IMODE(os.stat(agent.socket).st_mode) == 0o660
