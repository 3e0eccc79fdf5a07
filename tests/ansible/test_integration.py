"""Real ansible-playbook runs against a 4-host fleet (3 local hosts and one
over SSH) delivering to the local receiver.

The tests run in file order and build on each other (rollout, re-run,
check mode, reload, restart, broken config, ad-hoc events, uninstall);
every ansible run's full output is kept under FLEET_ROOT/logs/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import doow_fleet
import pytest
from doow_fleet import API_KEY, HOSTS, SSH_HOST, pid_alive, port_open, recap

pytestmark = pytest.mark.slow


def explain(res) -> str:
    return f"exit {res.returncode}\n--- stdout (tail) ---\n{res.stdout[-12000:]}\n--- stderr ---\n{res.stderr[-4000:]}"


def assert_recap(res, changed=None, failed=0):
    counts = recap(res.stdout)
    assert set(counts) == set(HOSTS), explain(res)
    for host, c in counts.items():
        assert c["unreachable"] == 0, explain(res)
        assert c["failed"] == failed, f"{host}: {c}\n" + explain(res)
        if changed is not None:
            assert c["changed"] == changed, f"{host}: {c}\n" + explain(res)
    return counts


def send_through_agents(fleet, tag: str, **attribution):
    """One event per host through its agent's socket; returns {host: event_id}."""
    ids = {}
    for host in HOSTS:
        event_id = f"{tag}-{host}-{uuid.uuid4().hex[:8]}"
        out = fleet.send(host, metric="integration", quantity=1, license_id="lic_fleet", event_id=event_id)
        assert out.get("accepted") == 1, out
        ids[host] = event_id
    for host, event_id in ids.items():
        want = dict(attribution, host=host)
        found = fleet.receiver.wait_for(event_id=event_id, **want)
        assert len(found) == 1, (host, event_id, want, fleet.receiver.find(event_id=event_id))
    return ids


@pytest.fixture(scope="module")
def rollout(fleet):
    """The first rollout, from nothing, with -vvv (kept for the key test)."""
    res = fleet.playbook("rollout.yml", "-vvv", name="rollout-first")
    return res


def test_rollout_installs_offline_and_every_agent_delivers(fleet, rollout):
    assert rollout.returncode == 0, explain(rollout)
    counts = assert_recap(rollout)
    assert all(c["changed"] > 0 for c in counts.values())
    for host in HOSTS:
        status = fleet.status(host)
        assert status.get("running") is True, (host, status)
        assert status["version"] == fleet.dist.version
        prefix = Path(fleet.hosts[host]["doow_track_prefix"])
        assert os.readlink(prefix / "current") == os.path.join("versions", fleet.dist.version)
        # the health gate's probe went through this agent and arrived
        assert fleet.receiver.find(metric="doow_track_probe", host=host), host
    send_through_agents(fleet, "first")


def test_offline_install_used_only_the_wheelhouse(fleet, rollout):
    # The fleet's environment points pip at a dead index (PIP_INDEX_URL), so
    # the install only succeeded because it used --no-index --find-links.
    for host in HOSTS:
        prefix = Path(fleet.hosts[host]["doow_track_prefix"])
        marker = json.loads((prefix / "versions" / fleet.dist.version / ".doow-track-install.json").read_text())
        assert marker["source"] == str(prefix / "dist" / fleet.dist.wheel.name), marker
        assert (prefix / "dist" / "wheelhouse").is_dir()


def test_key_never_in_output(fleet, rollout):
    assert "-vvv" in " ".join(rollout.args)
    for res in [rollout]:
        assert API_KEY not in res.stdout and API_KEY not in res.stderr
        assert API_KEY[-12:] not in res.stdout
    for log in fleet.log_dir.iterdir():
        assert API_KEY not in log.read_text(), log


def test_second_run_changes_nothing(fleet):
    pids = {h: fleet.status(h)["pid"] for h in HOSTS}
    res = fleet.playbook("rollout.yml", name="rollout-again")
    assert res.returncode == 0, explain(res)
    assert_recap(res, changed=0)
    assert {h: fleet.status(h)["pid"] for h in HOSTS} == pids


def test_check_mode_changes_nothing(fleet):
    before = {h: (Path(fleet.hosts[h]["doow_track_config_file"]).read_bytes(), fleet.status(h)) for h in HOSTS}
    extra = {"doow_track_attribution": {"host": "{{ inventory_hostname }}", "release": "check-only"},
             "doow_track_flush_at": 7}
    res = fleet.playbook("rollout.yml", "--check", "--diff", extra=extra, name="rollout-check")
    assert res.returncode == 0, explain(res)
    counts = assert_recap(res)
    assert all(c["changed"] > 0 for c in counts.values())  # it reports what it would do
    assert "check-only" in res.stdout  # the diff of the configuration
    for host in HOSTS:
        config, status = before[host]
        assert Path(fleet.hosts[host]["doow_track_config_file"]).read_bytes() == config
        now = fleet.status(host)
        assert (now["pid"], now["generation"]) == (status["pid"], status["generation"])


