"""The health listener: /readyz follows deliveries, /metrics is Prometheus text, /status the contract."""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

from tests.support.agent import EVENT, assert_stored_exactly_once, fail_receiver, heal_receiver, wait_for

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_SAMPLE = re.compile(rf"^({_NAME})(\{{(?:{_NAME}=\"(?:[^\"\\\\]|\\\\.)*\",?)*\}})? (\S+)(?: (-?\d+))?$")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_prometheus(text: str) -> Dict[str, List[Tuple[str, float]]]:
    """A strict little parser of the text exposition format (0.0.4): fails on any malformed line."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types: Dict[str, str] = {}
    samples: Dict[str, List[Tuple[str, float]]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("# HELP "):
            assert re.match(rf"^# HELP {_NAME} .+$", line), f"line {number}: {line!r}"
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert kind in _TYPES and name not in types, f"line {number}: {line!r}"
            types[name] = kind
        else:
            match = _SAMPLE.match(line)
            assert match, f"line {number} is not a sample: {line!r}"
            name, labels, value = match.group(1), match.group(2) or "", float(match.group(3))
            assert name in types, f"line {number}: {name} has no TYPE before its samples"
            if types[name] == "counter":
                assert name.endswith("_total") and value >= 0
            samples.setdefault(name, []).append((labels, value))
    return samples


def test_metrics_parse_as_prometheus_text(agent, receiver):
    replies = agent.send([EVENT] * 5)
    assert_stored_exactly_once(receiver, [reply["event_id"] for reply in replies])
    wait_for(lambda: agent.status()["spool"]["events"] == 0, 10, "the delivered events removed from the spool")
    status, text = agent.get("/metrics")
    assert status == 200
    metrics = parse_prometheus(text)
    assert (f'{{name="{agent.socket}",outcome="accepted",source="socket"}}', 5.0) \
        in metrics["doow_track_received_events_total"]
    assert ('{outcome="delivered"}', 5.0) in metrics["doow_track_sent_events_total"]
    assert metrics["doow_track_ready"] == [("", 1.0)]
    assert metrics["doow_track_spool_events"] == [("", 0.0)]
    assert "doow_track_last_success_timestamp_seconds" in metrics
    assert "dk_" not in text


def test_readyz_is_503_while_the_receiver_fails_and_200_after(agent, receiver):
    assert agent.get("/healthz") == (200, "ok\n")
    assert agent.get("/readyz")[0] == 200
    fail_receiver(receiver, 503)
    replies = agent.send([EVENT] * 3)
    wait_for(lambda: agent.get("/readyz")[0] == 503, 15, "/readyz 503")
    assert "deliveries failing" in agent.get("/readyz")[1]
    assert agent.get("/healthz")[0] == 200, "alive even when not ready"
    assert agent.status()["spool"]["events"] == 3

    heal_receiver(receiver)
    wait_for(lambda: agent.get("/readyz")[0] == 200, 30, "/readyz 200 again")
    assert_stored_exactly_once(receiver, [reply["event_id"] for reply in replies])


def test_status_has_the_contract_fields_and_never_the_key(agent):
    status, text = agent.get("/status")
    assert status == 200 and "dk_test" not in text
    document = agent.status()
    for key in ("running", "ready", "pid", "version", "uptime_seconds", "generation", "key", "endpoint",
                "spool", "counters", "last_success", "last_error", "key_rejected"):
        assert key in document
    assert set(document["spool"]) >= {"events", "bytes", "oldest_age_seconds", "max_bytes", "full", "dead_letters"}
    assert set(document["counters"]) == {"accepted", "invalid", "delivered", "rejected", "dead_lettered",
                                         "requests", "retries"}
    assert agent.get("/nope")[0] == 404
