"""The official Node CLI's flags, config keys and settings mean the same here (docs/guide.md, "Coming from
the Node CLI"), and the outbox hint re-sends with the key's own source: real processes, the real receiver."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess

import pytest

from tests.support import cli
from tests.support.agent import wait_for
from tests.support.cli import KEY, lines

EVENT = {"metric": "api_calls", "quantity": 1, "license_id": "lic_abc123"}


def _config(tmp_path, **keys) -> str:
    path = tmp_path / "node.json"
    path.write_text(json.dumps(keys))
    path.chmod(0o600)
    return str(path)


def test_official_short_flags(receiver, tmp_path):
    version = cli.run(["-v"])
    assert version.code == 0 and version.out.startswith("doow-track ")
    assert "-c FILE, --config FILE" in cli.run(["-h"]).out
    config = _config(tmp_path, endpoint=receiver.url, flush_interval=100)
    sent = cli.run(["-c", config, "-k", KEY], stdin=lines(EVENT), env={"HOME": str(tmp_path)})
    assert sent.code == 0, sent.err
    assert receiver.store.count() == 1
    for command in (["check", "-c", config], ["doctor", "-c", config, "-k", KEY, "--timeout", "1"]):
        assert "unrecognized arguments" not in cli.run(command).err


@pytest.mark.parametrize("layer", ["file", "environment"])
def test_debug_and_disabled_keys(receiver, tmp_path, layer):
    env = {"HOME": str(tmp_path), "DOOW_TRACK_ENDPOINT": receiver.url}
    keys = {"api_key": KEY, "flush_interval": 100}
    if layer == "file":
        keys.update(debug=True, disabled=True)
    else:
        env.update(DOOW_TRACK_DEBUG="true", DOOW_TRACK_DISABLED="true")
    config = _config(tmp_path, **keys)
    run = cli.run(["-c", config], stdin=lines(EVENT), env=env)
    assert run.code == 0 and "nothing is sent" in run.err
    assert receiver.store.count() == 0
    agent = cli.run(["-c", config, "--pidfile", str(tmp_path / "a.pid")], env=env)
    assert agent.code == 78 and "disabled" in agent.err
    debug = cli.run(["-c", _config(tmp_path, api_key=KEY, debug=layer == "file", flush_interval=100)],
                    stdin=lines(EVENT), env={**env, "DOOW_TRACK_DISABLED": "false"})
    assert debug.code == 0 and receiver.store.count() == 1 and "202" in debug.err


def test_a_flag_not_true_or_false_is_named(tmp_path):
    run = cli.run(["--dry-run"], stdin=lines(EVENT), env={"DOOW_TRACK_DISABLED": "sometimes"})
    assert run.code == 78 and "DOOW_TRACK_DISABLED" in run.err


def test_input_tcp_without_pidfile_runs_the_agent_attached(receiver, tmp_path, free_port):
    config = _config(tmp_path, api_key=KEY, endpoint=receiver.url, flush_interval=100,
                     input={"mode": "tcp", "port": free_port}, socket={"path": str(tmp_path / "s.sock")},
                     spool={"dir": str(tmp_path / "spool")}, health={"listen": None})
    agent = subprocess.Popen([cli.BIN, "-c", config], env=cli.base_env({"HOME": str(tmp_path)}),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: _connects(free_port), 30, "the agent's input.port")
        with socket.create_connection(("127.0.0.1", free_port), timeout=30) as producer:
            producer.sendall(lines(EVENT))
            assert json.loads(producer.makefile("rb").readline())["ok"] is True
        assert agent.poll() is None, "the agent must stay attached, as the Node CLI's daemon mode does"
    finally:
        agent.terminate()
        _, err = agent.communicate(timeout=30)
    assert agent.returncode == 0, err.decode()
    assert receiver.store.count() == 1
    assert KEY not in err.decode()


def _connects(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.mark.parametrize("source", ["--api-key", "--api-key-file", "DOOW_TRACK_API_KEY", "DOOW_TRACK_API_KEY_FILE",
                                    "config file", "--api-key over DOOW_TRACK_API_KEY_FILE"])
def test_the_resend_hint_reproduces_the_runs_key_source(tmp_path, free_port, source):
    key_file = tmp_path / "key file"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    keys = {"apiKey": KEY} if source == "config file" else {}
    config = _config(tmp_path, retry={"maxAttempts": 1}, **keys)
    args, env = {"--api-key": (["--api-key", KEY], {}),
                 "--api-key-file": (["--api-key-file", str(key_file)], {}),
                 "DOOW_TRACK_API_KEY": ([], {"DOOW_TRACK_API_KEY": KEY}),
                 "DOOW_TRACK_API_KEY_FILE": ([], {"DOOW_TRACK_API_KEY_FILE": str(key_file)}),
                 "config file": ([], {}),
                 "--api-key over DOOW_TRACK_API_KEY_FILE": (["--api-key", KEY],
                                                            {"DOOW_TRACK_API_KEY_FILE": str(key_file)})}[source]
    endpoint = f"http://127.0.0.1:{free_port}"  # nothing listens: the run outboxes
    outbox = tmp_path / "out.ndjson"
    run = cli.run([*args, "-c", config, "--endpoint", endpoint, "--outbox", str(outbox)], stdin=lines(EVENT),
                  env={"HOME": str(tmp_path), **env})
    assert run.code == 75, run.err
    hint = re.search(r"re-send them with: (.*)", run.err).group(1)
    words = shlex.split(hint.rpartition(" < ")[0])
    assert hint.endswith(f" < {outbox}") and words[words.index("--config") + 1] == config
    given = {"--api-key-file": words[words.index("--api-key-file") + 1] if "--api-key-file" in words else None,
             **dict(word.split("=", 1) for word in words if "=" in word)}
    expected = {"--api-key-file": {"--api-key-file": str(key_file)},
                "DOOW_TRACK_API_KEY_FILE": {"DOOW_TRACK_API_KEY_FILE": str(key_file)},
                "config file": {}}.get(source, {"DOOW_TRACK_API_KEY": "..."})
    assert {name: value for name, value in given.items() if value} == expected, hint
    # The hint's command, the key filled in where it says "...", runs with a key: it fails to reach the
    # endpoint (75), not for want of a key (78).
    filled = {name: KEY if value == "..." else value for name, value in expected.items() if name.startswith("DOOW_")}
    again = cli.run(words[words.index("doow-track") + 1:], stdin=outbox.read_bytes(),
                    env={"HOME": str(tmp_path), **filled})
    assert again.code == 75, again.err


@pytest.mark.parametrize("proxy", ["http://127.0.0.1:{port}", "http://user:proxy-secret@127.0.0.1:{port}", "off",
                                   " http://user:proxy-secret@127.0.0.1:{port}"])
def test_outbox_hint_resends_through_the_runs_proxy_without_its_password(tmp_path, free_port, proxy):
    proxy = proxy.format(port=free_port)  # nothing listens there: the run outboxes
    endpoint = f"http://127.0.0.1:{free_port}"
    config = _config(tmp_path, retry={"maxAttempts": 1})
    run = cli.run(["--api-key", KEY, "-c", config, "--endpoint", endpoint, "--proxy", proxy,
                   "--outbox", str(tmp_path / "out.ndjson")], stdin=lines(EVENT), env={"HOME": str(tmp_path)},
                  timeout=120)
    assert run.code == 75, run.err
    hint = re.search(r"re-send them with: (.*)", run.err).group(1)
    shown = shlex.quote(proxy.strip().replace("user:proxy-secret@", "***@"))  # the hint is shell-quoted
    assert f"--endpoint {endpoint} --proxy {shown} <" in hint
    assert "proxy-secret" not in run.err
