"""Issue 10 in the agent: every failure ends in an outcome a user can see (log, /status, /readyz, exit
status), and nothing valid is lost or sent twice because of it.  Real agent, real receiver."""

from __future__ import annotations

import http.server
import json
import os
import shutil
import sqlite3
import subprocess
import threading

import pytest

from doow_track_agent.receiver.faults import Faults
from tests.support.agent import EVENT, fail_receiver, heal_receiver, wait_for
from tests.support.cli import BIN, base_env

WHOLE = json.dumps({"metric": "rows", "quantity": 2, "license_id": "lic_tail"}).encode()
TORN = b'{"metric":"rows","qua'


def open_files(pid: int) -> set:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            pass  # closed while listed
    return found


def test_a_rotated_file_ending_without_newline_is_reported_judged_and_closed(make_agent, receiver):
    """Case 6: after the rotation grace, a warning names the file, the offset and the byte count; a
    whole valid event is delivered (docs/guide.md), a torn write is reported as an invalid line; the
    rotated files are closed."""
    agent = make_agent()
    whole, torn = os.path.join(agent.dir, "whole.jsonl"), os.path.join(agent.dir, "torn.jsonl")
    first = json.dumps(EVENT).encode() + b"\n"  # whole.jsonl and torn.jsonl: the same length
    for path, tail in ((whole, WHOLE), (torn, TORN)):
        with open(path, "wb") as handle:
            handle.write(first.replace(b"lic_agent", os.path.basename(path)[:5].encode()) + tail)
    agent.write_config(input={"mode": "file", "paths": [whole, torn]})
    assert agent.start().code == 0
    wait_for(lambda: receiver.store.count() == 2, 30, "the complete first lines")
    for path in (whole, torn):
        os.rename(path, path + ".1")
    wait_for(lambda: receiver.store.count() == 3, 30, "the unterminated whole event after the grace")
    wait_for(lambda: not {whole + ".1", torn + ".1"} & open_files(agent.pid), 10, "the rotated files closed")
    log = agent.log()
    for path, tail in ((whole, WHOLE), (torn, TORN)):
        assert f"{path}.1 (rotated from {path}): {len(tail)} byte(s) at offset {len(first) - 4} have no final newline" \
            in log, log
    assert f"{torn}:2: $: invalid JSON" in log
    assert agent.get("/readyz")[0] == 200
    assert receiver.stats()["quantity"] == 2 * EVENT["quantity"] + 2


class Redirector:
    """An endpoint that answers every request with ``status`` and a Location under ``target``."""

    def __init__(self, status: int, target: str) -> None:
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.mark.parametrize("status", [301, 307])
def test_a_redirecting_endpoint_keeps_the_events_and_is_not_ready(make_agent, receiver, status):
    """Case 12: the events stay spooled, /readyz is 503, /status names the Location, and the redirect
    target (a second real receiver) never gets a request, so never the key."""
    redirector = Redirector(status, receiver.url)
    try:
        agent = make_agent(endpoint=redirector.url)
        assert agent.start().code == 0
        assert all(reply["ok"] for reply in agent.send([EVENT] * 3))
        wait_for(lambda: agent.get("/readyz")[0] == 503, 15, "/readyz 503")
        status_now = agent.status()
        location = f"{receiver.url}/telemetry/events"
        assert f"HTTP {status} redirect to {location}" in status_now["last_error"]
        assert location in agent.get("/readyz")[1]
        assert status_now["spool"]["events"] == 3 and status_now["spool"]["dead_letters"] == 0
        assert receiver.stats()["requests_total"] == 0
    finally:
        redirector.stop()


UNDECODABLE = [  # (event_id, body): rows a crash, a bad disk or a hand edit can leave in the table
    ("bad-utf8", b"\xff\xfe{\x00"),
    ("bad-json", b"{not json"),
    ("bad-shape", b'{"event_id":"bad-shape","measurements":[]}'),
    ("bad-type", b'["a list"]'),
    (b"\xff-blob-id", b"{}"),
]


def plant(agent, rows) -> None:
    """Add rows to the stopped agent's dead-letter table with sqlite3, as a hand edit would."""
    with sqlite3.connect(os.path.join(agent.settings["spool"]["dir"], "spool.sqlite3")) as conn:
        conn.executemany("INSERT INTO dead_letters (event_id, body, reason, at) VALUES (?, ?, 'planted', 0)",
                         rows)
    conn.close()


