"""doow.track.config behind egress: one real ansible-playbook run (-vvv --diff) against localhost checks
the role's egress variables against its argument spec (its null defaults included), writes the proxy
(with credentials) and the private CA into the agent's config, the role's way of passing them included;
the proxy passwords appear nowhere in its output, not even when validation fails, and pipe mode
delivers with the written file through a real tinyproxy (basic auth, CONNECT) to an https receiver
signed by that CA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator
from urllib.parse import quote

import pytest

from doow_track_agent.receiver.server import Receiver, tls_context
from tests.support.cli import BIN, KEY, lines, run
from tests.support.proxy import PASSWORD, Tinyproxy
from tests.support.tls import Pki, make_pki

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
ROLE = REPO / "ansible_collections" / "doow" / "track" / "roles" / "agent"
# The password the first task writes and the second rotates away: '@' percent-encoded in the URL.
OLD_PASSWORD = f"old@proxy-pw-{os.getpid()}"

PLAYBOOK = """
- name: The agent's egress settings
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [secrets.yml]
  tasks:
    - name: The role takes its egress variables, unset or set
      ansible.builtin.validate_argument_spec:
        argument_spec: "{{ (lookup('file', role ~ '/meta/argument_specs.yml') | from_yaml).argument_specs.main.options }}"
        provided_arguments: "{{ item }}"
      loop:
        - "{{ lookup('file', role ~ '/defaults/main.yml') | from_yaml }}"
        # A loop shows its items: no secrets in them.
        - doow_track_api_key: dk_not_the_key
          doow_track_proxy: http://proxy.corp.example:3128
          doow_track_tls_trust_store: system
          doow_track_tls_ca_file: "{{ ca_file }}"
        - doow_track_api_key: dk_not_the_key
          doow_track_proxy: "{{ doow_track_direct }}"
      loop_control:
        label: "{{ item.doow_track_proxy | default('unset') }}"

    - name: Proxy with the old password, and the private CA
      doow.track.config:
        config_file: "{{ work }}/doow-track.json"
        cli: "{{ cli }}"
        api_key: "{{ api_key }}"
        endpoint: "{{ endpoint }}"
        proxy: "{{ old_proxy }}"
        tls:
          ca_file: "{{ ca_file }}"

    - name: Rotate the proxy password as the role passes it
      doow.track.config:
        config_file: "{{ work }}/doow-track.json"
        cli: "{{ cli }}"
        api_key: "{{ api_key }}"
        endpoint: "{{ endpoint }}"
        proxy: "{{ omit if doow_track_proxy is none else doow_track_proxy }}"
        tls:
          trust_store: "{{ doow_track_tls_trust_store | default(omit, true) }}"
          ca_file: "{{ ca_file }}"
      register: rotated

    - name: What a playbook sees of it
      ansible.builtin.debug:
        var: rotated

    - name: The role's false, written as false (direct, whatever HTTPS_PROXY says)
      doow.track.config:
        config_file: "{{ work }}/direct.json"
        cli: "{{ cli }}"
        api_key: "{{ api_key }}"
        endpoint: "{{ endpoint }}"
        proxy: "{{ omit if doow_track_direct is none else doow_track_direct }}"

    - name: A typo elsewhere fails validation without printing the proxy
      doow.track.config:
        config_file: "{{ work }}/doow-track.json"
        cli: "{{ cli }}"
        proxy: "{{ doow_track_proxy }}"
        tls:
          trust_store: systme
      ignore_errors: true
"""


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(str(tmp_path_factory.mktemp("pki")))


@pytest.fixture
def auth_proxy() -> Iterator[Tinyproxy]:
    with Tinyproxy(auth=True) as running:
        yield running


@pytest.fixture
def https_receiver(tmp_path, pki) -> Iterator[Receiver]:
    with Receiver(str(tmp_path / "tls.sqlite"), tls=tls_context(pki.server.cert, pki.server.key)).start() as server:
        yield server


def playbook(work: Path, variables: dict) -> subprocess.CompletedProcess:
    (work / "play.yml").write_text(PLAYBOOK)
    (work / "secrets.yml").write_text(json.dumps(variables))
    for name in ("local-tmp", "remote-tmp"):
        (work / name).mkdir()
    env = {name: value for name, value in os.environ.items() if not name.startswith(("DOOW_TRACK_", "ANSIBLE_"))}
    env.update(PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCAL_TEMP=str(work / "local-tmp"),
               ANSIBLE_REMOTE_TEMP=str(work / "remote-tmp"))
    return subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-e",
                           f"ansible_python_interpreter={sys.executable}", "-vvv", "--diff", str(work / "play.yml")],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_proxy_credentials_reach_the_file_only(tmp_path, pki, auth_proxy, https_receiver):
    old_proxy = auth_proxy.url.replace(PASSWORD, quote(OLD_PASSWORD, safe=""))
    res = playbook(tmp_path, {"work": str(tmp_path), "role": str(ROLE), "cli": BIN, "api_key": KEY, "endpoint": https_receiver.url,
                              "ca_file": pki.ca, "old_proxy": old_proxy, "doow_track_proxy": auth_proxy.url,
                              "doow_track_tls_trust_store": None, "doow_track_direct": False})
    output = res.stdout + res.stderr
    assert res.returncode == 0, output[-6000:]

    for secret in (PASSWORD, OLD_PASSWORD, quote(OLD_PASSWORD, safe=""), KEY):
        assert secret not in output, f"{secret!r} shown by ansible-playbook -vvv --diff"
    # What is shown instead: the proxy with its password masked, old and new, in the diff and the result.
    masked = f"http://egress:***@{auth_proxy.address}"
    assert output.count(masked) >= 3, output[-6000:]
    assert "changed=3" in output and "ignored=1" in output
    assert "value of trust_store must be one of: certifi, system, got: systme" in output

    written = json.loads((tmp_path / "doow-track.json").read_text())
    assert written["proxy"] == auth_proxy.url and written["tls"] == {"caFile": pki.ca}
    assert json.loads((tmp_path / "direct.json").read_text())["proxy"] is False

    # The file works: pipe mode tunnels through the proxy with those credentials and trusts the CA.
    events = lines(*({"metric": "egress", "quantity": 1, "license_id": f"lic_{n}"} for n in range(3)))
    config = str(tmp_path / "doow-track.json")
    delivered = run(["--config", config, "--outbox", config + ".outbox", "--rejects", config + ".rejects"],
                    stdin=events, secrets=[PASSWORD])
    assert delivered.code == 0, delivered.err
    assert https_receiver.store.summary()["events"] == 3
    assert f"CONNECT 127.0.0.1:{https_receiver.url.rsplit(':', 1)[1]}" in auth_proxy.log()
