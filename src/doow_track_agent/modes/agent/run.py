"""The agent: a well-behaved Unix daemon around sources -> intake -> spool -> delivery.

Process life cycle, in order:

1. The starting command checks what it can without side effects (key,
   config), forks, and waits on a pipe: it exits 0 only once the agent
   reports "ready" (socket bound, spool open), or with the agent's own
   reason and sysexits code.  A detaching daemon's parent otherwise exits
   before anything is known, and a playbook would carry on against an agent
   that never came up.
2. The child enters python-daemon's ``DaemonContext`` with every option set
   on purpose (see ``_daemon_context``), takes the pidfile lock, and only
   then opens logs, spool and sockets: ``open()`` closes every descriptor it
   was not told to keep.
3. Signal handlers only note the signal and wake the event loop; the loop
   does the work: reload on SIGHUP (atomically, or not at all), drain and
   exit 0 on SIGTERM, SIGINT and every other signal that would end the
   process (``stopping.TERMINATING``).  The noting handlers are in place
   from the command line's start, before the preflight, in both the
   foreground and the detached path (a container's PID 1 also ignores a
   signal it has no handler for); as PID 1 the agent also reaps orphaned
   processes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import resource
import signal
import sys
import time
from typing import Callable, Iterable, List, Optional, Tuple, Union

import daemon
import daemon.daemon

from doow_track_agent import __version__, collector, config, stopping
from doow_track_agent.buffers.spool import Spool, SpoolError, SpoolLocked
from doow_track_agent.config import ConfigError, Settings
from doow_track_agent.delivery import http_client
from doow_track_agent.delivery.pump import Pump
from doow_track_agent.exits import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_TEMPFAIL, EX_UNAVAILABLE
from doow_track_agent.intake.events import Intake
from doow_track_agent.log_throttle import Throttled
from doow_track_agent.modes.agent import logs, systemd
from doow_track_agent.modes.agent.health import HealthServer
from doow_track_agent.modes.agent.pidfile import PidFile, PidfileLocked
from doow_track_agent.redact import scrub_secrets
from doow_track_agent.secure_files import UnsafePath
from doow_track_agent.sources import SourceError, file_tail
from doow_track_agent.sources.file_tail import FileTail
from doow_track_agent.sources.producers import Producers
from doow_track_agent.sources.tcp import TcpSource, address, require_token
from doow_track_agent.sources.unix_socket import UnixSource
from doow_track_agent.stats import Stats
from doow_track_agent.supervise import Supervisor

log = logging.getLogger(__name__)

_PRODUCER_GRACE = 2.0
_PUMP_GRACE = 5.0
_NOFILE = 65536

Loader = Callable[[], Settings]
Listener = Union[UnixSource, TcpSource, HealthServer]


class StartupError(Exception):
    """The agent cannot run; ``code`` is the exit status the starting command reports."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


# -- the start handshake ------------------------------------------------------------