def test_config_change_reloads_same_pid_new_attribution(fleet):
    before = {h: fleet.status(h) for h in HOSTS}
    extra = {"doow_track_attribution": {"host": "{{ inventory_hostname }}", "release": "r2"}}
    res = fleet.playbook("rollout.yml", "-vvv", extra=extra, name="rollout-reload")
    assert res.returncode == 0, explain(res)
    assert_recap(res)
    assert "RUNNING HANDLER [doow.track.agent : Reload doow-track agent]" in res.stdout
    assert API_KEY not in res.stdout + res.stderr
    for host in HOSTS:
        now = fleet.status(host)
        assert now["pid"] == before[host]["pid"], host
        assert now["generation"] > before[host]["generation"], host
        assert fleet.config(host)["attribution"] == {"host": host, "release": "r2"}
    send_through_agents(fleet, "reloaded", release="r2")
    fleet.reload_extra = extra


def test_version_change_restarts(fleet):
    before = {h: fleet.status(h) for h in HOSTS}
    extra = dict(getattr(fleet, "reload_extra", {}), doow_track_wheel=str(fleet.dist.next_wheel),
                 doow_track_version=fleet.dist.next_version)
    res = fleet.playbook("rollout.yml", extra=extra, name="rollout-upgrade")
    assert res.returncode == 0, explain(res)
    assert_recap(res)
    assert "RUNNING HANDLER [doow.track.agent : Restart doow-track agent]" in res.stdout
    # restart ran, so the reload handler did not
    assert "RUNNING HANDLER [doow.track.agent : Reload doow-track agent]" not in res.stdout
    for host in HOSTS:
        now = fleet.status(host)
        assert now["running"] and now["pid"] != before[host]["pid"], host
        assert now["version"] == fleet.dist.next_version, host
        assert not pid_alive(before[host]["pid"]), host
        prefix = Path(fleet.hosts[host]["doow_track_prefix"])
        assert sorted(os.listdir(prefix / "versions")) == sorted([fleet.dist.version, fleet.dist.next_version])
    send_through_agents(fleet, "upgraded", release="r2")
    fleet.upgrade_extra = extra


def test_broken_config_stops_rollout_at_health_gate(fleet):
    good = dict(fleet.upgrade_extra)
    before = {h: (fleet.status(h), fleet.config(h)) for h in HOSTS}
    dead = doow_fleet.free_port()
    extra = dict(good, doow_track_endpoint=f"http://127.0.0.1:{dead}", doow_track_health_timeout=8,
                 doow_track_rollout_serial=1)
    res = fleet.playbook("rollout.yml", extra=extra, name="rollout-broken")
    assert res.returncode != 0, explain(res)
    counts = recap(res.stdout)
    first = "local1"
    assert counts[first]["failed"] == 1, explain(res)
    assert "TASK [doow.track.agent : Health gate]" in res.stdout
    assert "doow-track agent unhealthy" in res.stdout
    untouched = [h for h in HOSTS if h != first]
    for host in untouched:
        # never reached: old config, same process, still delivering
        assert host not in counts or counts[host]["changed"] == 0, explain(res)
        assert fleet.config(host) == before[host][1]
        assert fleet.status(host)["pid"] == before[host][0]["pid"]
    ids = {}
    for host in untouched:
        ids[host] = f"after-broken-{host}-{uuid.uuid4().hex[:6]}"
        fleet.send(host, metric="integration", quantity=1, license_id="lic_fleet", event_id=ids[host])
    for host, event_id in ids.items():
        assert fleet.receiver.wait_for(event_id=event_id, host=host), host
    # the broken host reloaded into the bad endpoint, kept running, and holds its events
    assert fleet.status(first)["running"]
    # repair: the good configuration again, everywhere healthy
    res = fleet.playbook("rollout.yml", extra=dict(good, doow_track_health_timeout=90), name="rollout-repair")
    assert res.returncode == 0, explain(res)
    assert_recap(res)


def test_adhoc_event_delivers_exactly_once(fleet):
    event_id = f"deploy-{uuid.uuid4().hex[:10]}"
    args = (f"metric=deploys quantity=1 license_id=lic_x event_id={event_id} "
            "config_file={{ doow_track_config_file }} prefix={{ doow_track_prefix }}")
    first = fleet.adhoc("doow.track.event", args, "--limit", "local2", name="adhoc-event")
    assert first.returncode == 0, explain(first)
    assert "CHANGED" in first.stdout and event_id in first.stdout
    again = fleet.adhoc("doow.track.event", args, "--limit", "local2", name="adhoc-event-again")
    assert again.returncode == 0, explain(again)
    assert "CHANGED" not in again.stdout and "SUCCESS" in again.stdout, explain(again)
    # forced resend, and every host sending the same id: still one event at Doow
    forced = fleet.adhoc("doow.track.event", args + " resend=true", name="adhoc-event-resend")
    assert forced.returncode == 0, explain(forced)
    time.sleep(2)
    fleet.receiver.wait_for(event_id=event_id, timeout=10)
    assert len(fleet.receiver.find(event_id=event_id)) == 1
    ev = fleet.receiver.find(event_id=event_id)[0]
    assert fleet.receiver.metric(ev) == "deploys" and ev["license_id"] == "lic_x"