def stop(agent) -> None:
    assert agent.cli("stop", "--config", agent.config, "--pidfile", agent.pidfile).code == 0


def deadletter(agent, *args: str):
    return agent.cli("deadletter", *args, "--config", agent.config)


def test_deadletter_tools_skip_and_report_rows_they_cannot_decode(make_agent, receiver):
    """Case 13: list, export and retry go on past undecodable rows, name them, and leave them in place."""
    receiver.set_faults(Faults(reject_every=1))
    agent = make_agent()
    assert agent.start().code == 0
    agent.send([EVENT] * 2)
    wait_for(lambda: agent.status()["spool"]["dead_letters"] == 2, 30, "2 dead letters")
    stop(agent)
    plant(agent, UNDECODABLE)
    named = "skipped 5 dead letter(s) whose stored body cannot be decoded"

    listed = deadletter(agent, "list", "--json")
    assert listed.code == 0 and named in listed.err, listed.err
    assert listed.json["dead_letters"] == 7 and len(listed.json["events"]) == 2
    assert len(listed.json["undecodable"]) == 5 and "bad-utf8" in listed.json["undecodable"]
    exported = deadletter(agent, "export")
    assert named in exported.err and len(exported.out.splitlines()) == 2

    heal_receiver(receiver)
    assert agent.start().code == 0
    retried = deadletter(agent, "retry", "--json")
    assert named in retried.err, retried.err
    assert (retried.json["accepted"], retried.json["removed"], len(retried.json["undecodable"])) == (2, 2, 5)
    again = deadletter(agent, "retry").out
    assert "0 of 5 dead letter(s) handed back" in again and "kept 5: 5 undecodable" in again
    wait_for(lambda: receiver.store.count() == 2, 30, "the 2 retried events")
    assert deadletter(agent, "list", "--json").json["dead_letters"] == 5


def test_deadletter_retry_past_1000_removes_what_the_agent_acknowledged(make_agent, receiver):
    """Case 17: 1,200 dead letters plus one the agent refuses at intake: 1,200 removed and stored, the
    refused one kept, and the message counts exactly that."""
    receiver.set_faults(Faults(reject_every=1))
    agent = make_agent(flushAt=500)
    assert agent.start().code == 0
    producer = agent.producer()
    try:
        for _ in range(3):
            producer.send([EVENT] * 400)
    finally:
        producer.close()
    wait_for(lambda: agent.status()["spool"]["dead_letters"] == 1200, 60, "1,200 dead letters")
    stop(agent)
    refused = json.dumps({"event_id": "ev-refused", "license_id": "lic_agent", "occurred_at": "2026-11-24T10:00:00Z",
                          "kind": "USAGE", "source_system": "t",
                          "measurements": [{"metric_name": "tokens", "quantity": -1}]}).encode()
    plant(agent, [("ev-refused", refused)])
    heal_receiver(receiver)
    assert agent.start().code == 0

    retried = deadletter(agent, "retry")
    assert retried.code == 65, retried.err
    assert "1200 of 1201 dead letter(s) handed back to the agent and removed" in retried.out, retried.out
    assert "kept 1: 1 refused as invalid by the agent" in retried.out
    assert "ev-refused: $.quantity" in retried.out
    wait_for(lambda: receiver.store.count() == 1200, 60, "the 1,200 retried events")
    left = deadletter(agent, "list", "--json").json
    assert left["dead_letters"] == 1 and left["events"][0]["event_id"] == "ev-refused"


def test_a_spool_deleted_or_emptied_while_stopped_is_warned_about_at_start(make_agent, receiver):
    """Case 15: the state beside the spool says it held events; the next start says they are gone."""
    fail_receiver(receiver)
    agent = make_agent(shutdownTimeout=200)
    spool = os.path.join(agent.settings["spool"]["dir"], "spool.sqlite3")
    losses = [lambda: [os.unlink(path) for path in (spool, spool + "-wal", spool + "-shm") if os.path.exists(path)],
              lambda: os.truncate(spool, 0)]
    for number, lose in enumerate(losses, 1):
        assert agent.start().code == 0
        assert all(reply["ok"] for reply in agent.send([EVENT] * 30))
        stop(agent)
        lose()
        assert agent.start().code == 0
        warned = f"the spool {spool} was deleted or truncated while the agent was stopped: it held 30 undelivered"
        assert agent.log().count(warned) == number, agent.log()
        stop(agent)