class Handshake:
    """The daemon's half of the start-up pipe: one line, ``0 <pid>`` or ``<code> <reason>``."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def send(self, code: int, text: str) -> None:
        if self.fd < 0:
            return
        try:
            os.write(self.fd, f"{code} {text}\n".encode("utf-8", "replace"))
        finally:
            os.close(self.fd)
            self.fd = -1


def _await_report(read_fd: int, child: int) -> int:
    """The starting command's half: wait for the daemon's verdict and pass it on."""
    chunks = []
    with os.fdopen(read_fd, "rb") as pipe:
        for chunk in iter(lambda: pipe.read(4096), b""):
            chunks.append(chunk)
    os.waitpid(child, 0)
    code_text, _, text = b"".join(chunks).decode("utf-8", "replace").strip().partition(" ")
    if not code_text.isdigit():
        sys.stderr.write("doow-track: the agent exited during start-up; see its log for why\n")
        return EX_UNAVAILABLE
    code = int(code_text)
    if code == EX_OK:
        pid, _, where = text.partition(" ")
        sys.stderr.write(f"doow-track: agent started (pid {pid}); it logs to {where}\n")
    else:
        sys.stderr.write(f"doow-track: the agent did not start: {text}\n")
    return code


# -- what the schema cannot say -------------------------------------------------------


def _preflight(settings: Settings) -> None:
    """What makes a config unusable for the agent beyond the schema (checked at start and reload)."""
    if not settings.api_key:
        raise StartupError(EX_CONFIG, "no API key: set apiKey in the config, DOOW_TRACK_API_KEY, or --api-key-file")
    exposure = config.key_exposure(settings.source) if settings.source else None
    if exposure:
        raise StartupError(EX_CONFIG, f"{exposure}; the agent refuses to run with a key others can read or redirect")
    if settings.disabled:
        raise StartupError(EX_CONFIG, "disabled is set (DOOW_TRACK_DISABLED or \"disabled\": true): the agent "
                                      "would accept events and send none; unset it, or validate with "
                                      "doow-track check --events FILE or doow-track --dry-run")
    if (settings.input or {}).get("mode") == "file" and not file_tail.patterns(settings):
        raise StartupError(EX_CONFIG, "input.mode is file but neither input.path nor input.paths is set")
    if (settings.input or {}).get("mode") == "tcp" and not (settings.input or {}).get("port"):
        raise StartupError(EX_CONFIG, "input.mode is tcp but input.port is not set")
    listen = address(settings)
    try:
        if listen is not None:
            require_token(listen, settings.tcp_token)
    except SourceError as error:
        raise StartupError(EX_CONFIG, str(error)) from None
    try:
        http_client.check(settings)
    except ConfigError as error:
        raise StartupError(EX_CONFIG, str(error)) from None


def _load_preflighted(loader: Loader) -> Settings:
    """Settings from ``loader`` that also pass the start-up checks (raises ConfigError or StartupError)."""
    settings = loader()
    _preflight(settings)
    return settings


# -- the running agent --------------------------------------------------------------


class Agent:
    """Owns the pieces while the loop runs; everything here runs in the event-loop thread."""

    def __init__(self, settings: Settings, loader: Loader, foreground: bool, pidfile: Optional[PidFile]) -> None:
        self.settings = settings
        self.stats = Stats()
        self.spool = Spool(settings.spool_dir, settings.spool_max_bytes, settings.spool_fsync, self.stats)
        self.generation = 1
        self.started = time.monotonic()
        self.stopping = False
        self.reload_state: dict = {"attempts": 0, "ok": None, "error": None, "at": None}
        self.log_target = logs.target(settings, foreground)
        self._loader = loader
        self._foreground = foreground
        self._pidfile = pidfile
        self._producers: Optional[Producers] = None
        self._unix: Optional[UnixSource] = None
        self._tcp: Optional[TcpSource] = None
        self._health: Optional[HealthServer] = None
        self._pump: Optional[Pump] = None
        self._tail: Optional[FileTail] = None
        self._signals: List[int] = []
        self._wake: Optional[asyncio.Event] = None
        self._tasks = Supervisor()

    # signals: note and wake, nothing more

    def note_signal(self, signum: int) -> None:
        self._signals.append(signum)
        if self._wake is not None:
            self._wake.set()

    def _install_signals(self, early: List[int]) -> None:
        loop = asyncio.get_running_loop()
        for signum in stopping.TERMINATING:
            loop.add_signal_handler(signum, self.note_signal, signum)
        if os.getpid() == 1:
            # A container's init: processes orphaned in our PID namespace (left by `exec` sessions)
            # become our children, and nobody else would collect them.
            loop.add_signal_handler(signal.SIGCHLD, reap_children)
            reap_children()
        for signum in early:  # noted before the loop existed: acted on as soon as the agent serves
            self.note_signal(signum)
        loop.set_exception_handler(_loop_errors(Throttled(log)))

    async def run(self, handshake: Optional[Handshake], early_signals: List[int]) -> int:
        """Start, report, serve until told to stop; returns the exit status."""
        self._wake = asyncio.Event()
        self._install_signals(early_signals)
        try:
            await self._start()
        except Exception as error:  # whatever stops the start must reach the starting command
            failure = error if isinstance(error, StartupError) else StartupError(EX_SOFTWARE, f"internal error: {error!r}")
            log.error("cannot start: %s", failure, exc_info=not isinstance(error, StartupError))
            await self._close_all()
            if handshake:
                handshake.send(failure.code, str(failure))
            return failure.code
        if handshake:
            handshake.send(EX_OK, f"{os.getpid()} {self.log_target}")
        systemd.ready(f"ready, config generation {self.generation}")
        return await self._run_until_stopped()

    async def _start(self) -> None:
        settings = self.settings
        try:
            logs.setup(settings, self._foreground)
            self.spool.open()
        except SpoolLocked as error:
            raise StartupError(EX_UNAVAILABLE, str(error)) from None
        except (logs.LogSetupError, UnsafePath) as error:
            raise StartupError(EX_CONFIG, str(error)) from None
        except SpoolError as error:
            raise StartupError(getattr(error, "code", EX_TEMPFAIL), str(error)) from None
        self.spool.on_failure = lambda _reason: self._wake.set() if self._wake else None
        self._producers = Producers(self.spool, self.stats, Intake(settings.attribution), settings.idle_timeout,
                                    settings.max_connections_per_source)
        self._unix, self._tcp, self._health = await self._listeners(settings)
        self._pump = Pump(settings, self.spool, self.spool, self.stats, max_attempts=None, halt_on_failure=False)
        self._start_or_repoint_file_tail(settings)
        for warning in settings.warnings:
            log.warning("%s", warning)
        if self._pidfile is not None and self._pidfile.stale_pid:
            log.warning("took over stale pidfile %s left by pid %d", self._pidfile.path, self._pidfile.stale_pid)
        self._warn_unused_input(settings)
        self._warn_exposed_health(settings)
        log.info("agent %s ready (pid %d): socket %s, spool %s, health %s, logs to %s, %s",
                 __version__, os.getpid(), settings.socket_path, settings.spool_dir, settings.health_listen,
                 self.log_target, settings.describe())

    @staticmethod
    def _warn_exposed_health(settings: Settings) -> None:
        listen = settings.health_listen
        if listen is not None and not listen.is_loopback:
            log.warning("health.listen %s is not a loopback address: /status shows the endpoint, the masked key "
                        "and config paths to anyone who can reach it; firewall it or listen on 127.0.0.1", listen)

    @staticmethod
    def _warn_unused_input(settings: Settings) -> None:
        mode = (settings.input or {}).get("mode")
        if mode == "stdin":
            log.warning("input mode %r is not served by the agent; producers use the socket%s", mode,
                        " or tcp" if address(settings) else "")

    async def _listeners(self, settings: Settings,
                         ) -> Tuple[Optional[UnixSource], Optional[TcpSource], Optional[HealthServer]]:
        """Bind what ``settings`` asks for that is not already bound; all or nothing."""
        assert self._producers is not None
        opened: list = []
        try:
            health = self._health_for(settings)
            if health is not self._health and health is not None:
                await self._start_health(health, settings)
                opened.append(health)
            tcp = self._tcp_for(settings)
            if tcp is not self._tcp and tcp is not None:
                await tcp.start(self._producers)
                opened.append(tcp)
            unix = self._unix_for(settings)
            if unix is not self._unix and unix is not None:
                await unix.start(self._producers)
                opened.append(unix)
        except (SourceError, StartupError, UnsafePath) as error:
            _close_listeners(opened)
            code = EX_CONFIG if isinstance(error, UnsafePath) else getattr(error, "code", EX_TEMPFAIL)
            raise StartupError(code, str(error)) from None
        return unix, tcp, health

    def _start_or_repoint_file_tail(self, settings: Settings) -> None:
        """Start, re-point or idle the file tail (it needs the open spool; reloading it cannot fail)."""
        paths = file_tail.patterns(settings)
        for warning in file_tail.shared_directories(settings):
            log.warning("%s", warning)
        assert self._producers is not None
        if self._tail is not None:
            self._tail.set_paths(paths)
            self._tail.intake = self._producers.intake
        elif paths:
            self._tail = FileTail(paths, self.spool, self.stats, self._producers.intake)
            self._tail.start(self._tasks)

    def file_figures(self) -> List[dict]:
        """The tailed files, for ``/status``."""
        return self._tail.figures() if self._tail is not None else []

    def failures(self) -> List[str]:
        """Parts that cannot go on (the spool writer, the file tail), for ``/status`` and ``/readyz``."""
        found = []
        if self.spool.failure:
            found.append(f"spool writer stopped: {self.spool.failure}")
        if self._tail is not None and self._tail.failure:
            found.append(f"file tail failing: {self._tail.failure}")
        return found

    def _unix_for(self, settings: Settings) -> Optional[UnixSource]:
        old = self._unix
        if old is not None and old.path == settings.socket_path:
            old.set_access(settings.socket_mode, settings.socket_group)
            return old
        return UnixSource(settings.socket_path, settings.socket_mode, settings.socket_group) \
            if settings.socket_path else None

    def _tcp_for(self, settings: Settings) -> Optional[TcpSource]:
        listen = address(settings)
        old = self._tcp
        if old is not None and (old.listen, old.token) == (listen, settings.tcp_token):
            return old
        return TcpSource(listen, settings.tcp_token) if listen else None

    def _health_for(self, settings: Settings) -> Optional[HealthServer]:
        if self._health is not None and settings.health_listen == self.settings.health_listen:
            return self._health
        return HealthServer(self) if settings.health_listen else None

    @staticmethod
    async def _start_health(health: HealthServer, settings: Settings) -> None:
        assert settings.health_listen is not None
        try:
            await health.start(settings.health_listen)
        except OSError as error:
            raise StartupError(EX_TEMPFAIL, f"cannot listen on health.listen {settings.health_listen}: "
                                            f"{error.strerror}") from None

    # serving

    async def _run_until_stopped(self) -> int:
        assert self._pump is not None and self._wake is not None
        pump = self._tasks.start(self._pump.run(), "delivery")
        pump.add_done_callback(lambda _: self._wake.set() if self._wake else None)
        status = EX_OK
        while True:
            await self._wake.wait()
            self._wake.clear()
            if pump.done():
                status = self._pump_failure(pump)
                break
            if self.spool.failure:
                log.critical("the spool cannot store events any more (%s); exiting so the service manager "
                             "restarts the agent; committed events are kept", self.spool.failure)
                status = EX_SOFTWARE
                break
            signals, self._signals = self._signals, []
            if any(signum != signal.SIGHUP for signum in signals):
                log.info("received %s: stopping", stopping.name(next(n for n in signals if n != signal.SIGHUP)))
                break
            if signals:
                await self.reload()
        await self._shutdown(pump)
        return status

    @staticmethod
    def _pump_failure(pump: "asyncio.Future[None]") -> int:
        error = pump.exception() if not pump.cancelled() else None
        log.critical("delivery stopped unexpectedly (%r); exiting so the service manager restarts the agent; "
                     "spooled events are kept", error)
        return EX_SOFTWARE

    async def reload(self) -> None:
        """SIGHUP: re-read and validate the config; apply all of it, or keep all of the running one."""
        systemd.reloading()
        # /status shows the attempt only with its outcome: `reload` waits for the count to go up.
        attempt = {"attempts": self.reload_state["attempts"] + 1,
                   "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            # Off the loop: a config path that blocks (a FIFO, a hung mount) must not freeze the agent.
            loaded = await asyncio.get_running_loop().run_in_executor(None, _load_preflighted, self._loader)
            settings = self._kept_at_restart(loaded)
            unix, tcp, health = await self._listeners(settings)
            logs.setup(settings, self._foreground)
            self.log_target = logs.target(settings, self._foreground)
        except (ConfigError, StartupError, logs.LogSetupError, UnsafePath) as error:
            log.error("reload refused, keeping the running config (generation %d): %s", self.generation, error)
            # /status is readable by every local user: the text may quote the config, so no key-shaped value nor URL password.
            self.reload_state = {**attempt, "ok": False, "error": scrub_secrets(str(error))}
        else:
            self._apply(settings, unix, tcp, health)
            self.reload_state = {**attempt, "ok": True, "error": None}
        systemd.ready(f"ready, config generation {self.generation}")

    def _kept_at_restart(self, settings: Settings) -> Settings:
        """The spool directory and pidfile are held open: changing them needs a restart."""
        old = self.settings
        for name in ("spool_dir", "pidfile"):
            if getattr(settings, name) != getattr(old, name):
                log.warning("%s changed in the config; it takes effect at the next restart", name)
        return dataclasses.replace(settings, spool_dir=old.spool_dir, pidfile=old.pidfile)

    def _apply(self, settings: Settings, unix: Optional[UnixSource], tcp: Optional[TcpSource],
               health: Optional[HealthServer]) -> None:
        """The infallible half of a reload: swap everything at once."""
        assert self._producers is not None and self._pump is not None
        _close_listeners(old for old, new in ((self._unix, unix), (self._tcp, tcp), (self._health, health))
                         if old is not new)
        self._unix, self._tcp, self._health = unix, tcp, health
        self._producers.intake = Intake(settings.attribution)
        self._producers.set_limits(settings.idle_timeout, settings.max_connections_per_source)
        self._start_or_repoint_file_tail(settings)
        self.spool.set_limits(settings.spool_max_bytes, settings.spool_fsync)
        self._pump.reconfigure(settings)
        self.settings = settings
        self.generation += 1
        for warning in settings.warnings:
            log.warning("%s", warning)
        self._warn_exposed_health(settings)
        log.info("config reloaded (generation %d): %s", self.generation, settings.describe())

    async def _shutdown(self, pump: "asyncio.Future[None]") -> None:
        """Stop intake, deliver until the deadline, keep the rest in the spool."""
        self.stopping = True
        systemd.stopping()
        timeout = self.settings.shutdown_timeout
        deadline = time.monotonic() + timeout
        log.info("stopping: refusing new events, delivering for up to %.1fs", timeout)
        _close_listeners((self._unix, self._tcp))  # the health listener answers until the end
        if self._tail is not None:
            await self._tail.stop()
        if self._producers is not None:
            await self._producers.close(_PRODUCER_GRACE)
        if self._pump is not None and not pump.done():
            await self._pump.stop(deadline)
            done, _ = await asyncio.wait({pump}, timeout=max(0.0, deadline - time.monotonic()) + _PUMP_GRACE)
            if not done:
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
        await self._close_all()
        left = self.spool.figures()["events"]
        log.info("stopped: %d event(s) delivered since start, %d left in the spool for the next start",
                 self.stats.delivered, left)

    async def _close_all(self) -> None:
        _close_listeners((self._unix, self._tcp, self._health))
        self._unix = self._tcp = self._health = None
        if self._tail is not None:
            await self._tail.stop()
            self._tail = None
        await self.spool.close()


def _close_listeners(listeners: Iterable[Optional[Listener]]) -> None:
    """Stop listening on each (None skipped); connections already open stay with their owners."""
    for listener in listeners:
        if listener is not None:
            listener.close()


def reap_children() -> None:
    """Collect every exited child without blocking (the agent starts none of its own)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _loop_errors(throttled: Throttled) -> Callable[[asyncio.AbstractEventLoop, dict], None]:
    """The loop's exception handler: failed accepts (EMFILE under a connection flood) are logged
    once a minute without a traceback; everything else as asyncio would."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if "accept" in str(context.get("message", "")):
            throttled.warning("accept", "cannot accept a connection: %s", context.get("exception"))
        else:
            loop.default_exception_handler(context)

    return handle


def _raise_nofile() -> None:
    """Soft RLIMIT_NOFILE up to the hard one (capped at 65536): the loop uses epoll, not select()."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = _NOFILE if hard == resource.RLIM_INFINITY else min(hard, _NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))


