"""A real forward proxy (Debian's tinyproxy) on 127.0.0.1, on a free port, with its own config file."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Optional

from tests.support.agent import free_port

TINYPROXY = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
USER, PASSWORD = "egress", "proxy_pw_never_print_8f3a"


class Tinyproxy:
    """``with Tinyproxy(auth=True) as proxy:`` serves at ``proxy.url``; ``proxy.log()`` shows what it forwarded."""

    def __init__(self, auth: bool = False) -> None:
        self.auth = auth
        self.dir = tempfile.mkdtemp(prefix="dtp-")
        self.port = 0
        self._process: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        credentials = f"{USER}:{PASSWORD}@" if self.auth else ""
        return f"http://{credentials}127.0.0.1:{self.port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> str:
        path = os.path.join(self.dir, "tinyproxy.conf")
        lines = [f"Port {self.port}", "Listen 127.0.0.1", "Timeout 30", "MaxClients 50", "Allow 127.0.0.1",
                 "LogLevel Connect", f"LogFile \"{os.path.join(self.dir, 'tinyproxy.log')}\"",
                 "DisableViaHeader Yes"]
        if self.auth:
            lines.append(f"BasicAuth {USER} {PASSWORD}")
        with open(path, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    def start(self) -> "Tinyproxy":
        for _ in range(5):  # another test run may take the free port between our probe and tinyproxy's bind
            self.port = free_port()
            self._process = subprocess.Popen([TINYPROXY, "-d", "-c", self._write_config()],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if self._wait_listening():
                return self
            self.stop()
        raise RuntimeError("tinyproxy did not start")

    def _wait_listening(self) -> bool:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._process and self._process.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def log(self) -> str:
        try:
            with open(os.path.join(self.dir, "tinyproxy.log")) as handle:
                return handle.read()
        except OSError:
            return ""

    def __enter__(self) -> "Tinyproxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
