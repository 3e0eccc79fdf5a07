"""Issue 11: a shared host is hostile ground.  Each attack runs for real as an unprivileged local user
(``mallory``) against root's agent, pipe mode, commands and receiver; root's victim process and file
must come out untouched (the fixtures check), and the key must never show (``run`` checks)."""

from __future__ import annotations

import http.server
import json
import os
import resource
import socket
import subprocess
import sys
import threading
import time
import zlib
from typing import Iterator

import pytest

from doow_track_agent.receiver.faults import Faults
from doow_track_agent.receiver.server import IDLE_TIMEOUT_SECONDS, MAX_CONNECTIONS
from tests.support.agent import EVENT, AgentUnderTest, free_port, wait_for
from tests.support.cli import BIN, KEY, base_env, lines, run

PYTHON = sys.executable


def _stat_owner(path: str) -> int:
    return os.lstat(path).st_uid


# -- 1. signals ------------------------------------------------------------------------------------------------


FAKE_STATUS = """
import http.server, json, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"running": True, "pid": %d, "generation": 1, "version": "x",
                           "reload": {"attempts": 0, "ok": None, "error": None}}).encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args): pass
server = http.server.HTTPServer(("127.0.0.1", %d), Handler)
print("ready", flush=True)
server.serve_forever()
"""


def test_stop_and_reload_never_signal_a_pid_a_fake_status_listener_names(receiver, mallory, victim):
    agent = AgentUnderTest(receiver)
    trap = mallory.spawn(FAKE_STATUS % (victim.pid, agent.port))
    try:
        for command in ("stop", "reload", "status"):
            result = run([command, "--config", agent.config, "--json"])
            assert result.code == 69, (command, result)
            assert "not a doow-track process" in result.err and "no signal sent" in result.err
            assert result.json["pid"] is None
        top = run(["top", "--once", "--config", agent.config, "--interval", "0.1"])
        assert top.code == 69 and "not trusted: " in top.out and "not a doow-track process" in top.out, top
        assert "ready" not in top.out and "key" not in top.out, "none of the fake agent's figures are shown"
        for command in ("status", "stop", "reload", "top"):
            assert "69" in run([command, "--help"]).out, command
    finally:
        os.killpg(trap.pid, 9)
        trap.wait()
        agent.cleanup()


PLANTED_PIDFILE = """
import fcntl, os, time
fd = os.open(%r, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, b"%d\\n")
fcntl.flock(fd, fcntl.LOCK_EX)
print("ready", flush=True)
time.sleep(600)
"""


def test_a_pidfile_another_user_created_and_locks_is_refused_and_never_signalled(receiver, mallory, victim,
                                                                                  shared_dir):
    agent = AgentUnderTest(receiver, health=None)
    planted = os.path.join(shared_dir, "agent.pid")
    trap = mallory.spawn(PLANTED_PIDFILE % (planted, victim.pid))
    try:
        started = run(["--config", agent.config, "--pidfile", planted])
        assert started.code == 78, started
        assert planted in started.err and mallory.name in started.err
        for command in ("stop", "reload"):
            result = run([command, "--config", agent.config, "--pidfile", planted])
            assert result.code == 69, (command, result)
            assert planted in result.err and mallory.name in result.err and "no signal sent" in result.err
    finally:
        os.killpg(trap.pid, 9)
        trap.wait()
        agent.cleanup()


def test_the_real_agent_is_still_found_and_stopped_by_its_pidfile(make_agent):
    agent = make_agent(health=None)
    assert agent.start().code == 0
    pid = agent.pid
    stopped = agent.cli("stop", "--config", agent.config, "--pidfile", agent.pidfile, "--json")
    assert stopped.code == 0 and stopped.json == {"was_running": True, "stopped": True, "pid": pid}


# -- 2. and 3. files and directories that belong to someone else --------------------------------------------