def test_adhoc_event_exactly_as_written(fleet):
    """The documented command, verbatim, on the host whose login environment
    names its agent (DOOW_TRACK_CONFIG / DOOW_TRACK_PREFIX)."""
    res = fleet.adhoc("doow.track.event", "metric=deploys quantity=1 license_id=lic_x", pattern=SSH_HOST,
                      name="adhoc-as-written")
    assert res.returncode == 0, explain(res)
    assert "CHANGED" in res.stdout and re.search(r'via"?: "?agent', res.stdout), explain(res)
    event_id = re.search(r'event_id"?: "?([0-9a-f-]{36})', res.stdout).group(1)
    assert fleet.receiver.wait_for(event_id=event_id, host=SSH_HOST)


def test_send_event_playbook(fleet):
    event_id = f"release-{uuid.uuid4().hex[:10]}"
    extra = {"metric": "releases", "quantity": 2, "license_id": "lic_rel", "event_id": event_id}
    res = fleet.playbook("send_event.yml", extra=extra, name="send-event")
    assert res.returncode == 0, explain(res)
    assert_recap(res)
    found = fleet.receiver.wait_for(event_id=event_id)
    time.sleep(1)
    assert len(fleet.receiver.find(event_id=event_id)) == 1, found
    again = fleet.playbook("send_event.yml", extra=extra, name="send-event-again")
    assert again.returncode == 0, explain(again)
    assert_recap(again, changed=0)


def test_adhoc_event_as_written_direct_key_hidden(fleet):
    """`ansible -m doow.track.event -a "metric=deploys quantity=1 license_id=lic_x"`
    with the key given directly: delivered, and -vvv never shows the key."""
    res = fleet.adhoc("doow.track.event",
                      f"metric=deploys quantity=1 license_id=lic_x via=direct api_key={API_KEY} "
                      f"endpoint={fleet.receiver.endpoint} prefix={{{{ doow_track_prefix }}}}",
                      "-vvv", "--limit", SSH_HOST, name="adhoc-direct")
    assert res.returncode == 0, explain(res)
    assert API_KEY not in res.stdout + res.stderr
    event_id = re.search(r'event_id"?: "?([0-9a-f-]{36})', res.stdout).group(1)
    assert fleet.receiver.wait_for(event_id=event_id)


def test_health_playbook_reports_fleet(fleet):
    res = fleet.playbook("health.yml", name="health")
    assert res.returncode == 0, explain(res)
    assert_recap(res, changed=0)
    for host in HOSTS:
        assert f"{host}: healthy" in res.stdout


def test_generated_unit_verifies(fleet):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.fail("systemd-analyze is missing (install systemd; scripts/test does)")
    host = "local1"
    unit = subprocess.run([str(fleet.cli(host)), "systemd-unit", "--config", fleet.hosts[host]["doow_track_config_file"],
                           "--exec", str(fleet.cli(host))], capture_output=True, text=True)
    assert unit.returncode == 0, unit.stderr
    path = fleet.root / "doow-track.service"
    path.write_text(unit.stdout)
    res = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr


def test_uninstall_leaves_nothing_behind(fleet):
    pids = {h: fleet.status(h).get("pid") for h in HOSTS}
    res = fleet.playbook("uninstall.yml", name="uninstall")
    assert res.returncode == 0, explain(res)
    assert_recap(res)
    for host in HOSTS:
        root = fleet.host_root(host)
        left = [str(p) for p in root.rglob("*")] if root.exists() else []
        assert left == [], (host, left)
        assert not pid_alive(pids[host]), host
        assert not port_open(fleet.health_port(host)), host
    again = fleet.playbook("uninstall.yml", name="uninstall-again")
    assert again.returncode == 0, explain(again)
    assert_recap(again, changed=0)


def test_check_mode_on_fresh_hosts_changes_nothing(fleet):
    """After uninstall every host is fresh: check mode reports the rollout it
    would do, fails nowhere, and creates nothing."""
    res = fleet.playbook("rollout.yml", "--check", name="rollout-check-fresh")
    assert res.returncode == 0, explain(res)
    counts = assert_recap(res)
    assert all(c["changed"] > 0 for c in counts.values())
    for host in HOSTS:
        root = fleet.host_root(host)
        left = [str(p) for p in root.rglob("*")] if root.exists() else []
        assert left == [], (host, left)
