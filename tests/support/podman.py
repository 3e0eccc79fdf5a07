"""Rootful podman for the container tests: per-run storage, a Debian base made with mmdebstrap, the image.

Everything podman stores (images, containers, volumes, secrets, its run
directory) lives under one per-run directory, named by ``CONTAINERS_CONF``
and ``CONTAINERS_STORAGE_CONF`` in the environment every call gets, so
concurrent runs share nothing mutable. The base image's root filesystem
(``mmdebstrap`` from the Debian mirror apt already uses, about 30 s) is cached
per user as a tarball named by a hash of its inputs and written atomically.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BASE_PACKAGES = ("python3", "python3-venv")
# On this kind of host crun fails on the hybrid cgroup mount and systemd is not PID 1 (so no systemd
# cgroup manager); the default ulimits podman asks for exceed the hard limits of a container host.
CONTAINERS_CONF = """\
[containers]
default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "{run}/libpod"
"""
STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{root}/storage"
runroot = "{run}/storage"
"""


class Unavailable(Exception):
    """Podman cannot run containers here; the message says why (the tests skip with it)."""


@dataclass
class Podman:
    """``podman`` bound to one per-run storage."""

    dir: str
    env: Dict[str, str] = field(default_factory=dict)

    def __call__(self, *args: str, check: bool = True, timeout: float = 300,
                 stdin: Optional[bytes] = None) -> subprocess.CompletedProcess:
        done = subprocess.run(["podman", *args], env=self.env, input=stdin, capture_output=True, timeout=timeout,
                              check=False)
        if check and done.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {done.returncode}:\n"
                                 f"{done.stderr.decode(errors='replace')}")
        return done

    def out(self, *args: str) -> str:
        return self(*args).stdout.decode().strip()

    def cleanup(self) -> None:
        for args in (("pod", "rm", "--all", "--force", "--time", "0"), ("rm", "--all", "--force", "--time", "0"),
                     ("volume", "rm", "--all", "--force"), ("secret", "rm", "--all"),
                     ("rmi", "--all", "--force")):
            self(*args, check=False, timeout=120)
        with open("/proc/self/mounts") as mounts:
            inside = [line.split()[1] for line in mounts if line.split()[1].startswith(self.dir + "/")]
        for point in sorted(inside, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def start() -> Podman:
    """A per-run podman, or Unavailable with the reason."""
    if not shutil.which("podman") or not shutil.which("runc"):
        raise Unavailable("podman and runc are not installed (apt-get install podman buildah runc mmdebstrap)")
    if os.geteuid() != 0:
        raise Unavailable("these tests use rootful podman: run them as root")
    # Short: conmon's attach socket lives below the run directory and AF_UNIX paths are short.
    directory = tempfile.mkdtemp(prefix="dtp-", dir="/tmp")
    run = os.path.join(directory, "run")
    os.makedirs(run)
    # Within our own hard limits (runc may not raise them), and plenty for one agent.
    limits = {name: min(cap, hard if hard != resource.RLIM_INFINITY else cap)
              for name, cap, hard in (("nofile", 65536, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),
                                      ("nproc", 4096, resource.getrlimit(resource.RLIMIT_NPROC)[1]))}
    conf, storage = os.path.join(directory, "containers.conf"), os.path.join(directory, "storage.conf")
    with open(conf, "w") as handle:
        handle.write(CONTAINERS_CONF.format(run=run, **limits))
    with open(storage, "w") as handle:
        handle.write(STORAGE_CONF.format(root=directory, run=run))
    env = {**os.environ, "CONTAINERS_CONF": conf, "CONTAINERS_STORAGE_CONF": storage}
    env = {k: v for k, v in env.items() if not k.startswith("DOOW_TRACK_")}
    return Podman(directory, env)


def debian_source() -> tuple:
    """(mirror URL, suite) of the Debian archive apt uses here, from sources.list and deb822 files."""
    suite = ""
    with open("/etc/os-release") as handle:
        for line in handle:
            if line.startswith("VERSION_CODENAME="):
                suite = line.split("=", 1)[1].strip().strip('"')
    texts = []
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*"))]:
        try:
            with open(path) as handle:
                texts.append(handle.read())
        except OSError:
            continue
    for text in texts:
        for stanza in re.split(r"\n\s*\n", text):
            uris = re.search(r"(?m)^URIs:\s*(\S+)", stanza)
            suites = re.search(r"(?m)^Suites:\s*(.+)$", stanza)
            if uris and suites and suite in suites.group(1).split() and "security" not in uris.group(1):
                return uris.group(1), suite
        for match in re.finditer(r"(?m)^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", text):
            if match.group(2) == suite and "security" not in match.group(1):
                return match.group(1), suite
    raise Unavailable("no Debian mirror for this release found in /etc/apt/sources.list*")


def base_tarball() -> str:
    """The cached base root filesystem (Debian + python3 + python3-venv), made once per user and inputs."""
    if not shutil.which("mmdebstrap"):
        raise Unavailable("mmdebstrap is not installed (apt-get install mmdebstrap)")
    mirror, suite = debian_source()
    version = subprocess.run(["mmdebstrap", "--version"], capture_output=True, text=True).stdout.strip()
    key = hashlib.sha256(repr((mirror, suite, BASE_PACKAGES, version, os.uname().machine)).encode()).hexdigest()[:16]
    cache = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "doow-track-tests")
    path = os.path.join(cache, f"base-{suite}-{key}.tar")
    if os.path.exists(path):
        return path
    os.makedirs(cache, exist_ok=True)
    partial = tempfile.NamedTemporaryFile(dir=cache, prefix=".base-", suffix=".tar", delete=False).name
    done = subprocess.run(["nice", "mmdebstrap", "--variant=apt", "--mode=root", "--format=tar",
                           f"--include={','.join(BASE_PACKAGES)}", suite, partial, mirror],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        os.unlink(partial)
        raise Unavailable(f"mmdebstrap could not make the base image from {mirror}: {done.stderr[-600:]}")
    os.replace(partial, path)  # atomic: a concurrent run sees no tarball or a whole one
    return path


def import_base(podman: Podman) -> str:
    """Import the base into this run's storage and check that a container runs; returns its name."""
    tarball = base_tarball()
    name = f"localhost/doow-track-test-base:{os.path.basename(tarball)[5:-4]}"
    podman("import", tarball, name, timeout=300)
    probe = podman("run", "--rm", "--network", "host", name, "true", check=False, timeout=120)
    if probe.returncode != 0:
        raise Unavailable(f"podman cannot run a container here: {probe.stderr.decode(errors='replace')[-600:]}")
    return name


def build_image(podman: Podman, base: str, tag: str) -> None:
    """``scripts/build-image`` exactly as a user runs it (the wheels come from the index or pip's cache)."""
    done = subprocess.run([os.path.join(ROOT, "scripts", "build-image"), "--base", base, "--tag", tag],
                          env={**podman.env, "PYTHON": sys.executable, "TMPDIR": podman.dir},
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise AssertionError(f"scripts/build-image exited {done.returncode}:\n{done.stderr[-3000:]}")
    assert done.stdout.strip().splitlines()[-1] == tag, done.stdout


def zombies(podman: Podman, container: str) -> List[str]:
    """Processes in the container that exited and were never collected (State Z in /proc)."""
    script = ("import os\nfor p in os.listdir('/proc'):\n if p.isdigit():\n  try:\n"
              "   s = open('/proc/%s/stat' % p).read()\n  except OSError:\n   continue\n"
              "  if s.rsplit(')', 1)[1].split()[0] == 'Z': print(s)")
    return podman.out("exec", container, "python3", "-c", script).splitlines()