def test_symlinks_and_foreign_files_are_never_written_through(receiver, mallory, shared_dir, victim_file):
    links = {name: os.path.join(shared_dir, name) for name in ("agent.pid", "agent.log", "outbox.ndjson")}
    script = "import os\n" + "".join(f"os.symlink({victim_file!r}, {path!r})\n" for path in links.values())
    script += f"open({os.path.join(shared_dir, 'theirs.ndjson')!r}, 'w').close()\n"
    script += f"os.chmod({os.path.join(shared_dir, 'theirs.ndjson')!r}, 0o666)\n"
    assert mallory.run(script).returncode == 0
    agent = AgentUnderTest(receiver)
    try:
        by_pidfile = run(["--config", agent.config, "--pidfile", links["agent.pid"]])
        assert by_pidfile.code == 78 and "symlink" in by_pidfile.err and mallory.name in by_pidfile.err
        agent.write_config(log={"file": links["agent.log"]})
        by_log = agent.start()
        assert by_log.code == 78 and "symlink" in by_log.err and links["agent.log"] in by_log.err
        assert agent.pid is None
    finally:
        agent.cleanup()
    for outbox, words in ((links["outbox.ndjson"], "symlink"), (os.path.join(shared_dir, "theirs.ndjson"),
                                                                 mallory.name)):
        piped = run(["--api-key", KEY, "--endpoint", receiver.url, "--outbox", outbox], stdin=lines(EVENT))
        assert piped.code == 78 and words in piped.err and outbox in piped.err, piped
    assert os.path.getsize(os.path.join(shared_dir, "theirs.ndjson")) == 0
    assert receiver.store.count() == 0, "refused before reading: nothing sent, nothing lost"


@pytest.mark.parametrize("section", ["socket", "spool", "log"])
def test_state_directories_another_user_controls_are_refused(receiver, mallory, shared_dir, section):
    theirs = os.path.join(shared_dir, "state")
    assert mallory.run(f"import os\nos.mkdir({theirs!r})\nos.chmod({theirs!r}, 0o777)\n"
                       f"open(os.path.join({theirs!r}, 'spool.sqlite3'), 'w').write('forged')\n").returncode == 0
    agent = AgentUnderTest(receiver)
    try:
        changes = {"socket": {"socket": {"path": os.path.join(theirs, "agent.sock")}},
                   "spool": {"spool": {"dir": theirs}},
                   "log": {"log": {"file": os.path.join(theirs, "agent.log"), "level": "debug"}}}[section]
        agent.write_config(**changes)
        refused = agent.start()
        assert refused.code == 78, refused
        assert theirs in refused.err and mallory.name in refused.err and "chown" in refused.err
        assert agent.pid is None and receiver.store.count() == 0
    finally:
        agent.cleanup()


