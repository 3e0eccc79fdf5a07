"""One event end to end (issue 16): the seed's pipe command, process start to exit, against the floor and Node.

Prints figures and ratios; asserts nothing.  Run: .venv/bin/python bench/one_event.py [--runs 7]

Each round runs, in this order, every command once against the same local
receiver (its own process), so machine load hits them alike:

* floor: a minimal script doing only what this stack cannot skip: start the
  interpreter, import asyncio and httpx, create an ``httpx.AsyncClient`` and
  POST one request.  Printed three times: with httpx's default client (it
  builds the certifi TLS context even for an http endpoint), with no TLS
  context (what doow-track does for http endpoints), and sent as doow-track
  sends (httpx's blocking transport on a daemon thread, the cycle collector
  off during start-up and frozen at exit);
* doow-track: ``echo '{...}' | doow-track --api-key dk_... --endpoint URL``;
* Node: the official CLI ``@doow/track`` 0.1.4 with ``DOOW_TRACK_ENDPOINT``;
* ``doow-track --help`` and ``--version``.

Wall time is start to exit; CPU is the child's user+sys (``wait4``).  The
medians are printed with the ratios doow-track / floor and doow-track / Node.
A first, uncounted round lets Python write its bytecode, as ``pip install``
does (PYTHONDONTWRITEBYTECODE is cleared for the children).  Measure an
installation as users have it with ``--venv DIR`` (``python -m venv DIR &&
DIR/bin/pip install .``): in the test venv httpx also imports click and
pygments (its optional command line), which costs floor and doow-track alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

NODE_CLI = os.environ.get("DOOW_TRACK_NODE_CLI", "/work/shared/anchors/doow-track-node-0.1.4/cli.cjs")
KEY = "dk_bench_local_only"
EVENT = b'{"metric":"api_calls","quantity":1,"license_id":"lic_abc123"}\n'

_FLOOR = """
import asyncio, sys
import httpx
async def main():
    async with httpx.AsyncClient(base_url=sys.argv[1]{verify}) as client:
        await client.post("/telemetry/events", content=sys.argv[2].encode(), headers={{"Authorization": "Bearer x"}})
