"""The receiver's page, as a browser shows it: headless Chromium against a real ``doow-track receiver``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Iterator, List

import httpx
import pytest

from tests.receiver.wire import KEY, make_batch, make_event
from tests.support.agent import wait_for
from tests.support.cli import BIN, base_env, run

HOSTILE_LICENSE = "<script>alert('license')</script>&\""
HOSTILE_METRIC = "<img src=x onerror=alert(1)>"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def served(tmp_path) -> Iterator[str]:
    """``doow-track receiver`` as a process on a free loopback port; yields its URL."""
    ready = tmp_path / "url"
    process = subprocess.Popen([BIN, "receiver", "--listen", "127.0.0.1:0", "--ready-file", str(ready),
                                "--db", str(tmp_path / "r.sqlite")], env=base_env(), stderr=subprocess.PIPE)
    try:
        wait_for(ready.exists, 20, "the receiver to listen")
        yield ready.read_text().strip()
    finally:
        process.terminate()
        process.wait(timeout=20)


def _browser(url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={profile}", *args, url],
        capture_output=True, text=True, timeout=90, check=False)


def _arrive(url: str) -> List[str]:
    """Events through the real pipe mode, then hostile names, a duplicate and a rejection by raw HTTP."""
    lines = "".join('{"metric":"api_calls","quantity":%d,"license_id":"lic_page"}\n' % n for n in (1, 2, 3))
    assert run(["--api-key", KEY, "--endpoint", url], stdin=lines).code == 0
    hostile = make_event(license_id=HOSTILE_LICENSE, measurements=[{"metric_name": HOSTILE_METRIC, "quantity": 7}])
    refused = make_event(license_id=HOSTILE_LICENSE, occurred_at="yesterday")
    headers = {"Authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
        assert client.post("/telemetry/events", json=make_batch([hostile])).status_code == 202
        answer = client.post("/telemetry/events", json=make_batch([hostile, refused]))
    assert answer.status_code == 207 and answer.json()["duplicates"] == 1
    return [hostile["event_id"], refused["event_id"]]


def test_page_shows_what_arrived_escaped_and_only_to_loopback(served):
    hostile_id, refused_id = _arrive(served)
    page = httpx.get(served + "/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src" not in policy and "'unsafe-inline'" not in policy
    html = page.text
    assert "<script" not in html and "<img" not in html, "a hostile name reached the page unescaped"
    assert "&lt;script&gt;alert(&#x27;license&#x27;)&lt;/script&gt;&amp;&quot;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "occurred_at must be an ISO 8601 timestamp with a time zone" in html and refused_id in html
    assert "HTTP 207" in html and '<meta http-equiv="refresh"' in html

    assert httpx.get(served + "/", headers={"Host": "attacker.example:8080"}).status_code == 403
    assert httpx.get(served + "/", headers={"Host": "127.evil.example"}).status_code == 403
    assert httpx.post(served + "/", content=b"x").status_code == 405


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test installs it)")
def test_page_in_headless_chromium_after_events_arrive(served, tmp_path):
    _arrive(served)
    dom = _browser(served + "/", tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert '<table id="recent-events">' in text and "lic_page" in text and "api_calls" in text
    assert "<script" not in text and "<img" not in text, "the browser built an element from a hostile name"
    assert "&lt;img src=x onerror=alert(1)&gt;" in text and "&lt;script&gt;alert('license')&lt;/script&gt;" in text

    shot = tmp_path / "receiver-page.png"
    taken = _browser(served + "/", tmp_path / "profile-shot", f"--screenshot={shot}", "--window-size=1280,900",
                     "--hide-scrollbars")
    assert taken.returncode == 0, taken.stderr[-2000:]
    wait_for(lambda: shot.exists() and shot.stat().st_size > 10_000, 10, "the screenshot")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
