"""Real ansible-playbook runs against a 3-host fleet (2 local hosts and one
over SSH, on Pythons 3.9, 3.11 and 3.12) delivering to the local receiver.

The tests run in file order and build on each other (rollout, re-run,
check mode, reload, restart, failed health gate, ad-hoc events, health
report, uninstall); every ansible run's full output is kept under
FLEET_ROOT/logs/.
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

import grp
import pwd

import doow_fleet
import pytest
from doow_fleet import API_KEY, HOST_PYTHONS, HOSTS, SSH_HOST, pid_alive, port_open, recap

PLAY_HANDLER_ROLLOUT = str(Path(__file__).with_name("playbooks") / "rollout_with_play_handler.yml")

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


def test_each_python_got_its_own_wheels_from_one_bundle(fleet, rollout):
    """One offline bundle (wheelhouse/py3.X per Python), each host installed
    from the directory of its own Python and runs the agent on it."""
    assert sorted(p.name for p in fleet.dist.wheelhouse.iterdir() if p.is_dir()) == \
        sorted(f"py{v}" for v in set(HOST_PYTHONS.values()))
    assert "Unpack the wheelhouse for this host's Python" in rollout.stdout
    for host, version in HOST_PYTHONS.items():
        prefix = Path(fleet.hosts[host]["doow_track_prefix"])
        marker = json.loads((prefix / "versions" / fleet.dist.version / ".doow-track-install.json").read_text())
        assert ".".join(map(str, marker["python_version"])) == version, (host, marker)
        tag = "cp" + version.replace(".", "")
        copied = [p.name for p in (prefix / "dist" / "wheelhouse").iterdir()]
        assert [n for n in copied if n.startswith("rpds_py-") and f"-{tag}-" in n], (host, copied)
        pid = fleet.status(host)["pid"]
        exe = os.readlink(f"/proc/{pid}/exe")
        assert os.path.basename(exe) == f"python{version}", (host, exe)
    # nothing half-built or temporary left beside the versions
    for host in HOSTS:
        versions = Path(fleet.hosts[host]["doow_track_prefix"]) / "versions"
        assert os.listdir(versions) == [fleet.dist.version], host


def test_agents_run_as_their_user_and_own_what_they_write(fleet, rollout):
    user = pwd.getpwnam(fleet.user)
    for host in HOSTS:
        h = fleet.hosts[host]
        pid = fleet.status(host)["pid"]
        ids = {line.split(":")[0]: line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text().splitlines()
               if line.startswith(("Uid:", "Gid:"))}
        assert set(ids["Uid"]) == {str(user.pw_uid)}, (host, ids)
        assert set(ids["Gid"]) == {str(user.pw_gid)}, (host, ids)
        written = [p for d in (h["doow_track_spool_dir"], Path(h["doow_track_socket_path"]).parent,
                               Path(h["doow_track_log_file"]).parent) for p in Path(d).rglob("*")]
        assert any(p.name.endswith(".sqlite3") for p in written) and any(p.is_socket() for p in written), written
        for path in written:
            assert path.lstat().st_uid == user.pw_uid, (host, path)
        sock = Path(h["doow_track_socket_path"]).lstat()
        assert grp.getgrgid(sock.st_gid).gr_name == fleet.socket_group
        config = Path(h["doow_track_config_file"]).stat()
        assert (config.st_uid, config.st_gid, config.st_mode & 0o777) == (0, user.pw_gid, 0o640), host


def test_socket_group_lets_chosen_users_send(fleet, rollout):
    host = "local2"
    event_id = f"sender-{uuid.uuid4().hex[:8]}"
    ok = fleet.send_as(fleet.sender, host, metric="integration", quantity=1, license_id="lic_fleet",
                       event_id=event_id)
    assert ok.returncode == 0 and json.loads(ok.stdout)["accepted"] == 1, ok.stdout + ok.stderr
    assert fleet.receiver.wait_for(event_id=event_id, host=host)
    # a local user outside the socket's group cannot send, nor read the key
    refused = fleet.send_as("nobody", host, metric="integration", quantity=1, license_id="lic_fleet")
    assert refused.returncode != 0, refused.stdout
    read = doow_fleet.run(["runuser", "-u", fleet.sender, "--", "cat", fleet.hosts[host]["doow_track_config_file"]])
    assert read.returncode != 0 and API_KEY not in read.stdout


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
    res = fleet.playbook(PLAY_HANDLER_ROLLOUT, "-vvv", extra=extra, name="rollout-reload")
    assert res.returncode == 0, explain(res)
    assert_recap(res)
    assert "TASK [doow.track.agent : Reload the agent with the new configuration]" in res.stdout
    assert API_KEY not in res.stdout + res.stderr
    # The role applied its change without flushing the play's handlers: the
    # play's own handler ran after the role, at the end of each batch.
    out = res.stdout
    gate = out.index("TASK [doow.track.agent : Health gate]")
    assert out.index("RUNNING HANDLER [Play handler]") > gate, explain(res)
    assert out.count("RUNNING HANDLER [Play handler]") == out.count("PLAY [Roll out")
    for host in HOSTS:
        now = fleet.status(host)
        assert now["pid"] == before[host]["pid"], host
        assert now["generation"] > before[host]["generation"], host
        assert fleet.config(host)["attribution"] == {"host": host, "release": "r2"}
    send_through_agents(fleet, "reloaded", release="r2")
    fleet.reload_extra = extra


def test_mode_only_config_change_is_reported_with_its_diff(fleet):
    host = "local1"
    config = Path(fleet.hosts[host]["doow_track_config_file"])
    extra = dict(fleet.reload_extra, doow_track_config_mode="0600")
    res = fleet.playbook("rollout.yml", "--diff", "--tags", "doow_track_config", "--limit", host, extra=extra,
                         name="config-mode-only")
    assert res.returncode == 0, explain(res)
    assert recap(res.stdout)[host]["changed"] == 1, explain(res)
    assert "-mode: 0640" in res.stdout and "+mode: 0600" in res.stdout, explain(res)
    # the content did not change: nothing to reload
    assert not re.search(r"TASK \[doow.track.agent : Reload the agent with the new configuration\][^\n]*\n+changed:",
                         res.stdout)
    assert config.stat().st_mode & 0o777 == 0o600
    back = fleet.playbook("rollout.yml", "--tags", "doow_track_config", "--limit", host, extra=fleet.reload_extra,
                          name="config-mode-back")
    assert back.returncode == 0 and recap(back.stdout)[host]["changed"] == 1, explain(back)
    assert config.stat().st_mode & 0o777 == 0o640


def test_version_change_restarts(fleet):
    before = {h: fleet.status(h) for h in HOSTS}
    extra = dict(getattr(fleet, "reload_extra", {}), doow_track_wheel=str(fleet.dist.next_wheel),
                 doow_track_version=fleet.dist.next_version)
    res = fleet.playbook("rollout.yml", extra=extra, name="rollout-upgrade")
    assert res.returncode == 0, explain(res)
    assert_recap(res)
    assert re.search(r"TASK \[doow.track.agent : Restart the agent on the new version\][^\n]*\n+changed:", res.stdout)
    # the restart loaded the configuration too, so no reload ran
    assert not re.search(r"TASK \[doow.track.agent : Reload the agent with the new configuration\][^\n]*\n+changed:",
                         res.stdout)
    for host in HOSTS:
        now = fleet.status(host)
        assert now["running"] and now["pid"] != before[host]["pid"], host
        assert now["version"] == fleet.dist.next_version, host
        assert not pid_alive(before[host]["pid"]), host
        prefix = Path(fleet.hosts[host]["doow_track_prefix"])
        assert sorted(os.listdir(prefix / "versions")) == sorted([fleet.dist.version, fleet.dist.next_version])
    send_through_agents(fleet, "upgraded", release="r2")
    fleet.upgrade_extra = extra


def test_failed_health_gate_restores_the_last_good_config(fleet):
    """A valid but undeliverable endpoint: the canary fails the gate, gets its
    last good configuration back (reload, same pid) and the rollout stops
    there; every host, the canary included, keeps delivering."""
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
    assert "doow-track agent unhealthy" in res.stdout
    assert "restored the last configuration that passed the health gate" in res.stdout, explain(res)
    for host in HOSTS:
        # never reached or restored: the old config, the same process
        assert fleet.config(host) == before[host][1], host
        assert fleet.status(host)["pid"] == before[host][0]["pid"], host
        if host != first:
            assert host not in counts or counts[host]["changed"] == 0, explain(res)
    assert fleet.status(first)["generation"] >= before[first][0]["generation"] + 2  # bad one, then the good one
    ids = {h: f"after-broken-{h}-{uuid.uuid4().hex[:6]}" for h in HOSTS}
    for host, event_id in ids.items():
        fleet.send(host, metric="integration", quantity=1, license_id="lic_fleet", event_id=event_id)
    for host, event_id in ids.items():
        assert fleet.receiver.wait_for(event_id=event_id, host=host), host
    # the probe the canary spooled against the bad endpoint arrives too
    assert fleet.receiver.wait_for(metric="doow_track_probe", host=first, count=3)


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


def test_adhoc_event_failures_are_clear_and_leave_no_files(fleet, tmp_path):
    # the runtime's reason for refusing an event is in the message
    secret = "AKIA" + "ABCDEFGHIJKLMNOP"
    res = fleet.adhoc("doow.track.event",
                      "metric=deploys quantity=1 license_id=lic_x config_file={{ doow_track_config_file }} "
                      "prefix={{ doow_track_prefix }} metadata='{\"note\": \"%s\"}'" % secret,
                      "--limit", "local2", name="adhoc-event-secret")
    assert res.returncode != 0, explain(res)
    assert "AWS access key" in res.stdout and ": None" not in res.stdout, explain(res)
    # a direct send that cannot deliver fails, and leaves no outbox in $HOME
    home = tmp_path / "home"
    home.mkdir()
    dead = doow_fleet.free_port()
    res = fleet.adhoc("doow.track.event",
                      f"metric=deploys quantity=1 license_id=lic_x via=direct api_key={API_KEY} "
                      f"endpoint=http://127.0.0.1:{dead} prefix={{{{ doow_track_prefix }}}} config_file=/nonexistent",
                      "--limit", "local2", env={"HOME": str(home), "XDG_STATE_HOME": ""}, name="adhoc-event-undelivered")
    assert res.returncode != 0, explain(res)
    assert API_KEY not in res.stdout + res.stderr
    # (Ansible's own ~/.ansible aside)
    assert [str(p) for p in home.rglob("*") if ".ansible" not in p.parts] == []


def test_failed_install_hides_credentials_and_leaves_nothing(fleet, tmp_path):
    """An online install through a proxy (documented form, no scheme) that
    cannot connect: -vvv and the failure show neither password, and the
    prefix holds no half-built version."""
    prefix = tmp_path / "opt"
    args = ("version=9.9.9 prefix=%s proxy=puser:proxy-pw-5ecret@127.0.0.1:9 "
            "index_url=https://iuser:index-pw-5ecret@127.0.0.1:9/simple "
            "pip_extra_args='[\"--retries\", \"0\", \"--timeout\", \"2\"]'" % prefix)
    res = fleet.adhoc("doow.track.install", args, "-vvv", "--limit", "local2", name="adhoc-install-proxy")
    out = res.stdout + res.stderr
    assert res.returncode != 0, explain(res)
    assert "failed to install" in out, explain(res)
    for secret in ("proxy-pw-5ecret", "index-pw-5ecret"):
        assert secret not in out
    assert "malformed" not in out.lower(), explain(res)   # pip took the proxy: http:// was added
    assert os.listdir(prefix / "versions") == []
    assert not (prefix / "current").exists()


def test_service_refuses_what_it_cannot_do_before_changing_anything(fleet, tmp_path):
    host = "local1"
    pid = fleet.status(host)["pid"]
    units = tmp_path / "units"
    units.mkdir()
    common = "config_file={{ doow_track_config_file }} prefix={{ doow_track_prefix }} pidfile={{ doow_track_pidfile }}"
    res = fleet.adhoc("doow.track.service", f"manager=systemd unit_dir={units} {common}", "--limit", host,
                      name="adhoc-service-systemd")
    assert res.returncode != 0 and "did not boot with systemd" in res.stdout, explain(res)
    assert os.listdir(units) == []
    res = fleet.adhoc("doow.track.service", f"manager=direct enabled=true {common}", "--limit", host,
                      name="adhoc-service-enabled")
    assert res.returncode != 0 and "cannot provide" in res.stdout, explain(res)
    assert fleet.status(host)["pid"] == pid


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
    # The output format may wrap long rows: compare with whitespace collapsed.
    table = re.sub(r"\s+", " ", res.stdout)
    assert "host healthy version spool depth oldest age last success last error" in table, explain(res)
    for host in HOSTS:
        assert re.search(rf"\b{host} yes {re.escape(fleet.dist.next_version)} 0 ", table), (host, table)
    # one agent down: its row says so, and the run fails naming it
    down = "local2"
    stop = fleet.adhoc("doow.track.service", "state=stopped config_file={{ doow_track_config_file }} "
                       "prefix={{ doow_track_prefix }} pidfile={{ doow_track_pidfile }}", "--limit", down,
                       name="adhoc-stop")
    assert stop.returncode == 0, explain(stop)
    res = fleet.playbook("health.yml", name="health-unhealthy")
    assert res.returncode != 0, explain(res)
    table = re.sub(r"\s+", " ", res.stdout)
    assert re.search(rf"\b{down} NO [^']*?the agent is down", table), explain(res)
    assert f"unhealthy: {down}" in res.stdout and "unhealthy: local1" not in res.stdout


def test_generated_unit_is_hardened_and_runs_as_the_user(fleet):
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        pytest.fail("systemd-analyze is missing (install systemd; scripts/test does)")
    host = "local1"
    unit = subprocess.run([str(fleet.cli(host)), "systemd-unit", "--config", fleet.hosts[host]["doow_track_config_file"],
                           "--exec", str(fleet.cli(host)), "--user", fleet.user, "--group", fleet.user],
                          capture_output=True, text=True)
    assert unit.returncode == 0, unit.stderr
    assert f"User={fleet.user}\nGroup={fleet.user}\n" in unit.stdout
    assert f"ReadWritePaths=-{fleet.hosts[host]['doow_track_spool_dir']}" in unit.stdout
    path = fleet.root / "doow-track.service"
    path.write_text(unit.stdout)
    res = subprocess.run([analyze, "verify", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
    res = subprocess.run([analyze, "security", "--offline=true", "--no-pager", str(path)], capture_output=True,
                         text=True)
    out = res.stdout + res.stderr
    exposure = float(re.search(r"Overall exposure level for \S+: ([0-9.]+)", out).group(1))
    assert exposure <= 2.0, out
    for directive in ("User=/DynamicUser=", "NoNewPrivileges=", "ProtectSystem=", "CapabilityBoundingSet=~CAP_SET"):
        assert re.search(rf"^\S*✓ {re.escape(directive)}", out, re.M), (directive, out)


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
    for name in (fleet.user, fleet.socket_group):
        assert doow_fleet.run(["getent", "group", name]).returncode == 2, name
    assert doow_fleet.run(["getent", "passwd", fleet.user]).returncode == 2
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