def test_a_directory_others_can_write_without_the_sticky_bit_is_refused(make_agent):
    agent = make_agent()
    open_dir = os.path.join(agent.dir, "open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    agent.write_config(socket={"path": os.path.join(open_dir, "agent.sock")})
    refused = agent.start()
    assert refused.code == 78 and "writable by other users" in refused.err and f"chmod go-w {open_dir}" in refused.err


# -- 4. socket.group ---------------------------------------------------------------------------------------------


SEND = """
import socket
conn = socket.socket(socket.AF_UNIX)
conn.settimeout(30)
conn.connect(%r)
conn.sendall(%r.encode() + b"\\n")
print(conn.makefile().readline())
"""


def test_a_socket_group_member_sends_through_a_directory_the_agent_created(make_agent, receiver, producer_group):
    group, member = producer_group
    agent = make_agent()
    os.chmod(agent.dir, 0o755)
    path = os.path.join(agent.dir, "run", "doow-track", "agent.sock")
    agent.write_config(socket={"path": path, "mode": "0660", "group": group})
    assert agent.start().code == 0
    sent = member.run(SEND % (path, json.dumps(EVENT)))
    assert sent.returncode == 0, sent.stderr
    assert json.loads(sent.stdout)["ok"] is True
    wait_for(lambda: receiver.store.count() == 1, 30, "the member's event at the receiver")


# -- 5. and 6. the key -------------------------------------------------------------------------------------------


def test_config_errors_never_print_the_key_on_stderr_or_in_status(make_agent, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([KEY]))
    bad.chmod(0o600)
    for args in (["check", "--config", str(bad)], ["--config", str(bad)], ["status", "--config", str(bad)]):
        result = run(args, stdin=lines(EVENT))  # run() fails the test if the key shows anywhere
        assert result.code == 78 and "dk_…" in result.out + result.err, (args, result)
    agent = make_agent()
    assert agent.start().code == 0
    with open(agent.config, "w") as handle:
        handle.write(json.dumps([KEY]))
    refused = agent.cli("reload", "--config", agent.config, "--pidfile", agent.pidfile, "--json")
    assert refused.code == 78
    os.kill(agent.pid, 1)  # as `kill -HUP` would: the agent itself refuses and reports in /status
    wait_for(lambda: agent.status()["reload"]["attempts"] == 1, 10, "the refused reload")
    text = agent.get("/status")[1]
    assert KEY not in text and "dk_…" in json.loads(text)["reload"]["error"]


def test_a_key_in_the_default_attribution_is_refused_like_in_an_event(receiver):
    piped = run(["--endpoint", receiver.url], stdin=lines(EVENT),
                env={"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_ATTRIBUTION": json.dumps({"team": KEY})})
    assert piped.code == 78 and "DOOW_TRACK_ATTRIBUTION" in piped.err and "Doow SDK key" in piped.err
    flagged = run(["--api-key", KEY, "--endpoint", receiver.url, "--attribution", f"team=Bearer {KEY}"],
                  stdin=lines(EVENT))
    assert flagged.code == 78 and "--attribution" in flagged.err
    assert receiver.store.count() == 0


def test_pipe_mode_aborted_while_holding_the_key_writes_no_core(tmp_path, receiver):
    allow_cores = lambda: resource.setrlimit(resource.RLIMIT_CORE, (64 << 20, 64 << 20))  # noqa: E731
    piped = subprocess.Popen([BIN, "--endpoint", receiver.url], stdin=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             cwd=tmp_path, env=base_env({"DOOW_TRACK_API_KEY": KEY}), preexec_fn=allow_cores)
    try:
        wait_for(lambda: "Max core file size        0" in open(f"/proc/{piped.pid}/limits").read(), 20,
                 "core dumps turned off")
        os.kill(piped.pid, 6)  # SIGABRT: the default action dumps core
        _, status = os.waitpid(piped.pid, 0)
        piped.returncode = -6
    finally:
        piped.stdin.close()
    assert os.WIFSIGNALED(status) and not os.WCOREDUMP(status)
    assert not [name for name in os.listdir(tmp_path) if name.startswith("core")]


def test_config_and_key_files_others_control_are_refused_by_the_agent_and_warned_in_pipe_mode(
        receiver, mallory, tmp_path):
    agent = AgentUnderTest(receiver)
    try:
        for change, words in (((lambda: os.chmod(agent.config, 0o620)), "writable by other users"),
                              ((lambda: os.chown(agent.config, mallory.uid, -1)), mallory.name)):
            agent.write_config()
            os.chown(agent.config, 0, mallory.gid)
            change()
            refused = agent.start()
            assert refused.code == 78 and words in refused.err, refused
            warned = run(["check", "--config", agent.config])
            assert warned.code == 0 and words in warned.out
            piped = run(["--config", agent.config, "--dry-run"], stdin=lines(EVENT))
            assert piped.code == 0 and words in piped.err
        key_file = tmp_path / "key"
        key_file.write_text(KEY + "\n")
        key_file.chmod(0o644)
        del agent.settings["apiKey"]
        agent.write_config()
        by_agent = run(["--config", agent.config, "--pidfile", agent.pidfile, "--api-key-file", str(key_file)])
        assert by_agent.code == 78 and "readable by other users" in by_agent.err
        piped = run(["--api-key-file", str(key_file), "--endpoint", receiver.url], stdin=lines(EVENT))
        assert piped.code == 0 and "readable by other users" in piped.err
    finally:
        agent.cleanup()


# -- 8. configuration reads that hang or exhaust -----------------------------------------------------------------


def test_a_fifo_or_endless_config_neither_hangs_nor_exhausts(agent, tmp_path):
    os.unlink(agent.config)
    os.mkfifo(agent.config, 0o600)
    os.kill(agent.pid, 1)
    wait_for(lambda: agent.status()["reload"]["attempts"] == 1, 10, "the refused reload")
    assert "not a regular file" in agent.status()["reload"]["error"]
    assert agent.get("/healthz")[0] == 200 and agent.send([EVENT])[0]["ok"]
    for path, words in (("/dev/zero", "not a regular file"), (agent.config, "not a regular file")):
        started = time.monotonic()
        checked = run(["check", "--config", path], timeout=20)
        assert checked.code == 78 and words in checked.out and time.monotonic() - started < 15
    large = tmp_path / "large.json"
    large.write_text('{"attribution": {"pad": "' + "x" * (2 * 1024 * 1024) + '"}}')
    checked = run(["check", "--config", str(large)])
    assert checked.code == 78 and "larger than 1048576 bytes" in checked.out


# -- 7. idle connections and descriptor exhaustion ---------------------------------------------------------------


FLOOD = """
import socket, time
held = []
for _ in range(300):
    for family, address in ((socket.AF_UNIX, %r), (socket.AF_INET, ("127.0.0.1", %d))):
        s = socket.socket(family, socket.SOCK_STREAM)
        s.settimeout(2)
        try:
            s.connect(address)
            held.append(s)
        except OSError:
            s.close()
print("ready", flush=True)
time.sleep(600)
"""


def test_an_idle_connection_flood_at_a_low_descriptor_limit_does_not_stall_the_agent(make_agent, receiver, mallory):
    tcp_port = free_port()
    agent = make_agent(producers={"idleTimeout": 2000, "maxConnectionsPerSource": 40},
                       tcp={"listen": f"127.0.0.1:{tcp_port}"})
    agent.write_config(socket={"path": agent.socket, "mode": "0666"})
    os.chmod(agent.dir, 0o755)
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))  # noqa: E731
    started = subprocess.run([BIN, "--config", agent.config, "--pidfile", agent.pidfile], env=base_env(),
                             preexec_fn=limit, capture_output=True, text=True, timeout=60)
    assert started.returncode == 0, started.stderr
    flood = mallory.spawn(FLOOD % (agent.socket, tcp_port))
    try:
        began = time.monotonic()
        sent = agent.cli("send", "--socket", agent.socket, "--json", json.dumps(EVENT), timeout=30)
        assert sent.code == 0 and sent.json["accepted"] == 1
        assert agent.get("/healthz")[0] == 200 and time.monotonic() - began < 15
        time.sleep(3)  # past idleTimeout: mallory's connections are closed, not kept
        assert len(os.listdir(f"/proc/{agent.pid}/fd")) < 120
    finally:
        os.killpg(flood.pid, 9)
        flood.wait()
    log = agent.log()
    assert len(log) < 100_000 and "Traceback" not in log
    assert "maxConnectionsPerSource" in log