# -- the daemon context -------------------------------------------------------------


def _daemon_context(foreground: bool, pidfile: Optional[PidFile], keep: List[int],
                    on_signal: Callable[[int, object], None]) -> daemon.DaemonContext:
    """Every option explicit: python-daemon's defaults are wrong for a process that holds a spool."""
    return daemon.DaemonContext(
        chroot_directory=None,            # the spool, socket and config live on the host's paths
        working_directory="/",            # never pin a mount; paths were made absolute beforehand
        umask=0o027,                      # spool, logs and pidfile are not world-readable (default 0)
        uid=os.getuid(), gid=os.getgid(), initgroups=False,  # whoever started us; systemd User= drops privileges
        prevent_core=True,                # a core dump would hold the key and billing events
        detach_process=not foreground,    # never guessed: a guess breaks systemd's main-PID tracking
        files_preserve=keep,              # only the start-up pipe; everything else is opened after open()
        pidfile=pidfile,                  # our flock-held PidFile: python-daemon's needs lockfile, fails on kill -9
        stdin=None,                       # /dev/null
        stdout=sys.stdout if foreground else None,  # foreground: journald/containers see our output
        stderr=sys.stderr if foreground else None,  # detached: /dev/null; logs go to a file or syslog
        signal_map={                      # default SIGTERM raises SystemExit mid-write; SIGHUP would kill us
            **{signum: on_signal for signum in stopping.TERMINATING},
            signal.SIGTSTP: None, signal.SIGTTIN: None, signal.SIGTTOU: None, signal.SIGPIPE: None,
        },
    )


