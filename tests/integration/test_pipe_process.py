"""Pipe mode as a process (issue 10): closed and failing output, signals and a rejected key with stdin
still open, a full disk, a read error, hostile answers.  Each asserts the exit status and what the
receiver stored: messages never decide delivery, and the status always tells the truth."""

from __future__ import annotations

import fcntl
import http.server
import json
import os
import signal
import socket
import struct
import termios
import subprocess
import threading
import time
from typing import Iterator, List, Tuple

import pytest

from doow_track_agent.receiver.server import Receiver
from tests.support.cli import BIN, KEY, base_env, catches, lines, run

EVENT = {"metric": "api_calls", "quantity": 1, "license_id": "lic_proc"}
THREE = (lines(EVENT) + b'{"metric":"m","quantity":1,"license_id":"lic_1","timestamp":"0001-01-01T00:00:00+01:00"}\n'
         + lines(EVENT))


def pipe_args(receiver: Receiver, tmp_path, *extra: str) -> List[str]:
    return ["--api-key", KEY, "--endpoint", receiver.url, "--outbox", str(tmp_path / "outbox.ndjson"),
            "--rejects", str(tmp_path / "rejects.ndjson"), *extra]


def fast_retries(tmp_path, attempts: int) -> List[str]:
    """A config file that gives up after ``attempts`` quick tries."""
    path = tmp_path / "retry.json"
    path.write_text(json.dumps({"retry": {"maxAttempts": attempts, "initialDelay": 10, "maxDelay": 50}}))
    return ["--config", str(path)]


def spawn(args: List[str], stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=None) -> subprocess.Popen:
    return subprocess.Popen([BIN, *args], stdin=stdin, stdout=stdout, stderr=stderr, env=base_env(env))


def test_an_out_of_range_timestamp_is_one_invalid_line_between_delivered_neighbours(receiver, tmp_path):
    result = run(pipe_args(receiver, tmp_path), stdin=THREE)
    assert result.code == 65, result.err
    assert "stdin:2: $.timestamp:" in result.err and "out of range" in result.err
    assert receiver.store.count() == 2


@pytest.mark.parametrize("redirect", ["stderr_closed", "stderr_closed_quiet", "stdout_closed", "stdout_full",
                                      "stdout_broken_pipe"])