# -- 9. loopback by address, not by spelling -----------------------------------------------------------------


def test_a_name_that_looks_like_loopback_but_is_not_needs_a_token(make_agent, tmp_path):
    if subprocess.run(["unshare", "--mount", "true"], capture_output=True).returncode != 0:
        pytest.skip("unshare --mount is not permitted here")
    hosts = tmp_path / "hosts"
    hosts.write_text("0.0.0.0 127.0.0.1.example\n127.0.0.1 localhost\n")
    agent = make_agent(tcp={"listen": f"127.0.0.1.example:{free_port()}"})
    command = (f"mount --bind {hosts} /etc/hosts && exec {BIN} --config {agent.config} --pidfile {agent.pidfile}")
    started = subprocess.run(["unshare", "--mount", "sh", "-c", command], capture_output=True, text=True,
                             timeout=60, env=base_env())
    assert started.returncode == 78, started.stderr
    assert "not a loopback address (it resolves to 0.0.0.0)" in started.stderr


def test_a_health_listener_beyond_loopback_is_warned_about(make_agent):
    agent = make_agent()
    agent.write_config(health={"listen": f"0.0.0.0:{agent.port}"})
    assert agent.start().code == 0
    assert "health.listen 0.0.0.0" in agent.log() and "not a loopback address" in agent.log()