def _noting(early: List[int]) -> Callable[[int, object], None]:
    """A handler that only remembers the signal, for the time before the event loop takes over."""
    return lambda signum, _frame: early.append(signum)


def _run_in_daemon_context(settings: Settings, loader: Loader, pidfile: Optional[str], foreground: bool,
                           handshake: Optional[Handshake], early: List[int]) -> int:
    """Become the daemon and run the agent to completion; returns the exit status."""
    _raise_nofile()
    keep = [handshake.fd] if handshake else []
    lock = PidFile(pidfile) if pidfile else None
    context = _daemon_context(foreground, lock, keep, _noting(early))
    try:
        context.open()
    except PidfileLocked as error:
        return _refuse(handshake, EX_UNAVAILABLE, str(error))
    except UnsafePath as error:
        return _refuse(handshake, EX_CONFIG, str(error))
    except (OSError, daemon.daemon.DaemonError) as error:
        return _refuse(handshake, EX_TEMPFAIL, f"cannot become a daemon: {error}")
    collector.settled()
    try:
        return asyncio.run(_run(settings, loader, foreground, lock, handshake, early))
    finally:
        context.close()
        logging.shutdown()


async def _run(settings: Settings, loader: Loader, foreground: bool, lock: Optional[PidFile],
               handshake: Optional[Handshake], early: List[int]) -> int:
    """Build the agent inside the running loop: on Python 3.9 asyncio objects bind the loop they are made in."""
    agent = Agent(settings, loader, foreground, lock)
    return await agent.run(handshake, early)


