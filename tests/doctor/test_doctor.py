"""doctor end to end: each way events fail to arrive is reported by the check that names it."""

from __future__ import annotations

import time

from doow_track_agent.receiver.faults import Faults
from tests.support.agent import free_port, wait_for
from tests.doctor.conftest import EVENT, LICENSE, STATUSES, doctor
from tests.support.cli import KEY, lines, run

WRONG_KEY = "dk_wrong_workspace_key_9f3a"


def test_all_ok_against_the_receiver(pipe_config, tmp_path):
    events = tmp_path / "usage.ndjson"
    events.write_bytes(lines(EVENT, {**EVENT, "quantity": 5}))
    result = doctor("--config", pipe_config, "--license", LICENSE, "--events", str(events))
    assert result.code == 0 and not result.failed(), result.result.out
    for name in ("config.file", "config.schema", "config.permissions", "key.present", "key.format",
                 "key.accepted", "endpoint.dns", "endpoint.tcp", "endpoint.http", "endpoint.latency",
                 "endpoint.clock", f"license.{LICENSE}", "events.file"):
        assert result.status(name) == "ok", result.checks[name]
    assert result.status("endpoint.tls") == "skip"  # plain HTTP on loopback has no certificate
    assert result.status("agent.running") == "skip"  # a pipe-mode config configures no agent
    assert result.document["key"] == "dk_…5c1e" and result.document["result"] == "ok"


def test_json_shape(pipe_config):
    result = doctor("--config", pipe_config)
    document = result.document
    assert set(document) >= {"result", "exit_code", "counts", "checks", "key", "endpoint", "config"}
    assert document["exit_code"] == result.code
    for check in document["checks"]:
        assert set(check) == {"name", "status", "detail", "hint"}
        assert check["status"] in STATUSES and check["detail"]
    assert sum(document["counts"].values()) == len(document["checks"])
    assert len(result.checks) == len(document["checks"]), "check names are unique"


def test_text_output_one_line_per_check_and_masked_key(pipe_config):
    result = run(["doctor", "--config", pipe_config, "--license", "lic_nope"])
    assert result.code == 1
    assert "ok    key.present" in result.out and "dk_…5c1e" in result.out
    assert "FAIL  license.lic_nope" in result.out
    assert result.out.rstrip().splitlines()[-1].endswith(": FAIL")