# -- 10. hostile answers -------------------------------------------------------------------------------------


def _gzip_zeros(size: int) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = b"\0" * (1024 * 1024)
    return b"".join(packer.compress(block) for _ in range(size // len(block))) + packer.flush()


class _Bomb(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(202)
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def bomb_server() -> Iterator[str]:
    _Bomb.body = _gzip_zeros(300 * 1024 * 1024)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bomb)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_gzip_bomb_answer_costs_no_memory(bomb_server):
    measure = ("import resource, subprocess, sys\n"
               "done = subprocess.run(sys.argv[1:], input=sys.stdin.buffer.read(), capture_output=True)\n"
               "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n")
    done = subprocess.run([PYTHON, "-c", measure, BIN, "--api-key", KEY, "--endpoint", bomb_server, "--json"],
                          input=lines(EVENT), capture_output=True, timeout=120, env=base_env())
    code, peak_kib = (int(word) for word in done.stdout.split())
    # 202 with a body that is no account of the events: never counted as delivered (retried, then outboxed).
    assert code == 75, done.stderr
    assert peak_kib < 100 * 1024, f"peak {peak_kib // 1024} MiB: the 300 MiB answer was inflated"


def test_retry_after_cannot_stretch_a_pipe_run_past_its_retry_budget(receiver, tmp_path):
    receiver.set_faults(Faults(fail_first=10**9, fail_status=503, retry_after=999999999))
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"retry": {"maxAttempts": 3, "initialDelay": 100, "maxDelay": 1000}}))
    began = time.monotonic()
    piped = run(["--config", str(config), "--api-key", KEY, "--endpoint", receiver.url,
                 "--outbox", str(tmp_path / "outbox.ndjson"), "--json"], stdin=lines(EVENT), timeout=120)
    assert piped.code == 75 and piped.json["outboxed"] == 1
    assert time.monotonic() - began < 20, "Retry-After was honoured past the run's retry budget"


# -- 11. the local receiver --------------------------------------------------------------------------------


def _exchange(url: str, raw: bytes, timeout: float = 30) -> bytes:
    host, port = url.rsplit("/", 1)[-1].split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as conn:
        conn.sendall(raw)
        chunks = []
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)


