#!/usr/bin/env python3
"""Rollout figures for the mixed-Python fleet (4 hosts: 3 local on Python 3.9,
3.11 and 3.12, and one over SSH on 3.12).

Builds the runtime's wheel and, with the collection's wheelhouse playbook, one
offline wheelhouse per Python; starts a local receiver and an sshd on
127.0.0.1; then runs the rollout four times:

1. first rollout: an offline install on every host, from the same bundle;
2. no-change re-run: expects 0 changed;
3. configuration change: expects a reload on every host, same pids;
4. failed gate: a valid but undeliverable endpoint with serial 1; expects the
   rollout to stop after the first batch, the canary back on its last good
   configuration (same pid), and every host still delivering.

Prints wall time and changed/failed counts per host, and the checks, then
uninstalls.

    .venv/bin/python bench/rollout.py [--keep]

Figures are printed, not asserted (tests/ansible asserts behaviour).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ansible"))

import doow_fleet  # noqa: E402


def delivering(fleet) -> bool:
    """One event per host through its agent: True when all arrive at the receiver."""
    ids = {h: f"bench-{h}-{uuid.uuid4().hex[:8]}" for h in doow_fleet.HOSTS}
    for host, event_id in ids.items():
        fleet.send(host, metric="bench", quantity=1, license_id="lic_bench", event_id=event_id)
    return all(fleet.receiver.wait_for(event_id=event_id, timeout=30) for event_id in ids.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the fleet's directory (logs) afterwards")
    args = parser.parse_args()

    root = doow_fleet.make_root()
    t0 = time.monotonic()
    fleet, cleanup = doow_fleet.setup(root)
    setup_s = time.monotonic() - t0
    hosts = doow_fleet.HOSTS
    changed_attribution = {"doow_track_attribution": {"host": "{{ inventory_hostname }}", "release": "bench"}}
    dead = doow_fleet.free_port()
    runs = (
        ("first rollout (offline install)", {}),
        ("no-change re-run", {}),
        ("config change (reload)", changed_attribution),
        ("failed gate (serial 1)", dict(changed_attribution, doow_track_endpoint=f"http://127.0.0.1:{dead}",
                                        doow_track_health_timeout=8, doow_track_rollout_serial=1)),
    )
    rows, notes = [], []
    try:
        for label, extra in runs:
            pids = {h: fleet.status(h).get("pid") for h in hosts}
            t = time.monotonic()
            res = fleet.playbook("rollout.yml", extra=extra or None, name=label.split(" (")[0].replace(" ", "-"))
            wall = time.monotonic() - t
            rows.append((label, wall, res.returncode, doow_fleet.recap(res.stdout)))
            if label.startswith(("config", "failed")):
                same = all(fleet.status(h).get("pid") == pids[h] for h in hosts)
                notes.append(f"{label}: same pids on every host: {same}")
            if label.startswith("failed"):
                reached = sorted(doow_fleet.recap(res.stdout))
                notes.append(f"{label}: hosts reached: {reached}; every host delivering afterwards: "
                             f"{delivering(fleet)}")
        t = time.monotonic()
        res = fleet.playbook("uninstall.yml", name="bench-uninstall")
        uninstall_s = time.monotonic() - t
    finally:
        cleanup()

    pythons = ", ".join(f"{h} {v}" for h, v in doow_fleet.HOST_PYTHONS.items())
    print(f"fleet: {len(hosts)} hosts ({pythons}; {doow_fleet.SSH_HOST} over SSH), serial [1, 50%], "
          f"setup (wheel, per-Python wheelhouse, receiver, sshd) {setup_s:.1f}s")
    for label, wall, rc, counts in rows:
        changed = {h: c["changed"] for h, c in sorted(counts.items())}
        failed = sum(c["failed"] for c in counts.values())
        print(f"{label:32s} wall {wall:6.1f}s  rc={rc}  changed total={sum(changed.values())}  failed={failed}  "
              f"per host={changed}")
    print(f"{'uninstall':32s} wall {uninstall_s:6.1f}s  rc={res.returncode}")
    for note in notes:
        print(note)
    print(f"logs: {fleet.log_dir}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
