#!/usr/bin/env python3
"""Rollout figures for the 4-host inventory (3 local hosts + 1 over SSH).

Builds the runtime's wheel and a wheelhouse, starts a local receiver and an
sshd on 127.0.0.1, then runs playbooks/rollout.yml twice: from nothing (an
offline install on every host) and again with nothing to change.  Prints the
wall time and the changed count per host of each run, then uninstalls.

    .venv/bin/python bench/rollout.py [--keep]

Figures are printed, not asserted (tests/ansible asserts behaviour).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "ansible"))

import doow_fleet  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", action="store_true", help="keep the fleet's directory (logs) afterwards")
    args = parser.parse_args()

    root = doow_fleet.make_root()
    t0 = time.monotonic()
    fleet, cleanup = doow_fleet.setup(root)
    setup_s = time.monotonic() - t0
    rows = []
    try:
        for label, name in (("first rollout (offline install)", "bench-first"), ("no-change re-run", "bench-again")):
            t = time.monotonic()
            res = fleet.playbook("rollout.yml", name=name)
            wall = time.monotonic() - t
            counts = doow_fleet.recap(res.stdout)
            rows.append((label, wall, res.returncode, counts))
        t = time.monotonic()
        res = fleet.playbook("uninstall.yml", name="bench-uninstall")
        uninstall_s = time.monotonic() - t
    finally:
        cleanup()

    print(f"fleet: {len(doow_fleet.HOSTS)} hosts ({', '.join(doow_fleet.HOSTS)}; {doow_fleet.SSH_HOST} over SSH), "
          f"serial [1, 50%], setup (wheel, wheelhouse, receiver, sshd) {setup_s:.1f}s")
    for label, wall, rc, counts in rows:
        changed = {h: c["changed"] for h, c in sorted(counts.items())}
        total = sum(changed.values())
        print(f"{label:34s} wall {wall:6.1f}s  rc={rc}  changed total={total}  per host={changed}")
    print(f"{'uninstall':34s} wall {uninstall_s:6.1f}s  rc={res.returncode}")
    print(f"logs: {fleet.log_dir}" if args.keep else "")
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(rc == 0 for _, _, rc, _ in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
