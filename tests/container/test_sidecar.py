"""The image from scripts/build-image, run by rootful podman against the real receiver on the host.

One image per run (module fixture); every container uses host networking so
that it reaches the receiver on 127.0.0.1 and the test reaches its TCP and
health listeners on 127.0.0.1 (DOOW_TRACK_HEALTH_LISTEN keeps health off the
image's 0.0.0.0). Skipped, with the reason, where podman cannot run containers.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.error
import urllib.request
from typing import Dict, Iterator, List

import pytest
import yaml

from doow_track_agent.receiver.faults import Faults
from doow_track_agent.receiver.server import Receiver
from tests.support import podman as support
from tests.support.agent import Producer, fail_receiver, free_port, heal_receiver, wait_for
from tests.support.cli import KEY

TAG = "localhost/doow-track:test"
TOKEN = "tcp-token-for-the-container-tests"
UID = "10001"
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def podman() -> Iterator[support.Podman]:
    try:
        engine = support.start()
    except support.Unavailable as why:
        pytest.skip(str(why))
    try:
        try:
            base = support.import_base(engine)
        except support.Unavailable as why:
            pytest.skip(str(why))
        support.build_image(engine, base, TAG)
        yield engine
    finally:
        engine.cleanup()


def event(n: int, license_id: str = "lic_container") -> dict:
    return {"metric": "tokens", "quantity": n + 1, "license_id": license_id}


def official_env(receiver: Receiver, tcp_port: int, health_port: int) -> Dict[str, str]:
    """The official sidecar's variables, plus a token and a loopback health host (host networking)."""
    return {"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_ENDPOINT": receiver.url, "DOOW_TRACK_INPUT": f"tcp:{tcp_port}",
            "DOOW_TRACK_HEALTH_PORT": str(health_port), "DOOW_TRACK_HEALTH_LISTEN": "127.0.0.1:9090",
            "DOOW_TRACK_TCP_TOKEN": TOKEN}


def env_args(env: Dict[str, str]) -> List[str]:
    return [arg for name, value in env.items() for arg in ("--env", f"{name}={value}")]


def run_agent(podman: support.Podman, name: str, env: Dict[str, str], *mounts: str) -> None:
    """A detached sidecar: read-only root, host network, and whatever volumes the test mounts."""
    podman("run", "--detach", "--name", name, "--network", "host", "--read-only", *env_args(env),
           *[arg for mount in mounts for arg in ("--volume", mount)], TAG)


