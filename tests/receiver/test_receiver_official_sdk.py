"""The official Python SDK (doow-track 0.1.2 from PyPI) delivers to the receiver, unchanged.

The SDK lives in its own virtualenv (.venv-sdk/ at the repository root, kept
between runs): its wheel installs a `doow-track` console script that would
replace ours in the project's venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from doow_track_agent.receiver.server import Receiver

SDK = "doow-track==0.1.2"
SDK_VENV = Path(__file__).resolve().parents[2] / ".venv-sdk"

# Runs inside the SDK's venv: track N events, flush, print the SDK's event ids
# and any error it reported. flush_at above N so that shutdown() sends every
# batch itself; the SDK's own flush threads are daemons that exit could cut.
SDK_SCRIPT = """
import json, sys
from doow_track import EventKind, Tracker, TrackerOptions, TrackEvent
from doow_track.types import MetricTupleHint

url, count = sys.argv[1], int(sys.argv[2])
ids, errors = [], []

def remember(event):
    ids.append(event.event_id)
    return event

options = TrackerOptions(endpoint=url, flush_at=count + 1, flush_interval=3600, retry_count=0,
                         attribution={"env": "ci"}, before_send=remember,
                         on_error=lambda error: errors.append(str(error)))
tracker = Tracker("dk_official_sdk", options)
hint = MetricTupleHint(app_name="chat", license_name="API", metric_name="tokens")
for i in range(count):
    tracker.track(TrackEvent(
        metric="tokens" if i % 2 else "api_calls", quantity=i + 1, license_id="lic_sdk",
        unit="tokens" if i % 3 else None, kind=EventKind.ADJUSTMENT if i % 5 == 0 else EventKind.USAGE,
        attribution={"i": str(i)}, metadata={"n": i} if i % 7 == 0 else None,
        metric_tuple_hint=hint if i % 11 == 0 else None,
    ))
tracker.shutdown()
print(json.dumps({"ids": ids, "errors": errors}))
"""


@pytest.fixture(scope="session")
def sdk_python() -> str:
    """The SDK venv's interpreter, creating the venv and installing the SDK when needed."""
    python = SDK_VENV / "bin" / "python"
    if not _has_sdk(python):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(SDK_VENV)], check=True, timeout=300)
        install = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", SDK],
            capture_output=True, text=True, timeout=600,
        )
        assert install.returncode == 0, f"cannot install {SDK} from PyPI:\n{install.stderr}"
    return str(python)


def _has_sdk(python: Path) -> bool:
    check = "import doow_track, sys; sys.exit(doow_track.__version__ != '0.1.2')"
    return python.exists() and subprocess.run([str(python), "-c", check], capture_output=True).returncode == 0


def _run_sdk(python: str, script: str, *args: str) -> subprocess.CompletedProcess:
    """Run a script with the SDK, without DOOW_TRACK_* variables (they override its options)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOOW_TRACK_")}
    result = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    return result


def test_the_official_sdk_delivers_every_event(sdk_python, receiver):
    result = _run_sdk(sdk_python, SDK_SCRIPT, receiver.url, "1200")

    sent = json.loads(result.stdout.splitlines()[-1])
    assert sent["errors"] == []
    assert len(sent["ids"]) == 1200
    assert receiver.store.event_ids() == set(sent["ids"])
    stats = receiver.stats()
    assert stats["requests_by_status"] == {"202": 3}, "1200 events make batches of 500, 500 and 200"
    assert stats["gzip_requests"] == 3 and stats["quantity"] == sum(range(1, 1201))
    hinted = receiver.store.raw_event(sent["ids"][0])
    assert hinted["measurements"][0]["metric_tuple_hint"]["app_name"] == "chat"
    assert hinted["kind"] == "ADJUSTMENT" and hinted["attribution"] == {"env": "ci", "i": "0"}


def test_the_official_management_client_reads_a_license(sdk_python, db_path):
    script = (
        "import sys\n"
        "from doow_track import APIError, Management, ManagementOptions\n"
        "with Management('dk_official_sdk', ManagementOptions(endpoint=sys.argv[1])) as mgmt:\n"
        "    print(mgmt.licenses.get('lic_real').id)\n"
        "    try:\n"
        "        mgmt.licenses.get('lic_missing')\n"
        "    except APIError as error:\n"
        "        print(error.status)\n"
    )
    with Receiver(db_path, licenses=["lic_real"]) as receiver:
        result = _run_sdk(sdk_python, script, receiver.url)
    assert result.stdout.split() == ["lic_real", "404"]
