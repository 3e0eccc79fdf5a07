"""Run the real ``doow-track`` console script, and check that the key never leaks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Union

KEY = "dk_test_never_print_me_5c1e"
BIN = shutil.which("doow-track", path=os.path.dirname(sys.executable)) or "doow-track"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> dict:
        return json.loads(self.out)


# Variables that change how the endpoint is reached: tests that want them pass them explicitly.
EGRESS_VARIABLES = {"HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"}


def base_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("DOOW_TRACK_") and k.upper() not in EGRESS_VARIABLES}
    env.update(extra or {})
    return env


def run(args: List[str], stdin: Union[bytes, str, None] = None, env: Optional[Dict[str, str]] = None,
        timeout: float = 120, secret: str = KEY, secrets: Iterable[str] = ()) -> Result:
    """Run doow-track; fail the test if the key shows up anywhere in its output."""
    data = stdin.encode() if isinstance(stdin, str) else stdin
    done = subprocess.run([BIN, *args], input=data, capture_output=True, env=base_env(env), timeout=timeout,
                          check=False)
    result = Result(done.returncode, done.stdout.decode(errors="replace"), done.stderr.decode(errors="replace"))
    for hidden in (secret, *secrets):
        assert hidden not in result.out and hidden not in result.err, "a secret leaked into the output"
    return result


def lines(*events: dict) -> bytes:
    return b"".join(json.dumps(event).encode() + b"\n" for event in events)


def catches(pid: int, signum: int) -> bool:
    """Whether ``pid`` has a handler for ``signum`` (the SigCgt mask of /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(mask >> (signum - 1) & 1)