def health(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as reply:
            return reply.status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def send_tcp(port: int, events: List[dict], token: str = TOKEN) -> List[dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(token.encode() + b"\n" + b"".join(json.dumps(e).encode() + b"\n" for e in events))
        replies = conn.makefile("rb")
        return [json.loads(replies.readline()) for _ in events]


def logs(podman: support.Podman, name: str) -> str:
    done = podman("logs", name)
    text = (done.stdout + done.stderr).decode(errors="replace")
    assert KEY not in text, "the API key leaked into the container's log"
    return text


def exit_code(podman: support.Podman, name: str) -> int:
    return int(podman.out("inspect", "--format", "{{.State.ExitCode}}", name))


def test_image_runs_as_non_root_without_package_manager_or_compiler(podman):
    config = json.loads(podman.out("image", "inspect", TAG))[0]["Config"]
    assert config["User"] == f"{UID}:{UID}"
    script = ("id -u; for t in apt apt-get dpkg pip pip3 gcc cc c++ clang; do command -v $t; done; "
              "python3 -c 'import pip' 2>/dev/null && echo pip-module; doow-track --version")
    out = podman.out("run", "--rm", "--read-only", "--entrypoint", "/bin/sh", TAG, "-c", script).splitlines()
    assert out[0] == UID and out[-1].startswith("doow-track ") and len(out) == 2, out


def test_official_environment_tcp_with_token_and_socket_on_a_volume(podman, receiver, tmp_path):
    tcp_port, health_port = free_port(), free_port()
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    os.chown(sockets, int(UID), int(UID))
    name = f"dt-tcp-{os.getpid()}"
    run_agent(podman, name, {**official_env(receiver, tcp_port, health_port), "DOOW_TRACK_FLUSH_INTERVAL": "200",
                             "DOOW_TRACK_LOG_FORMAT": "json"}, f"{sockets}:/run/doow-track")
    wait_for(lambda: health(health_port, "/readyz") == 200, 30, "the sidecar to be ready")
    assert health(health_port, "/healthz") == 200

    refused = send_tcp(tcp_port, [event(0)], token="not-the-token-at-all")
    assert refused[0]["ok"] is False and refused[0]["kind"] == "auth"
    over_tcp = send_tcp(tcp_port, [event(n) for n in range(5)])
    producer = Producer(str(sockets / "doow-track.sock"))
    try:
        over_socket = producer.send([event(n, "lic_socket") for n in range(5)])
    finally:
        producer.close()
    acked = {reply["event_id"] for reply in over_tcp + over_socket if reply["ok"]}
    assert len(acked) == 10
    wait_for(lambda: acked <= receiver.store.event_ids(), 30, "the events to arrive")

    assert podman.out("exec", name, "id", "-u") == UID
    podman("exec", name, "sh", "-c", "sleep 0.2 & exit 0")  # the sleep is orphaned to PID 1: the agent
    time.sleep(1.0)
    assert support.zombies(podman, name) == [], "the agent as PID 1 left an orphan unreaped"
    podman("stop", "--time", "30", name)
    assert exit_code(podman, name) == 0
    lines = [line for line in logs(podman, name).splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # DOOW_TRACK_LOG_FORMAT=json: every line is one object
    assert records[0]["pid"] == 1 and any("received SIGTERM" in r["msg"] for r in records)


def test_stop_drains_to_a_slow_receiver_and_exits_0(podman, receiver):
    tcp_port, health_port = free_port(), free_port()
    name = f"dt-drain-{os.getpid()}"
    # Nothing is sent before the stop (60 s interval, 20 per batch); each request then takes 1.5 s.
    run_agent(podman, name, {**official_env(receiver, tcp_port, health_port), "DOOW_TRACK_FLUSH_INTERVAL": "60000",
                             "DOOW_TRACK_SHUTDOWN_TIMEOUT": "20000"})
    wait_for(lambda: health(health_port, "/readyz") == 200, 30, "the sidecar to be ready")
    receiver.set_faults(Faults(latency_ms=1500))
    replies = send_tcp(tcp_port, [event(n) for n in range(45)])
    acked = {reply["event_id"] for reply in replies if reply["ok"]}
    assert len(acked) == 45
    podman("stop", "--time", "40", name, timeout=120)
    assert exit_code(podman, name) == 0
    assert acked <= receiver.store.event_ids(), f"{len(acked - receiver.store.event_ids())} events not drained"
    assert "0 left in the spool" in logs(podman, name)


def test_killed_sidecar_successor_delivers_what_was_acknowledged(podman, receiver, tmp_path):
    volume = f"dt-spool-{os.getpid()}"
    podman("volume", "create", volume)
    secrets = tmp_path / "secrets"  # as a Kubernetes Secret volume or a Compose secret mounts it
    secrets.mkdir(mode=0o700)
    (secrets / "api-key").write_text(KEY + "\n")
    for path in (secrets, secrets / "api-key"):
        os.chown(path, int(UID), int(UID))
    sockets = tmp_path / "sockets"
    sockets.mkdir()
    os.chown(sockets, int(UID), int(UID))
    health_port = free_port()
    env = {"DOOW_TRACK_API_KEY_FILE": "/run/secrets/doow-track/api-key", "DOOW_TRACK_ENDPOINT": receiver.url,
           "DOOW_TRACK_FLUSH_INTERVAL": "100", "DOOW_TRACK_HEALTH_LISTEN": f"127.0.0.1:{health_port}"}

    def start(name: str) -> None:
        podman("run", "--detach", "--name", name, "--network", "host", "--read-only", *env_args(env),
               "--volume", f"{secrets}:/run/secrets/doow-track:ro", "--volume", f"{volume}:/var/lib/doow-track", "--volume", f"{sockets}:/run/doow-track", TAG)
        wait_for(lambda: health(health_port, "/healthz") == 200, 30, f"{name} to listen")

    fail_receiver(receiver)
    start(f"dt-first-{os.getpid()}")
    producer = Producer(str(sockets / "doow-track.sock"))
    try:
        acked = {reply["event_id"] for reply in producer.send([event(n) for n in range(25)]) if reply["ok"]}
    finally:
        producer.close()
    assert len(acked) == 25
    podman("kill", f"dt-first-{os.getpid()}")  # SIGKILL: no drain, no goodbye
    assert not acked & receiver.store.event_ids()
    heal_receiver(receiver)
    start(f"dt-second-{os.getpid()}")
    wait_for(lambda: acked <= receiver.store.event_ids(), 30, "the successor to deliver the spool")
    podman("stop", "--time", "30", f"dt-second-{os.getpid()}")
    assert exit_code(podman, f"dt-second-{os.getpid()}") == 0
    logs(podman, f"dt-second-{os.getpid()}")  # read from the mounted secret, never logged whole


def test_stdin_input_is_pipe_mode_with_its_exit_status(podman, receiver):
    env = {"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_ENDPOINT": receiver.url, "DOOW_TRACK_INPUT": "stdin"}
    lines = b"".join(json.dumps(event(n, "lic_stdin")).encode() + b"\n" for n in range(7)) + b"not json\n"
    done = podman("run", "--rm", "--interactive", "--network", "host", "--read-only", *env_args(env), TAG,
                  stdin=lines, check=False)
    assert done.returncode == 65, done.stderr.decode()  # one line invalid, the rest delivered
    assert receiver.store.count() == 7


def test_network_tcp_without_token_refuses_to_start(podman, receiver):
    env = {"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_ENDPOINT": receiver.url, "DOOW_TRACK_TCP_LISTEN": "0.0.0.0:9091"}
    done = podman("run", "--rm", "--network", "none", "--read-only", *env_args(env), TAG, check=False)
    assert done.returncode == 78 and b"tcp.token" in done.stderr, done.stderr


def test_kube_play_of_the_example_pod(podman, tmp_path):
    with open(os.path.join(support.ROOT, "examples", "kubernetes", "pod.yaml")) as handle:
        secret, pod = yaml.safe_load_all(handle)
    documents = [pod]
    version = podman.out("--version").split()[-1]
    if tuple(int(part) for part in version.split(".")[:2]) < (4, 4):
        # podman 4.3's kube play ignores stringData and writes data values still base64-encoded: the
        # Secret volume becomes a hostPath holding what the kubelet would write, the decoded key.
        keys = tmp_path / "secret"
        keys.mkdir()
        (keys / "api-key").write_text(KEY)
        volume = next(v for v in pod["spec"]["volumes"] if "secret" in v)
        volume.pop("secret")
        volume["hostPath"] = {"path": str(keys), "type": "Directory"}
    else:
        secret["data"] = {"api-key": base64.b64encode(KEY.encode()).decode()}
        del secret["stringData"]
        documents.insert(0, secret)
    app, sidecar = pod["spec"]["containers"]
    app.update(image=TAG, command=["sleep", "600"])
    sidecar["image"] = TAG
    for variable in sidecar["env"]:  # nothing leaves this machine; a quick stop
        if variable["name"] == "DOOW_TRACK_ENDPOINT":
            variable["value"] = "http://127.0.0.1:9"
        if variable["name"] == "DOOW_TRACK_SHUTDOWN_TIMEOUT":
            variable["value"] = "1000"
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(yaml.safe_dump_all(documents))
    podman("kube", "play", str(manifest), timeout=120)
    try:
        sidecar_name = f"{pod['metadata']['name']}-doow-track"
        status = lambda: json.loads(podman("exec", sidecar_name, "doow-track", "status", "--json",  # noqa: E731
                                           check=False).stdout or b"{}")
        document = wait_for(lambda: status().get("running") and status(), 30, "the pod's sidecar to run")
        assert document["pid"] == 1 and document["key"].endswith(KEY[-4:])
        sent = podman("exec", "--interactive", f"{pod['metadata']['name']}-app", "doow-track", "send", "--socket",
                      "/run/doow-track/doow-track.sock", stdin=json.dumps(event(1)).encode() + b"\n", check=False)
        assert sent.returncode == 0, sent.stderr
        assert wait_for(lambda: status()["counters"]["accepted"] == 1, 10, "the app's event in the spool")
    finally:
        podman("kube", "down", str(manifest), check=False, timeout=120)