def test_wrong_key_is_rejected(receiver, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(WRONG_KEY + "\n")
    result = doctor("--api-key-file", str(key_file), "--endpoint", receiver.url, "--license", LICENSE,
                    secret=WRONG_KEY)
    assert result.code == 1
    assert result.failed() == ["key.accepted"]
    assert "401" in result.checks["key.accepted"]["detail"] and "dk_…9f3a" in result.checks["key.accepted"]["detail"]
    assert result.status(f"license.{LICENSE}") == "skip"  # no answer about licenses means anything now
    assert result.status("endpoint.http") == "ok"  # the endpoint is reachable; the key is the problem


def test_unknown_license(pipe_config, tmp_path):
    events = tmp_path / "usage.ndjson"
    events.write_bytes(lines(EVENT, {**EVENT, "license_id": "lic_typo"}))
    result = doctor("--config", pipe_config, "--license", "lic_other", "--events", str(events))
    assert result.code == 1
    assert sorted(result.failed()) == ["license.lic_other", "license.lic_typo"]
    assert result.status(f"license.{LICENSE}") == "ok"
    assert str(events) in result.checks["license.lic_typo"]["detail"]  # says where the id came from


def test_unreachable_endpoint_answers_quickly(write_config):
    config = write_config({"apiKey": KEY, "endpoint": f"http://127.0.0.1:{free_port()}"})
    started = time.monotonic()
    result = doctor("--config", config, "--license", LICENSE, "--timeout", "2")
    assert time.monotonic() - started < 15
    assert result.code == 1
    assert result.failed() == ["endpoint.tcp"]
    assert "refused" in result.checks["endpoint.tcp"]["detail"]
    for name in ("endpoint.http", "endpoint.latency", "endpoint.clock", "key.accepted", f"license.{LICENSE}"):
        assert result.status(name) == "skip", name


def test_unresolvable_host(write_config):
    config = write_config({"apiKey": KEY, "endpoint": "https://no-such-host.invalid"})
    result = doctor("--config", config)
    assert result.failed() == ["endpoint.dns"]
    assert result.status("endpoint.tcp") == "skip"


def test_agent_down(make_agent):
    agent = make_agent()  # configured, never started
    result = doctor("--config", agent.config, "--pidfile", agent.pidfile)
    assert result.code == 1
    assert result.failed() == ["agent.running"]
    assert f"127.0.0.1:{agent.port}" in result.checks["agent.running"]["detail"]
    assert result.status("agent.ready") == "skip" and result.status("agent.last_error") == "skip"
    assert result.status("environment.logs") == "ok"  # log.file's directory exists


def test_running_agent_all_ok(make_agent):
    agent = make_agent()
    assert agent.start().code == 0
    agent.send([EVENT])
    wait_for(lambda: agent.status()["spool"]["events"] == 0 and agent.status()["counters"]["delivered"] == 1,
             30, "the event delivered")
    result = doctor("--config", agent.config, "--pidfile", agent.pidfile)
    assert result.code == 0 and not result.failed(), result.result.out
    for name in ("agent.running", "agent.ready", "agent.spool", "agent.dead_letters", "agent.last_error"):
        assert result.status(name) == "ok", result.checks[name]
    assert f"pid {agent.pid}" in result.checks["agent.running"]["detail"]


def test_dead_lettered_event(make_agent):
    agent = make_agent()
    assert agent.start().code == 0
    agent.send([{**EVENT, "license_id": "lic_unknown"}])  # the receiver's workspace refuses it (207)
    wait_for(lambda: agent.status()["spool"]["dead_letters"] == 1, 30, "one dead letter")
    result = doctor("--config", agent.config)
    assert result.code == 1
    assert result.failed() == ["agent.dead_letters"]
    check = result.checks["agent.dead_letters"]
    assert "1 events refused" in check["detail"] and "deadletter list" in check["hint"]

    agent.kill()  # the spool is read offline once the agent is gone
    offline = doctor("--config", agent.config, "--pidfile", agent.pidfile)
    assert sorted(offline.failed()) == ["agent.dead_letters", "agent.running"]


def test_agent_with_rejected_key_is_not_ready(make_agent):
    agent = make_agent(apiKey="dk_revoked_key_for_agent_0000")
    assert agent.start().code == 0
    agent.send([EVENT])
    wait_for(lambda: agent.status()["key_rejected"], 30, "the key rejected")
    result = doctor("--config", agent.config, secret="dk_revoked_key_for_agent_0000")
    assert sorted(result.failed()) == ["agent.ready", "key.accepted"]
    assert "key rejected" in result.checks["agent.ready"]["detail"]


def test_agent_spool_waiting_while_endpoint_fails(make_agent, receiver):
    agent = make_agent()
    assert agent.start().code == 0
    receiver.set_faults(Faults(fail_first=10**9, fail_status=503, retry_after=0.1))
    agent.send([EVENT])
    wait_for(lambda: not agent.status()["ready"], 30, "the agent to notice")
    result = doctor("--config", agent.config)
    assert "agent.ready" in result.failed()
    assert "1 events waiting" in result.checks["agent.spool"]["detail"]
    assert "503" in result.checks["agent.last_error"]["detail"]


def test_invalid_config_names_the_key(write_config):
    config = write_config({"apiKey": KEY, "flushAt": "x", "endpoint": "http://127.0.0.1:1"})
    result = doctor("--config", config)
    assert result.code == 1 and result.failed() == ["config.schema"]
    assert "$.flushAt" in result.checks["config.schema"]["detail"]
    assert result.status("endpoint.dns") == "skip" and result.status("agent.running") == "skip"


def test_malformed_key_fails_the_format_check_without_showing_it(write_config):
    secret = "not_a_dk_key_but_secret"
    config = write_config({"apiKey": secret})
    result = doctor("--config", config, secret=secret)
    assert "key.format" in result.failed()
    assert "value not shown" in result.checks["key.format"]["detail"]


def test_missing_config_named_explicitly_fails(tmp_path):
    result = doctor("--config", str(tmp_path / "nope.json"))
    assert result.failed() == ["config.file"]


def test_world_readable_key_is_a_warning(receiver, write_config):
    config = write_config({"apiKey": KEY, "endpoint": receiver.url}, mode=0o644)
    result = doctor("--config", config)
    assert result.code == 0
    assert result.status("config.permissions") == "warn"
    assert "chmod 600" in result.checks["config.permissions"]["hint"]


def test_key_on_the_command_line_is_a_warning(receiver):
    result = doctor("--api-key", KEY, "--endpoint", receiver.url)
    assert result.code == 0 and result.status("key.present") == "warn"


def test_invalid_events_counted_by_kind(pipe_config, tmp_path):
    events = tmp_path / "usage.ndjson"
    events.write_bytes(lines(EVENT, {**EVENT, "quantity": "5"}) + b"{not json\n")
    result = doctor("--config", pipe_config, "--events", str(events))
    assert result.failed() == ["events.file"]
    detail = result.checks["events.file"]["detail"]
    assert "3 lines, 1 valid, 2 invalid" in detail and "line 2: $.quantity" in detail


def test_same_key_in_staging_and_production(pipe_config, write_config, receiver):
    staging = write_config({"apiKey": KEY, "endpoint": receiver.url}, name="staging.json")
    result = doctor("--config", pipe_config, "--other-config", staging)
    assert result.code == 0 and result.status("environment.keys") == "warn"
    other = write_config({"apiKey": "dk_staging_own_key_77"}, name="other.json")
    assert doctor("--config", pipe_config, "--other-config", other).status("environment.keys") == "ok"


def test_key_from_environment(receiver):
    result = doctor("--endpoint", receiver.url, env={"DOOW_TRACK_API_KEY": KEY})
    assert result.status("key.present") == "ok" and "DOOW_TRACK_API_KEY" in result.checks["key.present"]["detail"]
    assert result.status("key.accepted") == "ok"


def test_missing_key_fails(receiver, write_config):
    result = doctor("--config", write_config({"endpoint": receiver.url}))
    assert result.failed() == ["key.present"]
    assert result.status("key.accepted") == "skip" and result.status("endpoint.http") == "ok"


def test_help_has_examples():
    result = run(["doctor", "--help"])
    assert result.code == 0 and "examples:" in result.out and "exit status" in result.out
