"""Pipe mode end to end: real doow-track processes, the real receiver over real HTTP."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from doow_track_agent import samples
from tests.support import cli
from tests.support.cli import KEY, lines

EVENT = {"metric": "api_calls", "quantity": 1, "license_id": "lic_abc123"}


def send(receiver, data: bytes, *args: str, env=None, timeout: float = 120) -> cli.Result:
    return cli.run(["--api-key", KEY, "--endpoint", receiver.url, "--flush-interval", "100", *args],
                   stdin=data, env=env, timeout=timeout)


def test_the_seeds_exact_command(receiver, tmp_path):
    """echo '{...}' | doow-track --api-key dk_... (endpoint from the environment, as users set it)."""
    done = subprocess.run(
        f"echo '{json.dumps(EVENT)}' | {cli.BIN} --api-key {KEY}", shell=True, capture_output=True,
        env=cli.base_env({"DOOW_TRACK_ENDPOINT": receiver.url, "HOME": str(tmp_path)}), timeout=60)
    assert done.returncode == 0, done.stderr
    assert KEY.encode() not in done.stderr + done.stdout
    assert receiver.store.count() == 1
    assert b"delivered 1" in done.stderr


def test_config_file_in_the_seeds_format(receiver, tmp_path):
    config = tmp_path / "doow-track.json"
    config.write_text(json.dumps({"apiKey": KEY, "endpoint": receiver.url, "flushAt": 20, "flushInterval": 10000,
                                  "attribution": {"env": "prod", "service": "billing-worker"}}))
    config.chmod(0o600)
    result = cli.run(["--config", str(config), "--json"], stdin=lines(EVENT, {**EVENT, "attribution": {"env": "dev"}}))
    assert result.code == 0, result.err
    attributions = sorted(json.dumps(a, sort_keys=True) for a in receiver.store.attributions())
    assert attributions == [json.dumps({"env": "dev", "service": "billing-worker"}, sort_keys=True),
                            json.dumps({"env": "prod", "service": "billing-worker"}, sort_keys=True)]


def test_every_valid_line_arrives_exactly_once_in_full_batches(receiver):
    data = b"\n".join(samples.lines(10_000)) + b"\n"
    result = send(receiver, data, "--json")
    summary = result.json
    assert result.code == 0, result.err
    assert (summary["valid"], summary["delivered"]) == (10_000, 10_000)
    assert receiver.store.count() == 10_000 and receiver.store.duplicates() == 0
    assert summary["requests"] <= 40, "a backlog must fill batches, not send 500 requests of 20"


def test_invalid_lines_are_reported_by_number_and_the_rest_delivered(receiver):
    data = lines(EVENT) + b'{"metric":"api_calls","quantity":"1","license_id":"l"}\n\n' + lines(EVENT) + b"{oops\n"
    result = send(receiver, data, "--json")
    assert result.code == 65
    assert "stdin:2: $.quantity:" in result.err and "stdin:5: $: invalid JSON" in result.err
    assert [e["line"] for e in result.json["errors"]] == [2, 5]
    assert receiver.store.count() == 2


def test_207_rejections_go_to_the_rejects_file_with_reasons(receiver, tmp_path):
    receiver.set_faults(reject_every=4)
    rejects = tmp_path / "rejects.ndjson"
    result = send(receiver, b"\n".join(samples.lines(40)) + b"\n", "--rejects", str(rejects), "--json")
    assert result.code == 65
    assert (result.json["delivered"], result.json["rejected"]) == (30, 10)
    refused = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert len(refused) == 10 and all(r["reason"] and r["event"]["event_id"] for r in refused)
    assert receiver.store.count() == 30


def test_400_rejects_the_batch_without_retry(receiver, tmp_path):
    receiver.set_faults(fail_first=1, fail_status=400)
    result = send(receiver, lines(EVENT), "--rejects", str(tmp_path / "r.ndjson"), "--json")
    assert result.code == 65 and result.json["rejected"] == 1 and result.json["requests"] == 1


@pytest.mark.parametrize("status", [429, 503, 500, 408])
def test_transient_failures_are_retried_until_delivered(receiver, status):
    receiver.set_faults(fail_first=2, fail_status=status, retry_after=0)
    result = send(receiver, lines(EVENT, EVENT), "--json")
    assert result.code == 0, result.err
    assert result.json["requests"] == 3 and receiver.store.count() == 2


def test_401_exits_77_at_once_and_keeps_the_events(receiver, tmp_path):
    receiver.set_faults(fail_first=1000, fail_status=401)
    outbox = tmp_path / "outbox.ndjson"
    started = time.monotonic()
    result = send(receiver, b"\n".join(samples.lines(50)) + b"\n", "--outbox", str(outbox), "--json")
    assert result.code == 77
    assert time.monotonic() - started < 10
    assert result.json["requests"] <= 4
    assert len(outbox.read_text().splitlines()) == 50


def test_413_halves_the_batch_until_it_fits(receiver):
    receiver.set_faults(max_events=60)
    result = send(receiver, b"\n".join(samples.lines(200)) + b"\n", "--flush-at", "200", "--json")
    assert result.code == 0, result.err
    assert receiver.store.count() == 200 and receiver.store.duplicates() == 0


def test_bodies_over_1_kib_are_gzipped(receiver):
    send(receiver, b"\n".join(samples.lines(100)) + b"\n")
    assert receiver.stats()["gzip_requests"] >= 1


def test_unreachable_endpoint_exits_75_with_a_usable_outbox(receiver, tmp_path, free_port):
    outbox = tmp_path / "outbox.ndjson"
    data = b"\n".join(samples.lines(30)) + b"\n"
    result = cli.run(["--api-key", KEY, "--endpoint", f"http://127.0.0.1:{free_port}", "--outbox", str(outbox),
                      "--json"], stdin=data, env={"DOOW_TRACK_FLUSH_INTERVAL": "50"}, timeout=90)
    assert result.code == 75
    assert result.json["outboxed"] == 30 and result.json["delivered"] == 0
    assert f"DOOW_TRACK_API_KEY=... doow-track --endpoint http://127.0.0.1:{free_port} < {outbox}" in result.err
    replay = send(receiver, outbox.read_bytes(), "--json")
    assert replay.code == 0 and receiver.store.count() == 30
    assert sorted(replay.json["event_ids"]) == sorted(result.json["event_ids"])


def test_replaying_an_outbox_twice_stores_nothing_twice(receiver, tmp_path):
    outbox = tmp_path / "outbox.ndjson"
    receiver.set_faults(fail_first=1000, fail_status=503, retry_after=0)
    first = send(receiver, b"\n".join(samples.lines(20)) + b"\n", "--outbox", str(outbox),
                 env={"HOME": str(tmp_path)})
    assert first.code == 75
    receiver.set_faults()
    for _ in range(2):
        assert send(receiver, outbox.read_bytes()).code == 0
    assert receiver.store.count() == 20 and receiver.store.duplicates() == 20


def test_config_errors_exit_78_naming_the_key(tmp_path):
    config = tmp_path / "c.json"
    config.write_text(json.dumps({"apiKey": KEY, "flushAt": "soon"}))
    result = cli.run(["--config", str(config)], stdin=lines(EVENT))
    assert result.code == 78 and "$.flushAt" in result.err
    result = cli.run(["--api-key", "sk_live_nope"], stdin=lines(EVENT), secret="sk_live_nope")
    assert result.code == 78 and "--api-key" in result.err and "dk_" in result.err
    assert cli.run([], stdin=lines(EVENT)).code == 78


def test_usage_errors_exit_64():
    assert cli.run(["--flush-at", "many"], stdin=b"").code == 64


def test_sigterm_mid_file_outboxes_exactly_what_was_not_delivered(receiver, tmp_path):
    receiver.set_faults(latency_ms=300)
    outbox = tmp_path / "outbox.ndjson"
    data = b"\n".join(samples.lines(3000)) + b"\n"
    (tmp_path / "in.ndjson").write_bytes(data)
    with open(tmp_path / "in.ndjson", "rb") as stdin:
        process = subprocess.Popen([cli.BIN, "--api-key", KEY, "--endpoint", receiver.url, "--flush-at", "50",
                                    "--concurrency", "1", "--outbox", str(outbox), "--json"],
                                   stdin=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli.base_env())
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    summary = json.loads(out)
    assert process.returncode == 75, err
    assert KEY.encode() not in out + err
    outboxed = {json.loads(line)["event_id"] for line in outbox.read_text().splitlines()} if outbox.exists() else set()
    delivered = receiver.store.event_ids()
    assert not outboxed & delivered
    assert len(outboxed) + len(delivered) == summary["valid"] == summary["lines_read"]
    assert summary["delivered"] == len(delivered)
    assert b"interrupted by SIGTERM" in err


def test_dry_run_sends_nothing(receiver):
    result = send(receiver, lines(EVENT, EVENT), "--dry-run", "--json")
    assert result.code == 0 and result.json["valid"] == 2 and receiver.store.count() == 0
    assert receiver.stats()["requests_total"] == 0


def test_help_and_version():
    assert cli.run(["--version"]).out.startswith("doow-track ")
    help_text = cli.run(["--help"]).out
    assert "doow-track --api-key" in help_text.replace("\\\n    | ", "") or "| doow-track --api-key" in help_text
    for command in ("check", "schema", "receiver", "demo"):
        assert "examples:" in cli.run([command, "--help"]).out


def test_schema_command_prints_the_shipped_schema():
    schema = json.loads(cli.run(["schema"]).out)
    assert schema["$schema"].endswith("2020-12/schema") and set(schema["required"]) == {"metric", "quantity", "license_id"}
    assert "apiKey" in json.loads(cli.run(["schema", "--config"]).out)["properties"]


def test_demo_runs_end_to_end(tmp_path):
    result = cli.run(["demo"], env={"HOME": str(tmp_path)}, secret="dk_demo_local_receiver_only")
    assert result.code == 0, result.err
    assert "lic_acme_prod" in result.out and "api_calls" in result.out
