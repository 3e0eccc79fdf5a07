"""Static checks of the doow.track collection: ansible-test sanity and units,
ansible-lint --profile production, ansible-doc rendering, galaxy build,
systemd-analyze on the generated unit.  None of these needs a running agent."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from doow_fleet import COLLECTION, REPO, VENV_BIN

MODULES = ("install", "config", "service", "health", "event")
PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def ansible_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


def run(cmd, cwd=REPO, timeout=1800):
    return subprocess.run([str(c) for c in cmd], cwd=cwd, env=ansible_env(), capture_output=True, text=True,
                          timeout=timeout)


def explain(res) -> str:
    return f"exit {res.returncode}\n--- stdout ---\n{res.stdout[-8000:]}\n--- stderr ---\n{res.stderr[-8000:]}"


@pytest.fixture(scope="module")
def pip_bootstrap():
    """ansible-test builds a virtualenv per sanity test and bootstraps pip there
    with a script it downloads from a host this machine cannot reach.  Put our
    stand-in (ensurepip + the package index) where ansible-test looks first."""
    source = (VENV_BIN.parent / "lib").glob("python*/site-packages/ansible_test/_internal/python_requirements.py")
    text = next(source).read_text()
    version = re.search(r"pip='([0-9.]+)'", text).group(1)
    cache = Path.home() / ".ansible" / "test" / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"get_pip_{version.replace('.', '_')}.py"
    shutil.copy(Path(__file__).with_name("get_pip_offline.py"), target)
    return target


def test_collection_is_a_real_directory():
    # ansible-test refuses a collection reached through a symlink.
    assert COLLECTION.is_dir() and not COLLECTION.is_symlink()
    assert (REPO / "plugins").is_symlink()
    assert (REPO / "plugins").resolve() == (COLLECTION / "plugins").resolve()


def test_sanity(pip_bootstrap):
    res = run([VENV_BIN / "ansible-test", "sanity", "--python", PY, "--color", "no"], cwd=COLLECTION)
    assert res.returncode == 0, explain(res)
    ignores = (COLLECTION / "tests" / "sanity" / "ignore-2.19.txt").read_text().splitlines()
    assert all("validate-modules:missing-gplv3-license" in line for line in ignores if line.strip())


def test_units(pip_bootstrap):
    # --requirements installs what the unit runner needs (pytest-xdist, pytest-mock, mock).
    res = run([VENV_BIN / "ansible-test", "units", "--python", PY, "--requirements", "--color", "no"], cwd=COLLECTION)
    assert res.returncode == 0, explain(res)
    for name in MODULES:
        assert (COLLECTION / "tests" / "unit" / "plugins" / "modules" / f"test_{name}.py").exists()
    assert (COLLECTION / "tests" / "unit" / "plugins" / "module_utils" / "test_doow_cli.py").exists()
    assert re.search(r"\d+ passed", res.stdout), explain(res)


def test_ansible_lint_production():
    res = run([VENV_BIN / "ansible-lint", "--profile", "production", "--nocolor", "playbooks",
               "ansible_collections/doow/track/roles"])
    assert res.returncode == 0, explain(res)
    assert "Profile 'production' was required, and it passed" in res.stdout + res.stderr


@pytest.mark.parametrize("module", MODULES)
def test_ansible_doc_renders(module):
    res = run([VENV_BIN / "ansible-doc", "--json", f"doow.track.{module}"])
    assert res.returncode == 0, explain(res)
    doc = json.loads(res.stdout)[f"doow.track.{module}"]
    assert doc["doc"]["short_description"] and doc["examples"] and doc["return"]
    assert doc["doc"]["attributes"]["check_mode"]["support"] == "full"
    if "api_key" in doc["doc"]["options"]:
        text = run([VENV_BIN / "ansible-doc", f"doow.track.{module}"])
        assert "api_key" in text.stdout


def test_role_argument_spec_renders():
    res = run([VENV_BIN / "ansible-doc", "-t", "role", "--json", "doow.track.agent"])
    assert res.returncode == 0, explain(res)
    spec = json.loads(res.stdout)["doow.track.agent"]["entry_points"]["main"]["options"]
    assert spec["doow_track_api_key"]["required"] is True


def test_runtime_metadata_action_groups():
    import yaml
    runtime = yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())
    assert runtime["requires_ansible"]
    assert set(runtime["action_groups"]["api"]) == {"config", "event"}


def test_galaxy_build_is_clean(tmp_path):
    res = run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", tmp_path, COLLECTION])
    assert res.returncode == 0, explain(res)
    tarball = next(tmp_path.glob("doow-track-*.tar.gz"))
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert not [n for n in names if "tests/output" in n or "__pycache__" in n or n.endswith(".pyc")]
    for name in MODULES:
        assert f"plugins/modules/{name}.py" in names
    assert "roles/agent/meta/argument_specs.yml" in names


def test_playbooks_syntax():
    for playbook in ("rollout.yml", "health.yml", "send_event.yml", "uninstall.yml"):
        res = run([VENV_BIN / "ansible-playbook", "--syntax-check", "-i", "playbooks/inventory/example/hosts.yml",
                   "--vault-password-file", "playbooks/inventory/example/vault-pass.example",
                   f"playbooks/{playbook}"])
        assert res.returncode == 0, explain(res)


def test_example_inventory_key_is_vaulted():
    vault = REPO / "playbooks/inventory/example/group_vars/doow_track_agents/vault.yml"
    assert "$ANSIBLE_VAULT;1.1;AES256" in vault.read_text()
    res = run([VENV_BIN / "ansible-inventory", "-i", "playbooks/inventory/example/hosts.yml", "--vault-password-file",
               "playbooks/inventory/example/vault-pass.example", "--host", "billing-1.example.com"])
    assert res.returncode == 0, explain(res)
    assert json.loads(res.stdout)["doow_track_api_key"] == "{{ vault_doow_track_api_key }}"