def test_where_messages_go_never_changes_delivery_or_the_status(receiver, tmp_path, redirect):
    args = pipe_args(receiver, tmp_path, "--json") + (["--quiet"] if redirect.endswith("quiet") else [])
    read_end, write_end = os.pipe()
    os.close(read_end)  # a reader that went away: EPIPE
    streams = {"stderr_closed": {"stderr": None}, "stderr_closed_quiet": {"stderr": None},
               "stdout_closed": {"stdout": None}, "stdout_full": {"stdout": open("/dev/full", "w")},
               "stdout_broken_pipe": {"stdout": write_end}}[redirect]
    target = "stderr" if redirect.startswith("stderr") else "stdout"
    # Popen cannot close a standard descriptor by itself: close it in the child before exec.
    closing = streams[target] is None
    kwargs = {"stdin": subprocess.PIPE, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    if not closing:
        kwargs[target] = streams[target]
    fd = 1 if target == "stdout" else 2
    child = subprocess.Popen([BIN, *args], env=base_env(), preexec_fn=(lambda: os.close(fd)) if closing else None,
                             **kwargs)
    child.communicate(lines(EVENT, EVENT), timeout=60)
    os.close(write_end)
    assert child.returncode == 0
    assert receiver.store.count() == 2


def fifo_writer(path: str, data: bytes, hold: float) -> threading.Thread:
    """A producer that writes ``data`` and keeps the FIFO open for ``hold`` seconds."""
    def write() -> None:
        with open(path, "wb") as handle:
            handle.write(data)
            handle.flush()
            time.sleep(hold)
    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_with_stdin_still_open_exits_75_without_an_abort(receiver, tmp_path, signum):
    fifo = str(tmp_path / "in.fifo")
    os.mkfifo(fifo)
    writer = fifo_writer(fifo, lines(EVENT), hold=4)
    with open(fifo, "rb") as stdin:
        child = spawn(pipe_args(receiver, tmp_path, "--flush-at", "1"), stdin)
    deadline = time.monotonic() + 20
    while receiver.store.count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    child.send_signal(signum)
    _, err = child.communicate(timeout=30)
    writer.join()
    assert child.returncode == 75, err
    assert b"Fatal Python error" not in err and b"interrupted by" in err
    assert receiver.store.count() == 1


def test_a_rejected_key_with_stdin_still_open_exits_77_with_the_outbox_written(tmp_path):
    fifo = str(tmp_path / "in.fifo")
    os.mkfifo(fifo)
    writer = fifo_writer(fifo, lines(EVENT, EVENT), hold=3)
    with Receiver(str(tmp_path / "r.sqlite"), keys=["dk_only_this_one_is_valid"]).start() as receiver:
        with open(fifo, "rb") as stdin:
            child = spawn(pipe_args(receiver, tmp_path, "--flush-at", "1"), stdin)
        _, err = child.communicate(timeout=30)
        assert receiver.store.count() == 0
    writer.join()
    assert child.returncode == 77, err
    assert b"Fatal Python error" not in err
    with open(tmp_path / "outbox.ndjson", "rb") as handle:
        assert len(handle.read().splitlines()) == 2


def test_a_read_error_on_stdin_is_an_interruption_not_an_end(receiver, tmp_path):
    """stdin is a TCP connection that the peer resets after one line: read() fails with ECONNRESET."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        peer = socket.create_connection(server.getsockname())
        stdin, _ = server.accept()
    child = spawn(pipe_args(receiver, tmp_path, "--flush-at", "1"), stdin)
    stdin.close()
    peer.sendall(lines(EVENT))
    deadline = time.monotonic() + 20
    while receiver.store.count() < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    peer.close()  # RST
    _, err = child.communicate(timeout=30)
    assert child.returncode == 75, err
    assert b"reading failed" in err and b"after line 1" in err
    assert receiver.store.count() == 1


@pytest.fixture
def small_disk(tmp_path) -> Iterator[str]:
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield str(mount)
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_while_writing_the_outbox_is_reported_line_by_line(small_disk, free_port, tmp_path):
    outbox = os.path.join(small_disk, "outbox.ndjson")
    count = 3000
    result = run(["--api-key", KEY, "--endpoint", f"http://127.0.0.1:{free_port}", "--outbox", outbox,
                  "--json", "--flush-at", "500", *fast_retries(tmp_path, 1)], stdin=lines(*[EVENT] * count))
    assert result.code == 75, result.err
    summary = result.json
    with open(outbox, "rb") as handle:
        saved = handle.read()
    assert saved.endswith(b"\n")
    assert all(json.loads(line)["event_id"] for line in saved.splitlines())  # whole lines only
    assert summary["outboxed"] == len(saved.splitlines()) > 0
    assert summary["outboxed"] + summary["unwritten"] == count
    assert "could not be written to the outbox" in result.err and "re-send input lines" in result.err
    named = sum(last - first + 1 for first, last in summary["unwritten_lines"])
    assert named == summary["unwritten"]


class Hostile(http.server.BaseHTTPRequestHandler):
    """Answers every POST with the class's (status, headers, body)."""

    answer: Tuple[int, dict, bytes] = (200, {}, b"")
    posts: List[str] = []

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        Hostile.posts.append(self.headers.get("Authorization", ""))
        status, headers, body = self.answer
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hostile() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    Hostile.posts = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("answer,said", [
    ((207, {}, b'{"accepted":0,"rejected":1,"rejections":[{"event_id":"not-sent","reason":"x"}]}'), "not sent"),
    ((207, {}, b"<html>oops</html>"), "not a JSON object"),
    ((207, {}, b'{"accepted":0,"rejected":5}'), "counts 5 rejected"),
    ((200, {"Content-Type": "text/html"}, b"<html><body>Welcome to nginx!</body></html>"), "text/html"),
    ((202, {}, b'{"accepted":0,"rejected":1}'), "counts 1 rejected"),
    ((202, {}, b'{"accepted":-1,"rejected":5}'), "counts 5 rejected event(s) but gives reasons for 0"),
    ((207, {}, b'{"rejected":0,"rejections":[],"accepted":0}'), "0 accepted and 0 rejected of 5"),
])
def test_an_answer_that_does_not_account_for_the_events_is_no_delivery(hostile, tmp_path, answer, said):
    Hostile.answer = answer
    result = run(["--api-key", KEY, "--endpoint", hostile, "--outbox", str(tmp_path / "o.ndjson"), "--json",
                  *fast_retries(tmp_path, 2)], stdin=lines(*[EVENT] * 5))
    assert result.code == 75, result.err
    assert result.json["delivered"] == 0 and result.json["outboxed"] == 5
    assert said in result.err


def test_a_redirect_keeps_the_events_names_the_location_and_never_follows(hostile, tmp_path):
    Hostile.answer = (301, {"Location": "https://elsewhere.example/telemetry/events"}, b"")
    result = run(["--api-key", KEY, "--endpoint", hostile, "--outbox", str(tmp_path / "o.ndjson"), "--json"],
                 stdin=lines(*[EVENT] * 3))
    assert result.code == 75, result.err
    assert result.json["outboxed"] == 3 and result.json["rejected"] == 0
    assert "https://elsewhere.example/telemetry/events" in result.err
    assert len(Hostile.posts) == 1


@pytest.mark.parametrize("endpoint,said", [
    ("http://127.0.0.1:99999", "out of range"), ("http://127.0.0.1:-1", "out of range"),
    ("http://xn--zz", "xn--zz"), ("http://127.0.0.1:18110:1", "18110:1"), ("http://[::1", "[::1"),
    ("https://a..example", "a..example"), ("http://127.0.0.1:8080/prefix?x=1", "query string"),
])
def test_an_unusable_endpoint_is_refused_at_configuration_time(endpoint, said):
    result = run(["--api-key", KEY, "--endpoint", endpoint], stdin=lines(EVENT))
    assert result.code == 78 and "--endpoint" in result.err and said in result.err


def test_re_running_the_same_input_under_a_run_id_bills_nothing_twice(receiver, tmp_path):
    data = lines(EVENT, {**EVENT, "quantity": 2}, EVENT)
    for _ in range(2):
        assert run(pipe_args(receiver, tmp_path, "--run-id", "nightly-2026-11-29"), stdin=data).code == 0
    assert receiver.store.count() == 3 and receiver.store.duplicates() == 3


def unread(stdin) -> int:
    """Bytes written to the child's stdin pipe that it has not read yet."""
    return struct.unpack("i", fcntl.ioctl(stdin.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGUSR2, signal.SIGQUIT, signal.SIGRTMIN + 1])
def test_every_signal_that_would_kill_the_run_outboxes_what_was_read_like_sigterm(free_port, tmp_path, signum):
    outbox = tmp_path / "outbox.ndjson"
    quick_stop = tmp_path / "stop.json"
    quick_stop.write_text(json.dumps({"shutdownTimeout": 300}))
    child = spawn(["--api-key", KEY, "--endpoint", f"http://127.0.0.1:{free_port}", "--outbox", str(outbox),
                   "--config", str(quick_stop), "--flush-interval", "100000", "--json"], subprocess.PIPE)
    child.stdin.write(lines(EVENT, EVENT, EVENT))
    child.stdin.flush()
    deadline = time.monotonic() + 20
    while (unread(child.stdin) or not catches(child.pid, signum)) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # read is not yet judged: let intake take the block
    child.send_signal(signum)
    out, err = child.communicate(timeout=30)  # closes stdin only now, after the signal
    assert child.returncode == 75, err
    summary = json.loads(out)
    assert summary["outboxed"] == 3 and summary["lines_read"] == 3, err
    assert summary["interrupted"].startswith("interrupted by SIG"), summary
    assert len(outbox.read_bytes().splitlines()) == 3


def test_a_signal_during_start_up_is_acted_on_not_fatal(free_port, tmp_path):
    """Sent the moment the first handler is in place, before the imports and the settings are done."""
    child = spawn(["--api-key", KEY, "--endpoint", f"http://127.0.0.1:{free_port}",
                   "--outbox", str(tmp_path / "outbox.ndjson"), "--json"], subprocess.PIPE)
    deadline = time.monotonic() + 20
    while not catches(child.pid, signal.SIGHUP) and time.monotonic() < deadline:
        time.sleep(0.002)
    child.send_signal(signal.SIGHUP)
    out, err = child.communicate(lines(EVENT), timeout=30)
    assert child.returncode == 75, err
    assert json.loads(out)["interrupted"] == "interrupted by SIGHUP"


def test_an_event_id_reused_for_other_content_is_invalid_and_a_repeated_line_is_sent_once(receiver, tmp_path):
    first = {**EVENT, "event_id": "ev-1"}
    data = lines(first, {**EVENT, "quantity": 7, "event_id": "ev-1"}, first, {**EVENT, "event_id": "ev-2"})
    result = run(pipe_args(receiver, tmp_path, "--json"), stdin=data)
    assert result.code == 65, result.err
    assert "stdin:2: $.event_id:" in result.err and "already used by line 1" in result.err
    assert "stdin:3: duplicate of line 1" in result.err
    summary = result.json
    assert (summary["delivered"], summary["invalid"], summary["duplicates"]) == (2, 1, 1)
    assert receiver.store.count() == 2 and receiver.store.stats()["duplicates"] == 0


def test_the_summary_shows_what_the_api_already_had(receiver, tmp_path):
    data = lines({**EVENT, "event_id": "again-1"}, {**EVENT, "event_id": "again-2"})
    assert run(pipe_args(receiver, tmp_path), stdin=data).code == 0
    result = run(pipe_args(receiver, tmp_path, "--json"), stdin=data)
    assert result.code == 0, result.err
    assert result.json["server_duplicates"] == 2
    assert "the API already had 2 of the delivered" in result.err
    assert receiver.store.count() == 2


@pytest.mark.parametrize("args", [["--config", "{dir}"], ["--api-key-file", "{dir}"], ["check", "--config", "{dir}"],
                                  ["status", "--config", "{dir}"], ["send", "--config", "{dir}", "{{}}"]])
def test_a_directory_where_a_file_belongs_is_a_configuration_error_naming_it(tmp_path, args):
    result = run([arg.format(dir=tmp_path) for arg in args], stdin=lines(EVENT))
    assert result.code == 78, result.err
    assert f"{tmp_path}: is a directory" in result.out + result.err and "internal error" not in result.err


@pytest.mark.parametrize("content", ["", "\n", "  \ndk_on_the_second_line_0001\n"])
@pytest.mark.parametrize("source", ["--api-key-file", "DOOW_TRACK_API_KEY_FILE"])
def test_a_key_file_whose_first_line_is_empty_is_named_as_such(receiver, tmp_path, content, source):
    key_file = tmp_path / "key"
    key_file.write_text(content)
    flag, env = (["--api-key-file", str(key_file)], {}) if source.startswith("--") else \
        ([], {"DOOW_TRACK_API_KEY_FILE": str(key_file)})
    result = run([*flag, "--endpoint", receiver.url], stdin=lines(EVENT), env=env)
    assert result.code == 78, result.err
    assert f"{source}: {key_file}: its first line is empty" in result.err
    assert "--api-key:" not in result.err and receiver.store.count() == 0


@pytest.mark.parametrize("flag", ["--outbox", "--rejects"])
@pytest.mark.parametrize("path", ["/dev/null", "/dev/full", "{dir}"])
def test_an_outbox_or_rejects_path_that_is_not_a_regular_file_is_refused_before_reading(receiver, tmp_path, flag,
                                                                                       path):
    path = path.format(dir=tmp_path)
    result = run(["--api-key", KEY, "--endpoint", receiver.url, flag, path], stdin=lines(EVENT))
    assert result.code == 78, result.err
    assert path in result.err and "nothing was read or sent" in result.err
    assert receiver.store.count() == 0


def test_send_with_no_agent_says_nothing_was_sent_naming_the_socket(tmp_path):
    socket_path = str(tmp_path / "none.sock")
    result = run(["send", "--socket", socket_path], stdin=lines(EVENT))
    assert result.code == 69, result.err
    assert f"no agent listening at {socket_path}" in result.err and "nothing sent" in result.err
    assert "line None" not in result.out + result.err and "0 of 0" not in result.out + result.err


def test_a_request_left_hanging_at_the_shutdown_deadline_does_not_hold_the_exit(tmp_path):
    """The endpoint takes the request and never answers; a stop signal ends the run at shutdownTimeout,
    not at the request timeout (60 s): the exchange is abandoned, its events outboxed."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: List[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    outbox = tmp_path / "outbox.ndjson"
    settings = tmp_path / "slow.json"
    settings.write_text(json.dumps({"shutdownTimeout": 300, "timeout": 60000}))
    child = spawn(["--api-key", KEY, "--endpoint", f"http://127.0.0.1:{listener.getsockname()[1]}",
                   "--outbox", str(outbox), "--config", str(settings), "--json"], subprocess.PIPE)
    try:
        child.stdin.write(lines(EVENT, EVENT))
        child.stdin.close()
        deadline = time.monotonic() + 20
        while not accepted and time.monotonic() < deadline:
            time.sleep(0.05)
        assert accepted, "the request never reached the endpoint"
        time.sleep(0.2)  # the request is sent and waits for its answer
        stopped = time.monotonic()
        child.send_signal(signal.SIGTERM)
        out = child.stdout.read()
        child.wait(timeout=30)
        took = time.monotonic() - stopped
    finally:
        child.kill()
        listener.close()
    assert child.returncode == 75, child.stderr.read()
    assert took < 10, f"exit took {took:.1f}s after SIGTERM: the hanging request held it"
    assert json.loads(out)["outboxed"] == 2 and len(outbox.read_bytes().splitlines()) == 2


class _DrippingServer:
    """Reads each request, then answers a byte every 0.2 s: each read gets data in time, the answer never ends."""

    def __init__(self, answer: bytes) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.answer = answer
        self.requests = 0
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._drip, args=(connection,), daemon=True).start()

    def _drip(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(1 << 20)
            self.requests += 1
            for byte in self.answer:
                if self._stop.wait(0.2):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return

    def close(self) -> None:
        self._stop.set()
        self.listener.close()


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 202 Accepted\r\n" + b"X-Slow: 1\r\n" * 1000,  # headers a byte at a time
    b"HTTP/1.1 202 Accepted\r\nContent-Length: 100000\r\n\r\n" + b" " * 100000,  # a body a byte at a time
])
def test_an_answer_sent_a_byte_at_a_time_cannot_hold_the_run(tmp_path, answer):
    """Each read gets its byte within timeout, so only a bound on the whole request ends it: 3 x timeout per
    attempt, then the run's retry budget; the events go to the outbox (75), none is lost."""
    server = _DrippingServer(answer)
    settings = tmp_path / "slow.json"
    settings.write_text(json.dumps({"timeout": 500, "retry": {"maxAttempts": 2, "initialDelay": 10, "maxDelay": 50}}))
    started = time.monotonic()
    try:
        result = run(["--api-key", KEY, "--endpoint", server.url, "--outbox", str(tmp_path / "outbox.ndjson"),
                      "--config", str(settings), "--json"], stdin=lines(EVENT, EVENT, EVENT), timeout=60)
    finally:
        server.close()
    took = time.monotonic() - started
    assert result.code == 75, result.err
    assert result.json["outboxed"] == 3 and result.json["delivered"] == 0 and server.requests == 2
    assert "no whole answer within 1.5s" in result.err and took < 20, (took, result.err)
    assert len((tmp_path / "outbox.ndjson").read_bytes().splitlines()) == 3