def _refuse(handshake: Optional[Handshake], code: int, reason: str) -> int:
    if handshake:
        handshake.send(code, reason)
    else:
        sys.stderr.write(f"doow-track: {reason}\n")
    return code


def _detach(settings: Settings, loader: Loader, pidfile: Optional[str], early: List[int]) -> int:
    """Fork; the child becomes the daemon, this process waits for its verdict."""
    sys.stdout.flush()
    sys.stderr.flush()
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child:
        os.close(write_fd)
        # The launcher's pid is the one the caller has: a stop signal during start-up is the daemon's to act on.
        for signum in stopping.TERMINATING:
            signal.signal(signum, lambda forwarded, _frame: os.kill(child, forwarded))
        return _await_report(read_fd, child)
    os.close(read_fd)
    status = EX_SOFTWARE
    try:
        status = _run_in_daemon_context(settings, loader, pidfile, False, Handshake(write_fd), early)
    finally:
        os._exit(status)


def run_agent(settings: Settings, *, pidfile: Optional[str] = None, foreground: bool = False,
              config_path: Optional[str] = None, reload_settings: Optional[Loader] = None) -> int:
    """Run the agent (detached unless ``foreground``); returns the starting command's exit status.

    ``reload_settings`` re-resolves the settings exactly as at start (file,
    environment, command line) on SIGHUP; by default the config file and the
    environment are read again.
    """
    # Noted from here on (and before, since ``cli`` started: ``stopping.note_early``), in both paths:
    # a signal during start-up ends in a drain and exit 0, not in death by its default action (and as a
    # container's PID 1, where a signal with no handler is dropped, not in a SIGKILL later).
    early: List[int] = []
    for signum in stopping.TERMINATING:
        signal.signal(signum, _noting(early))
    early[:0] = stopping.take_early()
    base = os.getcwd()
    path = os.path.join(base, config_path) if config_path else None

    def loader() -> Settings:
        fresh = reload_settings() if reload_settings else config.load(path, os.environ)
        return config.resolve_paths(fresh, base)

    settings = config.resolve_paths(settings, base)
    pidfile = os.path.normpath(os.path.join(base, pidfile)) if pidfile else settings.pidfile
    try:
        _preflight(settings)
    except StartupError as error:
        sys.stderr.write(f"doow-track: bad configuration: {error}\n")
        return error.code
    if foreground:
        return _run_in_daemon_context(settings, loader, pidfile, True, None, early)
    return _detach(settings, loader, pidfile, early)

