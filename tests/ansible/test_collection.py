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
PLAYBOOKS = ("rollout", "health", "send_event", "uninstall", "wheelhouse")
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


@pytest.mark.parametrize("where", ["repository", "collection"])
def test_ansible_lint_production(where):
    """From the repository root (its ansible.cfg finds the collection) and from
    the collection root, where Galaxy's rules (changelog, meta) apply."""
    if where == "repository":
        res = run([VENV_BIN / "ansible-lint", "--profile", "production", "--nocolor"])
    else:
        env = dict(ansible_env(), ANSIBLE_COLLECTIONS_PATH=str(REPO))
        env.pop("ANSIBLE_CONFIG")
        res = subprocess.run([str(VENV_BIN / "ansible-lint"), "--profile", "production", "--nocolor", "."],
                             cwd=COLLECTION, env=env, capture_output=True, text=True, timeout=600)
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


@pytest.fixture(scope="module")
def tarball(tmp_path_factory):
    out = tmp_path_factory.mktemp("galaxy")
    res = run([VENV_BIN / "ansible-galaxy", "collection", "build", "--output-path", out, COLLECTION])
    assert res.returncode == 0, explain(res)
    return next(out.glob("doow-track-*.tar.gz"))


def test_galaxy_build_is_clean(tarball):
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    assert "galaxy.yml" not in names and "MANIFEST.json" in names
    assert not [n for n in names if "tests/output" in n or "__pycache__" in n or n.endswith(".pyc")
                or n.endswith(".plugin-cache.yaml")]
    for name in MODULES:
        assert f"plugins/modules/{name}.py" in names
    for name in ("LICENSE", "CHANGELOG.rst", "changelogs/changelog.yaml", "roles/agent/README.md",
                 "roles/agent/meta/argument_specs.yml"):
        assert name in names, name
    for playbook in PLAYBOOKS:
        assert f"playbooks/{playbook}.yml" in names


def test_galaxy_importer_accepts_the_tarball(tarball, tmp_path):
    """What Galaxy runs on upload (with ansible-lint); errors fail the import."""
    config = tmp_path / "galaxy-importer.cfg"
    config.write_text("[galaxy-importer]\nrun_ansible_lint = True\nrun_ansible_test = False\n")
    env = dict(ansible_env(), GALAXY_IMPORTER_CONFIG=str(config))
    res = subprocess.run([sys.executable, "-m", "galaxy_importer.main", str(tarball)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    out = res.stdout + res.stderr
    assert res.returncode == 0, explain(res)
    assert "Importer processing completed successfully" in out, explain(res)
    assert not re.search(r"^(ERROR|CRITICAL)", out, re.M), explain(res)
    # Only the declared sanity ignores (Apache-2.0 modules) may warn.
    warnings = [line for line in out.splitlines() if line.startswith("WARNING")]
    assert all("Ignore files skip ansible-test sanity tests" in w for w in warnings), warnings


def test_installed_tarball_runs_its_playbooks(tarball, tmp_path):
    """`ansible-playbook doow.track.rollout` from an installed collection, far
    from this repository (no ansible.cfg, no playbooks/)."""
    collections = tmp_path / "collections"
    env = dict(ansible_env(), ANSIBLE_COLLECTIONS_PATH=str(collections))
    env.pop("ANSIBLE_CONFIG")
    res = subprocess.run([str(VENV_BIN / "ansible-galaxy"), "collection", "install", "-p", str(collections),
                          str(tarball)], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert res.returncode == 0, explain(res)
    assert (collections / "ansible_collections" / "doow" / "track" / "playbooks" / "rollout.yml").is_file()
    for playbook in PLAYBOOKS:
        res = subprocess.run([str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "--list-tasks",
                              f"doow.track.{playbook}"], cwd=tmp_path, env=env, capture_output=True, text=True)
        assert res.returncode == 0, explain(res)
    assert "doow.track.agent : Health gate" in res.stdout or playbook != "rollout"


def test_changelog_is_managed_by_fragments():
    res = run([VENV_BIN / "antsibull-changelog", "lint"], cwd=COLLECTION)
    assert res.returncode == 0, explain(res)
    assert (COLLECTION / "changelogs" / "fragments").is_dir()
    assert "v0.1.0" in (COLLECTION / "CHANGELOG.rst").read_text()


def test_sanity_ignore_file_for_every_admitted_ansible_core():
    import yaml
    from packaging.specifiers import SpecifierSet
    spec = SpecifierSet(yaml.safe_load((COLLECTION / "meta" / "runtime.yml").read_text())["requires_ansible"])
    admitted = [f"2.{minor}" for minor in range(10, 40) if f"2.{minor}.0" in spec]
    assert admitted and f"2.{minor_of_installed()}" in admitted
    assert "2.40.0" not in spec, "an open-ended requires_ansible admits versions without an ignore file"
    for version in admitted:
        assert (COLLECTION / "tests" / "sanity" / f"ignore-{version}.txt").is_file(), version


def minor_of_installed() -> int:
    from ansible.release import __version__
    return int(__version__.split(".")[1])


def test_role_tags_select_the_role_parts():
    expected = {
        "doow_track_health": {"Send the health probe event through the agent", "Health gate",
                              "Keep this configuration as the last one that passed the health gate"},
        "doow_track_config": {"Write the agent configuration", "Reload the agent with the new configuration"},
    }
    for tag, tasks in expected.items():
        res = run([VENV_BIN / "ansible-playbook", "-i", "playbooks/inventory/example/hosts.yml", "--list-tasks",
                   "--tags", tag, "--vault-password-file", "playbooks/inventory/example/vault-pass.example",
                   "playbooks/rollout.yml"])
        assert res.returncode == 0, explain(res)
        # The argument spec check runs with every tag ("always").
        listed = {t for t in re.findall(r"doow\.track\.agent : ([^\t]+?)\s+TAGS:", res.stdout)
                  if not t.startswith("Validating arguments")}
        assert listed == tasks, (tag, listed)
    role = (COLLECTION / "roles" / "agent" / "tasks" / "main.yml").read_text()
    assert "ansible.builtin.meta" not in role and not (COLLECTION / "roles" / "agent" / "handlers").exists()


def test_playbooks_syntax():
    for playbook in [f"{name}.yml" for name in PLAYBOOKS]:
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