def test_the_receiver_refuses_smuggling_and_short_bodies_and_bounds_idle_connections(receiver):
    batch = json.dumps({"batch_id": "b1", "events": []}).encode()
    smuggled = (b"POST /telemetry/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode() +
                b"\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % len(batch) + batch)
    assert _exchange(receiver.url, smuggled).startswith(b"HTTP/1.1 400")
    began = time.monotonic()
    short = (b"POST /telemetry/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + batch)
    answer = _exchange(receiver.url, short)
    assert answer.startswith(b"HTTP/1.1 400") and b"incomplete_body" in answer
    assert time.monotonic() - began < IDLE_TIMEOUT_SECONDS + 5
    assert receiver.store.count() == 0
    threads = threading.active_count()
    host, port = receiver.url.rsplit("/", 1)[-1].split(":")
    idle = [socket.create_connection((host, int(port)), timeout=30) for _ in range(MAX_CONNECTIONS + 50)]
    try:
        time.sleep(0.5)
        assert threading.active_count() <= threads + MAX_CONNECTIONS + 1
        wait_for(lambda: all(_closed(conn) for conn in idle), IDLE_TIMEOUT_SECONDS + 10, "idle connections closed")
    finally:
        for conn in idle:
            conn.close()


def _closed(conn: socket.socket) -> bool:
    conn.setblocking(False)
    try:
        return conn.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


# -- 12. documented but refused -------------------------------------------------------------------------------


def test_health_null_disables_the_listener_and_ports_are_bounded(make_agent, tmp_path):
    agent = make_agent(health=None)
    assert agent.start().code == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", agent.port), timeout=2).close()
    assert agent.send([EVENT])[0]["ok"]
    for section in ({"tcp": {"listen": "127.0.0.1:70000"}}, {"health": {"listen": "127.0.0.1:0"}}):
        config = tmp_path / "ports.json"
        config.write_text(json.dumps(section))
        checked = run(["check", "--config", str(config), "--json"])
        assert checked.code == 78 and checked.json["errors"], section


# -- issue 19: every file a command writes, every file it reads, every socket it trusts ------------------------


def _empty_spool(directory: str) -> None:
    import asyncio
    from doow_track_agent.buffers.spool import Spool
    from doow_track_agent.stats import Stats

    async def make() -> None:
        spool = Spool(directory, 1 << 20, "normal", Stats())
        spool.open()
        await spool.close()
    asyncio.run(make())


def test_files_commands_write_are_never_written_through_another_users_symlink(receiver, mallory, shared_dir,
                                                                             victim_file, tmp_path):
    os.chmod(victim_file, 0o600)
    links = {name: os.path.join(shared_dir, name) for name in ("export.ndjson", "receiver.sqlite3")}
    assert mallory.run("import os\n" + "".join(f"os.symlink({victim_file!r}, {path!r})\n"
                                               for path in links.values())).returncode == 0
    agent = AgentUnderTest(receiver)
    try:
        _empty_spool(agent.settings["spool"]["dir"])
        exported = run(["deadletter", "export", "--config", agent.config, "--output", links["export.ndjson"]])
        assert exported.code == 78, exported
        assert links["export.ndjson"] in exported.err and mallory.name in exported.err
        served = run(["receiver", "serve", "--listen", "127.0.0.1:0", "--db", links["receiver.sqlite3"]], timeout=30)
        assert served.code == 78 and links["receiver.sqlite3"] in served.err and mallory.name in served.err, served
        mine = str(tmp_path / "mine.ndjson")
        assert run(["deadletter", "export", "--config", agent.config, "--output", mine]).code == 0
        assert os.stat(mine).st_mode & 0o077 == 0
    finally:
        agent.cleanup()


PATH_KEY = "dk_live_pasted_into_the_path_0042"


def test_endpoint_userinfo_is_refused_and_a_key_in_its_path_never_printed(receiver, tmp_path):
    with_password = receiver.url.replace("http://", "http://ops:hunter2pw@")
    config_file = tmp_path / "doow-track.json"
    config_file.write_text(json.dumps({"apiKey": KEY, "endpoint": with_password}))
    config_file.chmod(0o600)
    for how in (["--endpoint", with_password], ["--config", str(config_file)]):
        refused = run(["--api-key", KEY, *how], stdin=lines(EVENT), secrets=["hunter2pw"])
        assert refused.code == 78 and "user name or password" in refused.err and "***@" in refused.err, refused
    by_env = run(["check"], stdin=lines(EVENT), env={"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_ENDPOINT": with_password},
                 secrets=["hunter2pw"])
    assert by_env.code == 78, by_env
    outbox = str(tmp_path / "outbox.ndjson")
    piped = run(["--api-key", KEY, "--endpoint", f"{receiver.url}/{PATH_KEY}", "--outbox", outbox, "--verbose"],
                stdin=lines(EVENT), secrets=[PATH_KEY])
    assert piped.code != 0 and "re-send them with" in piped.err and "dk_…0042" in piped.err, piped
    doctor = run(["doctor", "--json"], env={"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_ENDPOINT":
                                            f"{receiver.url}/{PATH_KEY}"}, secrets=[PATH_KEY])
    assert "dk_…0042" in json.dumps(doctor.json, ensure_ascii=False), doctor


FAKE_SOCKET = """
import json, socket
server = socket.socket(socket.AF_UNIX)
server.bind(%r)
server.listen(8)
print("ready", flush=True)
while True:
    conn, _ = server.accept()
    for line in conn.makefile("rb"):
        conn.sendall(json.dumps({"ok": True, "event_id": "fake"}).encode() + b"\\n")
    conn.close()
"""


def test_send_and_deadletter_retry_refuse_a_socket_another_user_serves(receiver, mallory, shared_dir):
    planted = os.path.join(shared_dir, "agent.sock")
    trap = mallory.spawn(FAKE_SOCKET % planted)
    agent = AgentUnderTest(receiver, socket={"path": planted})
    try:
        sent = run(["send", "--socket", planted, json.dumps(EVENT)])
        assert sent.code == 69, sent
        assert planted in sent.err and mallory.name in sent.err and "nothing sent" in sent.err
        _empty_spool(agent.settings["spool"]["dir"])
        retried = run(["deadletter", "retry", "--config", agent.config, "--json"])
        assert retried.code == 69 and mallory.name in retried.out + retried.err, retried
    finally:
        os.killpg(trap.pid, 9)
        trap.wait()
        agent.cleanup()


def test_an_events_path_that_is_a_fifo_device_or_directory_neither_hangs_nor_exhausts(tmp_path):
    fifo = str(tmp_path / "events.fifo")
    os.mkfifo(fifo)
    for path in ("/dev/zero", fifo, str(tmp_path)):
        checked = run(["check", "--events", path], timeout=30)
        assert checked.code == 66 and f"cannot read {path}: not a regular file" in checked.err, checked
        doctor = run(["doctor", "--events", path, "--json"], timeout=30)
        events = next(c for c in doctor.json["checks"] if c["name"] == "events.file")
        assert doctor.code == 1 and events["status"] == "fail" and path in events["detail"], doctor
    tls_config = tmp_path / "tls.json"
    tls_config.write_text(json.dumps({"apiKey": KEY, "endpoint": "https://127.0.0.1:1", "tls": {"caFile": fifo}}))
    tls_config.chmod(0o600)
    piped = run(["--config", str(tls_config)], stdin=lines(EVENT), timeout=30)
    assert piped.code == 78 and f"tls.caFile: {fifo}" in piped.err and "not a regular file" in piped.err, piped
    served = run(["receiver", "--listen", "127.0.0.1:0", "--tls-cert", "/dev/zero", "--tls-key", fifo], timeout=30)
    assert served.code == 64 and "not a regular file" in served.err and "/dev/zero" in served.err, served


def test_the_file_tail_reads_only_files_the_agent_user_or_root_owns(make_agent, receiver, mallory, shared_dir,
                                                                     tmp_path):
    ids = {who: f"00000000-0000-4000-8000-00000000000{n}" for n, who in enumerate(("root", "mallory", "secret"))}
    line = {who: json.dumps(dict(EVENT, event_id=event_id)) + "\n" for who, event_id in ids.items()}
    with open(os.path.join(shared_dir, "root.jsonl"), "w") as handle:
        handle.write(line["root"])
    secret = str(tmp_path / "secret.jsonl")
    with open(secret, "w") as handle:
        handle.write(line["secret"])
    os.chmod(secret, 0o600)
    theirs, link = os.path.join(shared_dir, "mallory.jsonl"), os.path.join(shared_dir, "link.jsonl")
    assert mallory.run(f"open({theirs!r}, 'w').write({line['mallory']!r})\n"
                       f"import os\nos.symlink({secret!r}, {link!r})\n").returncode == 0
    agent = make_agent(input={"mode": "file", "path": os.path.join(shared_dir, "*.jsonl")})
    assert agent.start().code == 0
    wait_for(lambda: receiver.store.count() >= 1 and theirs in agent.log() and link in agent.log(), 30,
             "root's event delivered and both foreign files refused")
    log = agent.log()
    assert f"{theirs} belongs to {mallory.name}" in log and f"{link} is a symlink owned by {mallory.name}" in log
    assert log.count(f"{theirs} belongs to") == 1, "warned once, not once per poll"
    assert f"directory {shared_dir}" in log and "lets other users create files" in log
    assert receiver.store.event_ids() == {ids["root"]}
    checked = run(["check", "--config", agent.config, "--json"])
    assert any(shared_dir in item["message"] for item in checked.json["warnings"]), checked
    doctor = run(["doctor", "--config", agent.config, "--json"])
    inputs = next(c for c in doctor.json["checks"] if c["name"] == "config.input_files")
    assert inputs["status"] == "warn" and shared_dir in inputs["detail"]