asyncio.run(main())
"""
FLOOR_DEFAULT = _FLOOR.format(verify="")
# ssl is imported by httpx anyway; a bare context loads no trust store, which is what costs.
FLOOR_NO_TLS = "import ssl\n" + _FLOOR.format(verify=", verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)")
# The same floor sent the way doow-track sends since session 4: httpx's blocking transport on a daemon thread
# awaited from the loop (anyio's event-loop machinery never loads), the collector off during start-up and
# frozen at exit (see doow_track_agent/collector.py).
FLOOR_AS_DOOW_TRACK = """
import gc
gc.disable()
import asyncio, ssl, sys, threading
import httpx
async def main():
    client = httpx.Client(base_url=sys.argv[1], verify=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    def post():
        answer = client.post("/telemetry/events", content=sys.argv[2].encode(), headers={"Authorization": "Bearer x"})
        loop.call_soon_threadsafe(done.set_result, answer.status_code)
    threading.Thread(target=post, daemon=True).start()
    await done
    client.close()
asyncio.run(main())
gc.freeze()
"""


def start_receiver(doow_track: str, workdir: str) -> Tuple[subprocess.Popen, str]:
    ready = os.path.join(workdir, "ready")
    process = subprocess.Popen([doow_track, "receiver", "--listen", "127.0.0.1:0",
                                "--db", os.path.join(workdir, "receiver.sqlite"), "--ready-file", ready],
                               stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while not (os.path.exists(ready) and open(ready).read().strip()):
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit("receiver did not start")
        time.sleep(0.05)
    return process, open(ready).read().strip()


def timed(command: List[str], stdin: Optional[bytes], env: Dict[str, str]) -> Tuple[float, float, int]:
    """(wall ms, CPU ms user+sys, exit status) of one run, start to exit."""
    started = time.perf_counter()
    child = subprocess.Popen(command, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    if stdin is not None:
        child.stdin.write(stdin)
        child.stdin.close()
    _, status, usage = os.wait4(child.pid, 0)
    wall = (time.perf_counter() - started) * 1000
    child.returncode = os.waitstatus_to_exitcode(status)
    return wall, (usage.ru_utime + usage.ru_stime) * 1000, child.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7, help="interleaved rounds; medians are shown (at least 3)")
    parser.add_argument("--venv", default=os.path.dirname(os.path.dirname(sys.executable)),
                        help="the installation to measure (default: this interpreter's)")
    args = parser.parse_args()
    python = os.path.join(args.venv, "bin", "python")
    doow_track = os.path.join(args.venv, "bin", "doow-track")
    workdir = tempfile.mkdtemp(prefix="doow-one-event-")
    receiver, url = start_receiver(doow_track, workdir)
    env = {**os.environ, "HOME": workdir, "XDG_STATE_HOME": os.path.join(workdir, "state")}
    for name in ("DOOW_TRACK_API_KEY", "PYTHONDONTWRITEBYTECODE"):
        env.pop(name, None)
    body = b'{"batch_id":"b","sdk_version":"0","events":[]}'
    commands = {
        "floor, httpx default client": ([python, "-c", FLOOR_DEFAULT, url, body.decode()], None, env),
        "floor, no TLS context (http)": ([python, "-c", FLOOR_NO_TLS, url, body.decode()], None, env),
        "floor, sent as doow-track does": ([python, "-c", FLOOR_AS_DOOW_TRACK, url, body.decode()], None, env),
        "doow-track, one event": ([doow_track, "--api-key", KEY, "--endpoint", url], EVENT, env),
        "Node CLI 0.1.4, one event": (["node", NODE_CLI, "--api-key", KEY], EVENT,
                                      {**env, "DOOW_TRACK_ENDPOINT": url}),
        "doow-track --help": ([doow_track, "--help"], None, env),
        "doow-track --version": ([doow_track, "--version"], None, env),
    }
    runs: Dict[str, List[Tuple[float, float, int]]] = {name: [] for name in commands}
    try:
        for round_number in range(max(3, args.runs) + 1):
            for name, (command, stdin, run_env) in commands.items():
                result = timed(command, stdin, run_env)
                if round_number:  # round 0 writes the bytecode
                    runs[name].append(result)
    finally:
        receiver.terminate()
        receiver.wait()
        shutil.rmtree(workdir, ignore_errors=True)
    wall = {name: statistics.median(r[0] for r in rows) for name, rows in runs.items()}
    cpu = {name: statistics.median(r[1] for r in rows) for name, rows in runs.items()}
    print(f"\none event end to end, medians of {max(3, args.runs)} interleaved rounds ({os.cpu_count()} cores)\n")
    print(f"{'':32} {'wall ms':>8} {'CPU ms':>8} {'exit':>6}")
    for name, rows in runs.items():
        codes = sorted({r[2] for r in rows})
        print(f"{name:32} {wall[name]:>8.0f} {cpu[name]:>8.0f} {','.join(map(str, codes)):>6}")
    ours, node = wall["doow-track, one event"], wall["Node CLI 0.1.4, one event"]
    floor, lowered = wall["floor, httpx default client"], wall["floor, no TLS context (http)"]
    lowest = wall["floor, sent as doow-track does"]
    print(f"\ndoow-track - floor (as doow-track sends): {ours - lowest:+.0f} ms   (target <= +30 ms)")
    print(f"doow-track - floor (no TLS context):     {ours - lowered:+.0f} ms")
    print(f"doow-track - floor (httpx default):      {ours - floor:+.0f} ms")
    print(f"doow-track / Node, wall:             {ours / node:.2f}x   (target <= 1.3x)")
    print(f"doow-track / Node, CPU:              {cpu['doow-track, one event'] / cpu['Node CLI 0.1.4, one event']:.2f}x")
    print(f"floor (no TLS context) / Node, wall: {lowered / node:.2f}x")
    print(f"floor (as doow-track sends) / Node:  {lowest / node:.2f}x")
    print(f"--help {wall['doow-track --help']:.0f} ms, --version {wall['doow-track --version']:.0f} ms "
          f"(target < 50 ms)")
    print("\ncommands (the receiver: doow-track receiver --listen 127.0.0.1:0, its own process):")
    for name, (command, stdin, _) in commands.items():
        shown = " ".join(command if "-c" not in command else [*command[:2], "FLOOR_SCRIPT", *command[3:]])
        piped = f"echo '{EVENT.decode().strip()}' | " if stdin else ""
        prefix = f"DOOW_TRACK_ENDPOINT={url} " if name.startswith("Node") else ""
        print(f"  {name}: {piped}{prefix}{shown.replace(KEY, 'dk_…')}")
    print(f"\nFLOOR_SCRIPT (httpx default):{FLOOR_DEFAULT}")
    print(f"FLOOR_SCRIPT (no TLS context):\n{FLOOR_NO_TLS}")
    print(f"FLOOR_SCRIPT (as doow-track sends):{FLOOR_AS_DOOW_TRACK}")


if __name__ == "__main__":
    main()