def test_a_spool_that_cannot_store_any_more_ends_the_agent_with_70_and_answers_producers(make_agent, receiver):
    """Case 18: the spool file, its WAL and WAL index garbled under the running agent (a disk gone bad): the
    writer thread stops; the producer gets an error reply (no hang), /readyz is never 200 again, and
    the agent logs the reason and exits 70 so its service manager restarts it."""
    agent = make_agent()
    child = subprocess.Popen([BIN, "--config", agent.config, "--pidfile", agent.pidfile, "--foreground"],
                             env=base_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: ready(agent), 30, "the agent to be ready")
        producer = agent.producer()
        assert producer.send([EVENT])[0]["ok"]
        wait_for(lambda: receiver.store.count() == 1, 30, "the first event delivered")
        spool = os.path.join(agent.settings["spool"]["dir"], "spool.sqlite3")
        for name in (spool, spool + "-wal", spool + "-shm"):
            with open(name, "r+b") as handle:
                handle.write(b"not a database, " * 256)
        try:
            replies = producer.send([EVENT])
        except (OSError, ValueError):
            replies = []  # the agent closed the connection on its way out: no acknowledgement either
        finally:
            producer.close()
        assert not any(reply["ok"] for reply in replies), replies
        assert all(reply["kind"] == "spool_error" for reply in replies), replies
        assert ready(agent) is not True
        _, stderr = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 70, stderr
    log = agent.log()
    assert "spool writer thread stopped: DatabaseError: file is not a database" in log, log
    assert "the spool cannot store events any more" in log


def ready(agent) -> object:
    """True for /readyz 200, False for 503, None when nothing listens."""
    try:
        return agent.get("/readyz")[0] == 200
    except OSError:
        return None


def test_a_tail_that_cannot_go_on_is_shown_failed_until_it_can(make_agent, receiver):
    """Case 19: a tailed file's directory removed, a file the agent may not read (root without
    CAP_DAC_OVERRIDE, as setpriv runs it), a FIFO at the path (whose open must not block the agent):
    each shows in /readyz and /status, the socket still delivers, and once fixed all is read."""
    agent = make_agent()
    gone_dir = os.path.join(agent.dir, "gone")
    os.mkdir(gone_dir)
    gone, denied, fifo = os.path.join(gone_dir, "a.jsonl"), os.path.join(agent.dir, "denied.jsonl"), \
        os.path.join(agent.dir, "fifo.jsonl")
    for number, path in enumerate((gone, denied), 1):
        with open(path, "w") as handle:
            handle.write(json.dumps({**EVENT, "quantity": number}) + "\n")
    os.chmod(denied, 0)
    os.mkfifo(fifo)
    agent.write_config(input={"mode": "file", "paths": [gone, denied, fifo]})
    started = subprocess.run(["setpriv", "--bounding-set", "-dac_override,-dac_read_search", BIN, "--config",
                              agent.config, "--pidfile", agent.pidfile], env=base_env(), capture_output=True,
                             timeout=60)
    assert started.returncode == 0, started.stderr
    wait_for(lambda: receiver.store.count() == 1, 30, "the readable file")
    shutil.rmtree(gone_dir)
    reasons = [f"cannot follow {gone}: its directory {gone_dir} is gone",
               f"cannot open {denied}: Permission denied", f"cannot follow {fifo}: not a regular file"]
    wait_for(lambda: all(reason in agent.get("/readyz")[1] for reason in reasons), 30, "the failing paths")
    assert agent.get("/readyz")[0] == 503
    assert any(all(reason in line for reason in reasons) for line in agent.status()["not_ready"])
    assert agent.send([EVENT])[0]["ok"]
    wait_for(lambda: receiver.store.count() == 2, 30, "an event through the socket meanwhile")

    os.mkdir(gone_dir)
    os.chmod(denied, 0o644)
    os.unlink(fifo)
    for number, path in enumerate((gone, fifo), 5):
        with open(path, "w") as handle:
            handle.write(json.dumps({**EVENT, "quantity": number}) + "\n")
    wait_for(lambda: agent.get("/readyz")[0] == 200, 30, "/readyz 200 once every path can be followed")
    wait_for(lambda: receiver.store.count() == 5, 30, "the three files")
