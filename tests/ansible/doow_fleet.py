"""A 3-host fleet on this machine for real ansible-playbook runs.

Two hosts use the local connection and one is reached over real SSH (an
sshd on 127.0.0.1 with generated keys).  Every host has its own prefix,
config file, socket, pidfile, spool directory and health port under one
temporary root, so several agents run side by side.  A local receiver
(``doow-track receiver``) plays Doow.  Used by tests/ansible and by
bench/rollout.py.

The hosts run different Pythons (pyenv's 3.9, 3.11 and 3.12): each gets the
offline wheelhouse of its version, built by the collection's wheelhouse
playbook.  The agents run as a per-run system user the role creates, so the
interpreters are hard-linked copies under the fleet's root that this user may
execute (pyenv lives under /root; the copy's RUNPATH is made relative with
patchelf).
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

from doow_track_agent.modes.agent.pidfile import process_alive, running_pid

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
COLLECTION = REPO / "ansible_collections" / "doow" / "track"
API_KEY = "dk_test_fleet_5ecret_a1b2c3d4e5f6"
VAULT_PASSWORD = "fleet-test-vault-password"
LOCAL_HOSTS = ("local1", "local2")
SSH_HOST = "ssh1"
HOSTS = LOCAL_HOSTS + (SSH_HOST,)
# The Python each host runs (and builds the agent's virtualenv with).
HOST_PYTHONS = {"local1": "3.9", "local2": "3.11", SSH_HOST: "3.12"}
PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
RECAP_RE = re.compile(r"^(\S+)\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid: Optional[int]) -> bool:
    return bool(pid) and process_alive(pid)


def run(cmd, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("capture_output", True)
    kw.setdefault("text", True)
    return subprocess.run([str(c) for c in cmd], **kw)


def must(cmd, **kw) -> subprocess.CompletedProcess:
    res = run(cmd, **kw)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))} exited {res.returncode}:\n{res.stdout}\n{res.stderr}")
    return res


def recap(output: str) -> Dict[str, Dict[str, int]]:
    """PLAY RECAP per host: {'local1': {'ok': 9, 'changed': 0, 'unreachable': 0, 'failed': 0}}"""
    out = {}
    for m in RECAP_RE.finditer(output):
        out[m.group(1)] = dict(ok=int(m.group(2)), changed=int(m.group(3)),
                               unreachable=int(m.group(4)), failed=int(m.group(5)))
    return out


class Dist:
    """The runtime's wheel, a second version of it, and a wheelhouse of its deps."""

    def __init__(self, root: Path):
        self.root = root
        self.wheelhouse = root / "wheelhouse"
        self.wheel: Optional[Path] = None
        self.next_wheel: Optional[Path] = None
        self.version = ""
        self.next_version = ""

    def source(self) -> Path:
        """The checkout to build from: the working tree, or with
        DOOW_FLEET_SOURCE=HEAD the last commit (useful while others edit a
        shared working tree)."""
        rev = os.environ.get("DOOW_FLEET_SOURCE")
        if not rev:
            return REPO
        out = self.root / "src-head"
        out.mkdir(parents=True)
        archive = must(["git", "-C", REPO, "archive", "--format=tar", rev], text=False).stdout
        must(["tar", "-x", "-C", out], input=archive, text=False)
        return out

    def build(self) -> "Dist":
        pip = [sys.executable, "-m", "pip"]
        self.root.mkdir(parents=True, exist_ok=True)
        source = self.source()
        must(pip + ["wheel", "--no-deps", "-q", "-w", self.root / "v1", source])
        self.wheel = next((self.root / "v1").glob("doow_track_agent-*.whl"))
        self.version = self.wheel.name.split("-")[1]
        # The same code as a newer version, for the version-change scenario.
        src = self.root / "src-next"
        shutil.copytree(source / "src", src / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in ("pyproject.toml", "README.md", "LICENSE"):
            if (source / name).exists():
                shutil.copy(source / name, src / name)
        self.next_version = self.version + ".post1"
        for path in (src / "pyproject.toml", src / "src" / "doow_track_agent" / "__init__.py"):
            text = path.read_text()
            path.write_text(text.replace(f'"{self.version}"', f'"{self.next_version}"'))
        must(pip + ["wheel", "--no-deps", "-q", "-w", self.root / "v2", src])
        self.next_wheel = next((self.root / "v2").glob("doow_track_agent-*.whl"))
        # The dependencies' wheelhouse is built per Python by the fleet (wheelhouse playbook).
        return self


def python_copy(root: Path, version: str) -> Path:
    """An interpreter of pyenv's VERSION that any user may run: a hard-linked
    copy of its tree under root, whose binary finds libpython relatively."""
    found = sorted(PYENV_VERSIONS.glob(f"{version}.*"))
    if not found:
        raise RuntimeError(f"no pyenv Python {version} under {PYENV_VERSIONS} (`pyenv versions` lists them)")
    patchelf = shutil.which("patchelf")
    if not patchelf:
        raise RuntimeError("patchelf is missing (scripts/test installs it with apt-get)")
    copy = root / version
    must(["cp", "-al", found[-1], copy])
    binary = copy / "bin" / f"python{version}"
    binary.unlink()
    shutil.copy2(found[-1] / "bin" / f"python{version}", binary)
    must([patchelf, "--set-rpath", "$ORIGIN/../lib", binary])
    return binary


class _Service:
    """A helper process the fleet starts (receiver, sshd), stopped politely, then firmly."""

    proc: Optional[subprocess.Popen] = None

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Receiver(_Service):
    """``doow-track receiver`` on a free loopback port, storing into SQLite."""

    def __init__(self, root: Path):
        self.root = root
        self.db = root / "receiver.db"
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.log = root / "receiver.log"

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "Receiver":
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "doow-track"), "receiver", "--listen", f"127.0.0.1:{self.port}", "--db", str(self.db)],
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port)
        return self


    def summary(self) -> dict:
        res = must([VENV_BIN / "doow-track", "receiver", "summary", "--db", self.db, "--json"])
        return json.loads(res.stdout)

    def events(self) -> List[dict]:
        """Every stored event as the wire format has it (event_id, measurements, attribution...)."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10)
        try:
            con.row_factory = sqlite3.Row
            tables = [r[0] for r in con.execute("select name from sqlite_master where type='table'")]
            table = "events" if "events" in tables else tables[0]
            rows = [dict(r) for r in con.execute(f"select * from {table}")]
        finally:
            con.close()
        out = []
        for row in rows:
            ev = None
            for key in ("event", "event_json", "payload", "body", "json", "raw"):
                if isinstance(row.get(key), str) and row[key].startswith("{"):
                    ev = json.loads(row[key])
                    break
            if ev is None:
                ev = dict(row)
                for key, value in list(ev.items()):
                    if isinstance(value, str) and value[:1] in "{[":
                        try:
                            ev[key] = json.loads(value)
                        except ValueError:
                            pass
            out.append(ev)
        return out

    @staticmethod
    def metric(ev: dict) -> Optional[str]:
        if ev.get("measurements"):
            return ev["measurements"][0].get("metric_name")
        return ev.get("metric") or ev.get("metric_name")

    def find(self, metric: Optional[str] = None, event_id: Optional[str] = None, **attribution) -> List[dict]:
        found = []
        for ev in self.events():
            if metric and self.metric(ev) != metric:
                continue
            if event_id and ev.get("event_id") != event_id:
                continue
            attrs = ev.get("attribution") or {}
            if any(attrs.get(k) != v for k, v in attribution.items()):
                continue
            found.append(ev)
        return found

    def wait_for(self, timeout: float = 30.0, count: int = 1, **query) -> List[dict]:
        deadline = time.time() + timeout
        while True:
            try:
                found = self.find(**query)
            except sqlite3.Error:
                found = []
            if len(found) >= count or time.time() > deadline:
                return found
            time.sleep(0.25)


class SSHD(_Service):
    """An sshd on 127.0.0.1 that lets the test key log in as the current user."""

    def __init__(self, root: Path, login_env: Optional[Dict[str, str]] = None):
        self.root = root
        self.port = free_port()
        self.proc: Optional[subprocess.Popen] = None
        self.key = root / "id_ed25519"
        # Set in every SSH session (sshd's SetEnv), like a host's /etc/environment.
        self.login_env = login_env or {}

    def start(self) -> "SSHD":
        sshd = shutil.which("sshd") or "/usr/sbin/sshd"
        if not os.path.exists(sshd):
            raise RuntimeError("sshd is missing: the Ansible integration tests reach one host over real SSH; "
                               "install openssh-server (scripts/test does it with apt-get)")
        self.root.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.root / "host_key"])
        must(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", self.key])
        shutil.copy(f"{self.key}.pub", self.root / "authorized_keys")
        os.chmod(self.root / "authorized_keys", 0o600)
        Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
        config = self.root / "sshd_config"
        config.write_text("\n".join([
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.root / 'host_key'}",
            f"PidFile {self.root / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
            "PermitRootLogin prohibit-password",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "MaxStartups 50",
            "MaxSessions 50",
            "Subsystem sftp internal-sftp",
        ] + ([
            "SetEnv " + " ".join(f"{k}={v}" for k, v in sorted(self.login_env.items()))
        ] if self.login_env else []) + [""]))
        must([sshd, "-t", "-f", config])
        self.proc = subprocess.Popen([sshd, "-D", "-e", "-f", str(config)], stdout=open(self.root / "sshd.log", "ab"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port)
        return self



class Fleet:
    """The inventory, the hosts' directories and helpers to run Ansible against them."""

    def __init__(self, root: Path, dist: Dist, receiver: Receiver, sshd: SSHD, pythons: Dict[str, Path]):
        self.root = root
        self.pythons = pythons
        # Per run, so that test runs sharing the machine never share a user.
        self.user = f"dtf{os.getpid()}"
        self.socket_group = f"dtfs{os.getpid()}"
        self.sender = f"dtfu{os.getpid()}"
        self.dist = dist
        self.receiver = receiver
        self.sshd = sshd
        self.inventory = root / "inventory"
        self.vault_password_file = root / "vault-password"
        self.hosts: Dict[str, dict] = {}
        self.log_dir = root / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.runs = 0

    def host_root(self, name: str) -> Path:
        return self.root / "hosts" / name

    def write_inventory(self) -> None:
        self.vault_password_file.write_text(VAULT_PASSWORD + "\n")
        os.chmod(self.vault_password_file, 0o600)
        hosts = {}
        for name in HOSTS:
            h = self.host_root(name)
            hv = {
                "ansible_python_interpreter": str(self.pythons[HOST_PYTHONS[name]]),
                "doow_track_prefix": str(h / "opt"),
                "doow_track_config_file": str(h / "etc" / "doow-track.json"),
                "doow_track_spool_dir": str(h / "spool"),
                "doow_track_socket_path": str(h / "run" / "doow-track.sock"),
                "doow_track_pidfile": str(h / "run" / "doow-track.pid"),
                "doow_track_log_file": str(h / "log" / "doow-track.log"),
                "doow_track_health_listen": f"127.0.0.1:{free_port()}",
                "doow_track_attribution": {"host": name},
            }
            if name != HOSTS[0]:
                # The hosts share this machine's /etc/passwd: the first one (the
                # canary batch) creates the user and groups, the others use them.
                hv["doow_track_manage_user"] = False
            if name == SSH_HOST:
                hv.update(ansible_connection="ssh", ansible_host="127.0.0.1", ansible_port=self.sshd.port,
                          ansible_user=pwd.getpwuid(os.getuid()).pw_name,
                          ansible_ssh_private_key_file=str(self.sshd.key),
                          ansible_ssh_common_args="-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                                                  "-o IdentitiesOnly=yes")
            else:
                hv["ansible_connection"] = "local"
            hosts[name] = hv
            self.hosts[name] = hv
        gv = self.inventory / "group_vars" / "doow_track_agents"
        gv.mkdir(parents=True, exist_ok=True)
        (self.inventory / "hosts.yml").write_text(json.dumps({"doow_track_agents": {"hosts": hosts}}, indent=2))
        group_vars = {
            "doow_track_api_key": "{{ vault_doow_track_api_key }}",
            "doow_track_endpoint": self.receiver.endpoint,
            "doow_track_version": self.dist.version,
            "doow_track_wheel": str(self.dist.wheel),
            "doow_track_wheelhouse": str(self.dist.wheelhouse),
            "doow_track_user": self.user,
            "doow_track_group": self.user,
            "doow_track_socket_group": self.socket_group,
            "doow_track_socket_users": [self.sender],
            "doow_track_service_manager": "direct",
            "doow_track_service_enabled": False,
            "doow_track_flush_at": 1,
            "doow_track_flush_interval": 200,
            "doow_track_health_timeout": 30,
            "doow_track_health_max_spool_events": 0,
            "doow_track_health_probe": {"metric": "doow_track_probe", "license_id": "lic_probe"},
        }
        (gv / "vars.yml").write_text(json.dumps(group_vars, indent=2))
        enc = must([VENV_BIN / "ansible-vault", "encrypt_string", "--vault-password-file", self.vault_password_file,
                    "--name", "vault_doow_track_api_key", API_KEY])
        (gv / "vault.yml").write_text("---\n" + enc.stdout)

    def env(self, offline: bool = True) -> dict:
        env = dict(os.environ)
        env.update(
            ANSIBLE_CONFIG=str(REPO / "ansible.cfg"),
            ANSIBLE_HOST_KEY_CHECKING="False",
            ANSIBLE_NOCOLOR="1",
            ANSIBLE_FORCE_COLOR="0",
            ANSIBLE_LOCAL_TEMP=str(self.root / "ansible-tmp" / "local"),
            ANSIBLE_REMOTE_TEMP=str(self.root / "ansible-tmp" / "remote"),
            ANSIBLE_SSH_CONTROL_PATH_DIR=str(self.root / "cp"),
            PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        )
        if offline:
            # The hosts install from the wheelhouse only: no index, no pip config of this machine.
            env.update(PIP_CONFIG_FILE="/dev/null", PIP_INDEX_URL="http://127.0.0.1:9/simple")
        for name in list(env):
            if name.startswith("DOOW_TRACK_"):
                del env[name]
        return env

    def _run(self, cmd: List, name: str, offline: bool = True,
             env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        self.runs += 1
        res = run(cmd, cwd=REPO, env=dict(self.env(offline), **(env or {})))
        (self.log_dir / f"{self.runs:02d}-{name}.log").write_text(
            " ".join(map(str, cmd)) + "\n\n" + res.stdout + "\n--- stderr ---\n" + res.stderr)
        return res

    def playbook(self, playbook: str, *args: str, extra: Optional[dict] = None,
                 name: Optional[str] = None, offline: bool = True) -> subprocess.CompletedProcess:
        """Run a playbook: a file name under the repository's playbooks/, or a
        collection playbook by its name (doow.track.rollout)."""
        path = playbook if playbook.startswith(("doow.track.", "/")) else REPO / "playbooks" / playbook
        cmd = [VENV_BIN / "ansible-playbook", "-i", self.inventory, "--vault-password-file",
               self.vault_password_file, path, *args]
        if extra:
            cmd += ["-e", json.dumps(extra)]
        return self._run(cmd, name or Path(playbook).stem, offline)

    def build_wheelhouse(self) -> None:
        """One wheelhouse per Python of the fleet, the way a user builds it (online, on the controller)."""
        res = self.playbook("doow.track.wheelhouse", name="wheelhouse", offline=False)
        if res.returncode != 0:
            raise RuntimeError(f"the wheelhouse playbook failed:\n{res.stdout[-6000:]}\n{res.stderr[-3000:]}")

    def adhoc(self, module: str, module_args: str, *args: str, pattern: str = "doow_track_agents",
              name: str = "adhoc", env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
        cmd = [VENV_BIN / "ansible", pattern, "-i", self.inventory, "--vault-password-file",
               self.vault_password_file, "-m", module, "-a", module_args, *args]
        return self._run(cmd, name, env=env)

    # -- looking at a host ---------------------------------------------------
    def cli(self, name: str) -> Path:
        return Path(self.hosts[name]["doow_track_prefix"]) / "current" / "bin" / "doow-track"

    def status(self, name: str) -> dict:
        if not self.cli(name).exists():
            return {"running": False, "installed": False}
        res = run([self.cli(name), "status", "--config", self.hosts[name]["doow_track_config_file"], "--json"])
        try:
            return json.loads(res.stdout)
        except ValueError:
            return {"running": False, "rc": res.returncode, "stderr": res.stderr}

    def config(self, name: str) -> dict:
        return json.loads(Path(self.hosts[name]["doow_track_config_file"]).read_text())

    def send(self, name: str, **event) -> dict:
        """Send one event through the host's agent socket; returns the CLI's JSON."""
        res = must([self.cli(name), "send", "--config", self.hosts[name]["doow_track_config_file"], "--json",
                    json.dumps(event)])
        return json.loads(res.stdout)

    def send_as(self, user: str, name: str, **event) -> subprocess.CompletedProcess:
        """``doow-track send`` through the host's socket as a local user (runuser)."""
        return run(["runuser", "-u", user, "--", self.cli(name), "send", "--socket",
                    self.hosts[name]["doow_track_socket_path"], "--json", json.dumps(event)])

    def health_port(self, name: str) -> int:
        return int(self.hosts[name]["doow_track_health_listen"].rsplit(":", 1)[1])

    def kill_agents(self) -> None:
        """Last-resort cleanup: stop every agent the fleet started (TERM, then KILL after 10 s)."""
        pids = [running_pid(self.hosts[name]["doow_track_pidfile"]) for name in self.hosts]
        pids = [pid for pid in pids if pid]
        for pid in pids:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        deadline = time.time() + 10
        for pid in pids:
            while pid_alive(pid) and time.time() < deadline:
                time.sleep(0.1)
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)


def make_root() -> Path:
    # Short: Unix socket paths must stay under 108 bytes.  Traversable: the
    # agents run as an unprivileged user under it.
    root = Path(tempfile.mkdtemp(prefix="dtf-", dir="/tmp"))
    os.chmod(root, 0o755)
    return root


def remove_users(*names: str) -> None:
    """Users and groups the fleet (or the role) created; gone already is fine."""
    for name in names:
        run(["userdel", name])
        run(["groupdel", name])


def setup(root: Optional[Path] = None, dist: Optional[Dist] = None):
    """Build everything and return (fleet, cleanup)."""
    root = root or make_root()
    dist = dist or Dist(root / "dist").build()
    pythons_dir = root / "pythons"
    pythons_dir.mkdir(mode=0o755)
    pythons = {v: python_copy(pythons_dir, v) for v in sorted(set(HOST_PYTHONS.values()))}
    (root / "hosts").mkdir(mode=0o755)
    receiver = Receiver(root / "receiver").start()
    # The SSH host finds its agent like a host set up with defaults would:
    # DOOW_TRACK_CONFIG / DOOW_TRACK_PREFIX in its login environment.
    ssh_root = root / "hosts" / SSH_HOST
    login_env = {"DOOW_TRACK_CONFIG": str(ssh_root / "etc" / "doow-track.json"),
                 "DOOW_TRACK_PREFIX": str(ssh_root / "opt")}
    try:
        sshd = SSHD(root / "ssh", login_env).start()
    except Exception:
        receiver.stop()
        raise
    fleet = Fleet(root, dist, receiver, sshd, pythons)

    def cleanup():
        fleet.kill_agents()
        sshd.stop()
        receiver.stop()
        remove_users(fleet.sender, fleet.user, fleet.socket_group)

    try:
        # A local user the role lets send through the socket (doow_track_socket_users).
        must(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", fleet.sender])
        fleet.write_inventory()
        fleet.build_wheelhouse()
    except Exception:
        cleanup()
        raise
    return fleet, cleanup
