"""/metrics as Prometheus' own tools see it, and the shipped alerting rules and Grafana dashboard on top of it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, List, Set

import pytest
import yaml

from tests.agent.test_health import parse_prometheus
from tests.support.agent import EVENT, wait_for

MONITORING = Path(__file__).resolve().parents[2] / "monitoring"
RULES = MONITORING / "doow-track.rules.yml"
DASHBOARD = MONITORING / "doow-track.grafana.json"
# Series Prometheus itself makes for every target, not the agent.
SCRAPE_SERIES = {"up"}
_PROMQL_WORDS = {"and", "or", "unless", "offset", "bool"}

needs_promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                                    reason="promtool is not installed (scripts/test installs Debian's prometheus)")


def _promtool(*args: str, stdin: str = "", cwd: Path = MONITORING) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, text=True, cwd=cwd, timeout=60,
                          check=False)


def metric_names(expr: str) -> Set[str]:
    """The series names a PromQL expression selects: identifiers outside strings, matchers, ranges and calls."""
    bare = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", bare)
    names = set()
    for match in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", bare):
        followed = bare[match.end():].lstrip()[:1]
        if followed != "(" and match.group() not in _PROMQL_WORDS and not bare[:match.start()].endswith("$"):
            names.add(match.group())
    return names


def _dashboard_exprs() -> List[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    assert exprs and all(panel["targets"] for panel in dashboard["panels"]), "a panel without a query"
    return exprs


def _rule_exprs() -> List[str]:
    return [rule["expr"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def _exported(text: str) -> Set[str]:
    return {line.split(" ")[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def _unknown(exprs: Iterable[str], exported: Set[str]) -> Set[str]:
    return {name for expr in exprs for name in metric_names(expr)} - exported - SCRAPE_SERIES


def test_metric_names_are_read_from_promql():
    assert metric_names('sum by (instance) (rate(doow_track_x_total{outcome="a{b}", i=~"$instance"}[$__rate_interval]))'
                        ' / on (instance) group_left() doow_track_y or vector(0)') == {"doow_track_x_total",
                                                                                     "doow_track_y"}


@needs_promtool
def test_live_metrics_pass_promtool_and_serve_every_name_the_dashboard_and_rules_use(make_agent, receiver, tmp_path):
    tailed = tmp_path / "usage.ndjson"
    tailed.write_text(json.dumps(EVENT) + "\n" + json.dumps(EVENT) + "\n{broken\n")
    agent = make_agent(input={"mode": "file", "path": str(tailed)})
    assert agent.start().code == 0
    assert all(reply["ok"] for reply in agent.send([EVENT] * 5))
    wait_for(lambda: agent.status()["counters"]["delivered"] == 7 and agent.status()["spool"]["events"] == 0, 20,
             "7 events delivered")
    assert receiver.store.count() == 7
    status, text = agent.get("/metrics")
    assert status == 200

    checked = _promtool("check", "metrics", stdin=text)
    assert checked.returncode == 0 and not (checked.stdout + checked.stderr).strip(), checked.stdout + checked.stderr

    samples = parse_prometheus(text)
    received = dict(samples["doow_track_received_events_total"])
    assert received[f'{{name="{agent.socket}",outcome="accepted",source="socket"}}'] == 5
    assert received[f'{{name="{tailed}",outcome="accepted",source="file"}}'] == 2
    assert received[f'{{name="{tailed}",outcome="invalid",source="file"}}'] == 1
    assert dict(samples["doow_track_sent_events_total"])['{outcome="delivered"}'] == 7
    assert samples["doow_track_file_read_bytes"] == [(f'{{name="{tailed}"}}', float(tailed.stat().st_size))]
    assert "process_resident_memory_bytes" in samples

    exported = _exported(text)
    assert not _unknown(_dashboard_exprs(), exported), "the dashboard queries metrics the agent does not export"
    assert not _unknown(_rule_exprs(), exported), "an alert rule queries metrics the agent does not export"


@needs_promtool
def test_alerting_rules_pass_promtool_and_each_alert_is_tripped_by_a_test_series():
    checked = _promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = _promtool("test", "rules", "doow-track.rules.test.yml")
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr

    alerts = {rule["alert"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]}
    cases = yaml.safe_load((MONITORING / "doow-track.rules.test.yml").read_text())["tests"]
    tripped = {check["alertname"] for case in cases for check in case["alert_rule_test"] if check["exp_alerts"]}
    assert tripped == alerts, f"alerts no test series trips: {alerts - tripped}"
    assert {"DoowTrackAgentDown", "DoowTrackDeliveriesFailing", "DoowTrackKeyRejected", "DoowTrackSpoolGrowing",
            "DoowTrackSpoolStale", "DoowTrackDeadLetters"} <= alerts
