"""The example manifests: Kubernetes schemas, yamllint, Compose parsing, and the settings they must agree on.

(``podman kube play`` of the pod is in test_sidecar.py, with the image.)
"""

from __future__ import annotations

import os
import subprocess
import sys

import yaml

from tests.support.podman import ROOT

EXAMPLES = os.path.join(ROOT, "examples")
POD = os.path.join(EXAMPLES, "kubernetes", "pod.yaml")
COMPOSE = os.path.join(EXAMPLES, "compose", "compose.yaml")
BIN = os.path.dirname(sys.executable)
CLOSING_SECONDS = 5  # the agent's grace after the drain deadline (modes/agent/run.py _PUMP_GRACE)


def tool(name: str, *args: str, cwd: str = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(BIN, name), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def env_of(container_env) -> dict:
    if isinstance(container_env, dict):
        return container_env
    return {item["name"]: item["value"] for item in container_env}


def test_kubernetes_objects_validate_strictly():
    done = tool("kubernetes-validate", "--strict", POD)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed") == 2, done.stdout


def test_yamllint_passes():
    done = tool("yamllint", "--strict", "-c", os.path.join(EXAMPLES, ".yamllint"), EXAMPLES)
    assert done.returncode == 0, done.stdout


def test_compose_file_parses_with_podman_compose():
    done = tool("podman-compose", "-f", COMPOSE, "config", cwd=os.path.dirname(COMPOSE))
    assert done.returncode == 0, done.stderr
    assert "doow-track" in yaml.safe_load(done.stdout)["services"]


def test_pod_grace_exceeds_the_drain_and_the_key_comes_from_the_secret():
    with open(POD) as handle:
        secret, pod = yaml.safe_load_all(handle)
    spec = pod["spec"]
    sidecar = next(c for c in spec["containers"] if c["name"] == "doow-track")
    env = env_of(sidecar["env"])
    assert spec["terminationGracePeriodSeconds"] > int(env["DOOW_TRACK_SHUTDOWN_TIMEOUT"]) / 1000 + CLOSING_SECONDS
    assert "DOOW_TRACK_API_KEY" not in env
    mount = next(m for m in sidecar["volumeMounts"] if env["DOOW_TRACK_API_KEY_FILE"].startswith(m["mountPath"] + "/"))
    volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
    assert volume["secret"]["secretName"] == secret["metadata"]["name"]
    assert os.path.basename(env["DOOW_TRACK_API_KEY_FILE"]) in secret["stringData"]
    assert {m["mountPath"] for m in sidecar["volumeMounts"]} >= {"/var/lib/doow-track", "/run/doow-track"}
    assert {p["httpGet"]["path"] for p in (sidecar["readinessProbe"], sidecar["livenessProbe"])} == {"/readyz", "/healthz"}
    assert sidecar["securityContext"]["readOnlyRootFilesystem"] is True and sidecar["resources"]["requests"]


def test_compose_grace_exceeds_the_drain_and_network_tcp_has_a_token():
    with open(COMPOSE) as handle:
        service = yaml.safe_load(handle)["services"]["doow-track"]
    env = env_of(service["environment"])
    assert int(service["stop_grace_period"].rstrip("s")) > int(env["DOOW_TRACK_SHUTDOWN_TIMEOUT"]) / 1000 + CLOSING_SECONDS
    assert env["DOOW_TRACK_TCP_LISTEN"].startswith("0.0.0.0:") and env["DOOW_TRACK_TCP_TOKEN_FILE"]
    assert "DOOW_TRACK_API_KEY" not in env and service["read_only"] is True
