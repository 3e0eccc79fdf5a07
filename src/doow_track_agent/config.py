"""Configuration: defaults < file < environment < flags, validated against one schema.

The file format is the one Doow documents for the CLI (``apiKey``, ``endpoint``, ``flushAt``,
``flushInterval`` in ms, ``attribution``) plus the agent's sections; the Node
client's snake_case spellings mean the same.  Each layer is checked on its own
so that an error names where the bad value came from: the file's key, the
environment variable, or the flag.
"""

from __future__ import annotations

import json
import os
import re
import socket
import stat
from dataclasses import dataclass, field, replace
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from doow_track_agent import locations
from doow_track_agent.egress import EgressError, Route, Tls, describe_trust, route
from doow_track_agent.intake import policy
from doow_track_agent.intake.validation import Problem, load_schema, problems
from doow_track_agent.loopback import is_loopback
from doow_track_agent.redact import mask_key, mask_userinfo, scrub_secrets, shown_url
from doow_track_agent.secure_files import owner_name, trusted_uid

DEFAULT_CONFIG_PATH = "/etc/doow-track/doow-track.json"
MAX_CONFIG_BYTES = 1024 * 1024
# What a secret must be, said without quoting it (the schema's messages quote the value).
_SECRET_KEYS = {"$.apiKey": "must be a Doow SDK key starting with dk_ (value not shown)",
                "$.tcp.token": "must be a string of at least 16 characters (value not shown)"}
# URL settings may carry user:password@; the schema's messages would quote the password.
_URL_KEYS = {"$.endpoint": "is not an http:// or https:// base URL (https://host[:port][/path])",
             "$.proxy": "is not an http:// or https:// proxy URL (http://host:port, with user:password@ before "
                        "the host if the proxy wants it), nor off"}
_SNAKE = re.compile(r"_([a-z])")


class ConfigError(Exception):
    """A configuration that cannot be used; every problem names its key."""

    def __init__(self, source: str, found: List[Problem]) -> None:
        self.source = source
        # Messages quote config values (a key pasted in the wrong place, a proxy URL with its password
        # included): mask key-shaped text and URL passwords, whichever message quotes them.
        self.problems = [Problem(scrub_secrets(path), scrub_secrets(message)) for path, message in found]
        found = self.problems
        lines = [f"{source}: {path}: {message}" for path, message in found]
        super().__init__("\n".join(lines))


def loopback_only(addresses: List[str]) -> bool:
    """True when there are addresses and every one is a loopback address."""
    return bool(addresses) and all(is_loopback(address) for address in addresses)


@dataclass(frozen=True)
class Listen:
    """A host and port to bind or reach."""

    host: str
    port: int

    @classmethod
    def parse(cls, text: Optional[str]) -> Optional["Listen"]:
        if not text:
            return None
        host, _, port = text.rpartition(":")
        return cls(host.strip("[]"), int(port))

    def addresses(self) -> List[str]:
        """The IP addresses ``host`` resolves to (empty when it does not resolve; ``""`` is every address)."""
        if not self.host:
            return ["0.0.0.0"]
        try:
            found = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except (OSError, UnicodeError):
            return []
        return sorted({str(info[4][0]).split("%", 1)[0] for info in found})

    @property
    def is_loopback(self) -> bool:
        """Literal loopback only (``localhost``, 127.0.0.0/8, ::1): see ``loopback``; what the host
        resolves to is checked where it is bound (``loopback_only(addresses())``)."""
        return is_loopback(self.host)

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    """Everything pipe mode and the agent need, resolved and typed (times in seconds)."""

    api_key: Optional[str] = field(repr=False)
    endpoint: str
    flush_at: int
    flush_interval: float
    max_batch_events: int
    concurrency: int
    timeout: float
    shutdown_timeout: float
    max_attempts: int
    initial_delay: float
    max_delay: float
    max_retry_after: float
    idle_timeout: float
    max_connections_per_source: int
    attribution: Dict[str, Any]
    pidfile: Optional[str]
    socket_path: Optional[str]
    socket_mode: int
    socket_group: Optional[str]
    input: Optional[Dict[str, Any]]
    tcp_listen: Optional[Listen]
    tcp_token: Optional[str] = field(repr=False)
    spool_dir: str
    spool_max_bytes: int
    spool_fsync: str
    health_listen: Optional[Listen]
    log_level: str
    log_format: str
    log_file: Optional[str]
    route: Route = Route(None, "default")
    tls: Tls = Tls()
    disabled: bool = False
    debug: bool = False
    source: Optional[str] = None
    warnings: Tuple[str, ...] = field(default=())

    def describe(self) -> dict:
        """A loggable view of the settings: the key masked, nothing secret."""
        return {"key": mask_key(self.api_key), "endpoint": self.endpoint, "flushAt": self.flush_at,
                "flushInterval": int(self.flush_interval * 1000), "concurrency": self.concurrency,
                "attribution": self.attribution, "config": self.source, "route": self.route.describe(),
                "trust": describe_trust(self.tls, os.environ)}


def camel(key: str) -> str:
    """``flush_at`` -> ``flushAt``; camelCase keys pass unchanged."""
    return _SNAKE.sub(lambda m: m.group(1).upper(), key)


def normalize(raw: Any, where: str = "$") -> Any:
    """Rewrite snake_case keys to the schema's camelCase, leaving user data alone.

    ``attribution`` holds the user's own dimension names, so its keys are kept
    exactly as written.  Two spellings of one key are an error, not a guess.
    """
    if not isinstance(raw, dict):
        return raw
    out: Dict[str, Any] = {}
    for key, value in raw.items():
        name = camel(key) if isinstance(key, str) else key
        if name in out:
            raise ConfigError(where, [Problem(f"{where}.{name}", f"set twice (as {name!r} and as {key!r})")])
        out[name] = value if name == "attribution" else normalize(value, f"{where}.{name}")
    return out


_IP_LITERAL = re.compile(r"[0-9.]+\Z|.*:")
_LABEL = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\Z")


def endpoint_problem(url: str) -> Optional[str]:
    """Why an endpoint URL cannot be used (host, port 1-65535, IDNA, query string), or None.

    Checked at configuration time so that no request is ever built from it
    and then fails in a way no retry can fix.
    """
    import httpx  # here, not at the top: --help and --version need no HTTP stack

    shown = shown_url(url)
    if mask_userinfo(url, keep_user=False) != url:  # any "@": a password may hold "/", "?" or "#"
        return (f"{shown!r} has a user name or password before the host: refused, as it would be printed "
                "and sent as Basic auth instead of the API key; give the bare URL (the key goes in apiKey)")
    if "?" in url or "#" in url:
        return (f"{shown!r} has a query string or fragment; the ingest path is appended to the endpoint, "
                "so give the base URL only")
    try:
        parsed = httpx.URL(url)
        host_shown = parsed.host  # decodes an xn-- label: an invalid A-label raises here
    except Exception as error:  # httpx.InvalidURL, idna.IDNAError (a UnicodeError)
        return f"{shown!r} is not a usable URL: {error}"
    if parsed.scheme not in ("http", "https"):
        return f"{shown!r}: the scheme must be http or https"
    if parsed.port is not None and not 1 <= parsed.port <= 65535:
        return f"{shown!r}: port {parsed.port} is out of range (1-65535)"
    host = parsed.raw_host.decode("ascii", "replace")
    if not host:
        return f"{shown!r} has no host"
    if _IP_LITERAL.match(host):
        return None
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"{shown!r}: host {host_shown!r} is not a valid DNS name (empty, too long or invalid label)"
    return None


def _extra_problems(raw: Any) -> List[Problem]:
    """What the schema cannot say about a layer: a usable endpoint."""
    endpoint = raw.get("endpoint") if isinstance(raw, dict) else None
    problem = endpoint_problem(endpoint) if isinstance(endpoint, str) else None
    return [Problem("$.endpoint", problem)] if problem else []


def _validated_layer(source: str, raw: Any, names: Mapping[str, str] = {}) -> dict:
    """Validate one layer; ``names`` maps schema paths to what the user typed (env var, flag)."""
    extra = _extra_problems(raw)
    found = [_hide_secret(problem, raw) for problem in problems("config", raw)
             if not (extra and problem.path == "$.endpoint")] + extra
    found = found or _attribution_secret(raw)
    if found:
        raise ConfigError(source, [_named(problem, names) for problem in found])
    return raw


def _attribution_secret(raw: dict) -> List[Problem]:
    """The default attribution is sent with every event: the same secret rule as event data applies."""
    attribution = raw.get("attribution")
    if not attribution:
        return []
    found = policy.find_secret(json.dumps(attribution).encode(), {"attribution": attribution})
    if not found:
        return []
    return [Problem(found[0], f"value looks like {found[1]}; never send secrets as event data (value not shown)")]


def _hide_secret(problem: Problem, raw: Any) -> Problem:
    """The problem said without the secret a schema message would quote: a key, a token, a URL's password."""
    if problem.path in _SECRET_KEYS:
        return Problem(problem.path, _SECRET_KEYS[problem.path])
    value = raw.get(problem.path[2:]) if isinstance(raw, dict) else None
    if problem.path in _URL_KEYS and isinstance(value, str):
        return Problem(problem.path, f"{mask_userinfo(value)!r} {_URL_KEYS[problem.path]}")
    return problem


def _named(problem: Problem, names: Mapping[str, str]) -> Problem:
    prefix = next((p for p in names if problem.path == p or problem.path.startswith(p + ".")), None)
    return Problem(names[prefix], problem.message) if prefix else problem


def read_text(path: str, what: str) -> bytes:
    """The bytes of a config or key file: a regular file of at most MAX_CONFIG_BYTES (1 MiB).

    A FIFO, device or directory is refused without blocking on it, and
    nothing larger is read, so a hostile path cannot hang or exhaust us.
    Raises ConfigError naming ``what`` and the path.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(what, [Problem(path, f"cannot read: {exc.strerror}")]) from None
    try:
        mode = os.fstat(fd).st_mode
        # Checked before fdopen, which refuses a directory with an IsADirectoryError naming only the fd.
        if not stat.S_ISREG(mode):
            raise ConfigError(what, [Problem(path, "is a directory, not a file" if stat.S_ISDIR(mode)
                                             else "not a regular file")])
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(what, [Problem(path, f"cannot read: {exc.strerror or exc}")]) from None
    finally:
        os.close(fd)
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(what, [Problem(path, f"larger than {MAX_CONFIG_BYTES} bytes")])
    return data


class _Object(dict):
    """A JSON object that remembers the keys its text gave more than once."""

    duplicates: List[str] = []


def _object(pairs: List[Tuple[str, Any]]) -> _Object:
    made = _Object(pairs)
    if len(made) != len(pairs):
        seen: set = set()
        made.duplicates = list(dict.fromkeys(key for key, _ in pairs if key in seen or seen.add(key)))
    return made


def _duplicate_keys(value: Any, path: str) -> List[Problem]:
    """Every key given twice in one object, by its JSON path (``$.tcp.token``)."""
    if isinstance(value, list):
        return [problem for index, item in enumerate(value) for problem in _duplicate_keys(item, f"{path}[{index}]")]
    if not isinstance(value, dict):
        return []
    found = [Problem(f"{path}.{key}", "key given more than once in the same object (the last would silently "
                                      "win): keep one") for key in getattr(value, "duplicates", [])]
    return found + [problem for key, item in value.items() for problem in _duplicate_keys(item, f"{path}.{key}")]


def parse_json(text: Union[str, bytes], source: str, where: str = "$") -> Any:
    """Parse configuration JSON; raises ConfigError for invalid JSON or a duplicate key (named by its path)."""
    try:
        raw = json.loads(text, object_pairs_hook=_object)
    except ValueError as exc:
        raise ConfigError(source, [Problem(where, f"not valid JSON: {exc}")]) from None
    duplicates = _duplicate_keys(raw, where)
    if duplicates:
        raise ConfigError(source, duplicates)
    return raw


def read_file(path: str) -> Tuple[dict, List[str]]:
    """Read and validate a config file; return it normalized, with warnings."""
    raw = parse_json(read_text(path, "config file"), path)
    data = _validated_layer(path, normalize(raw))
    exposure = key_exposure(path, data)
    return data, [exposure] if exposure else []


def file_exposure(path: str, holds_key: bool) -> Optional[str]:
    """Why a config or key file is unsafe on a shared host, or None.

    Another user must not be able to change it (owner, group/other write:
    they could point the endpoint at themselves and receive the key on the
    next reload) nor, when it ``holds_key``, read it.  Pipe mode and
    ``check`` warn with it; the agent, which holds the key for as long as it
    runs, refuses to start (or reload).
    """
    info = os.stat(path)
    if not trusted_uid(info.st_uid):
        return (f"{path} is owned by {owner_name(info.st_uid)}, who could change it (and the endpoint the key "
                "is sent to); chown it to root or the agent's user")
    if info.st_mode & stat.S_IWOTH or (info.st_mode & stat.S_IWGRP and info.st_gid not in (0, os.getegid())):
        return f"{path} is writable by other users, who could change where the key is sent; chmod go-w {path}"
    if holds_key and info.st_mode & stat.S_IROTH:
        return (f"{path} holds an API key and is readable by other users; chmod 600 it "
                "(or 640 with a dedicated group) or move the key to DOOW_TRACK_API_KEY")
    return None


def key_exposure(path: str, data: Optional[dict] = None) -> Optional[str]:
    """``file_exposure`` of a config file (it holds a key when it has ``apiKey``)."""
    if data is None:
        data = read_file(path)[0]
    return file_exposure(path, "apiKey" in data)


# The DOOW_TRACK_* variables: the official clients' (key, endpoint, flush, input, health port) and ours.
# name -> (config path, how its text becomes the value); the order is the docs' order.
_ENV_VALUES: Dict[str, Tuple[str, str]] = {
    "DOOW_TRACK_API_KEY": ("apiKey", "text"),
    "DOOW_TRACK_ENDPOINT": ("endpoint", "text"),
    "DOOW_TRACK_FLUSH_AT": ("flushAt", "int"),
    "DOOW_TRACK_FLUSH_INTERVAL": ("flushInterval", "int"),
    "DOOW_TRACK_SHUTDOWN_TIMEOUT": ("shutdownTimeout", "int"),
    "DOOW_TRACK_ATTRIBUTION": ("attribution", "json"),
    "DOOW_TRACK_INPUT": ("input", "input"),
    "DOOW_TRACK_TCP_LISTEN": ("tcp.listen", "text"),
    "DOOW_TRACK_TCP_TOKEN": ("tcp.token", "text"),
    "DOOW_TRACK_HEALTH_LISTEN": ("health.listen", "text"),
    "DOOW_TRACK_LOG_LEVEL": ("log.level", "text"),
    "DOOW_TRACK_LOG_FORMAT": ("log.format", "text"),
    "DOOW_TRACK_PROXY": ("proxy", "proxy"),
    "DOOW_TRACK_DISABLED": ("disabled", "bool"),
    "DOOW_TRACK_DEBUG": ("debug", "bool"),
}
# Secrets also come from a file (Docker/Compose secrets, a mounted Kubernetes Secret): NAME_FILE.
_ENV_SECRET_FILES = {"DOOW_TRACK_API_KEY": "DOOW_TRACK_API_KEY_FILE", "DOOW_TRACK_TCP_TOKEN": "DOOW_TRACK_TCP_TOKEN_FILE"}
_HEALTH_PORT = "DOOW_TRACK_HEALTH_PORT"

ENV_NAMES: Dict[str, Tuple[str, ...]] = {
    f"$.{path}": (name, _ENV_SECRET_FILES[name]) if name in _ENV_SECRET_FILES else (name,)
    for name, (path, _) in _ENV_VALUES.items()}
ENV_NAMES["$.health.listen"] += (_HEALTH_PORT,)
FLAG_NAMES = {"$.apiKey": "--api-key", "$.endpoint": "--endpoint", "$.flushAt": "--flush-at",
              "$.flushInterval": "--flush-interval", "$.attribution": "--attribution",
              "$.concurrency": "--concurrency", "$.pidfile": "--pidfile", "$.debug": "--verbose", "$.proxy": "--proxy"}
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _env_text(env: Mapping[str, str], name: str) -> Tuple[Optional[str], str]:
    """The variable's value and the name it came from: NAME itself, or the first line of NAME_FILE."""
    file_name = _ENV_SECRET_FILES.get(name)
    if file_name and env.get(file_name):
        if env.get(name):
            raise ConfigError("environment", [Problem(name, f"set together with {file_name}: set one of them")])
        return read_key_file(env[file_name], file_name, f"$.{_ENV_VALUES[name][0]}"), file_name
    return env.get(name) or None, name


def _env_layer(env: Mapping[str, str], below: Mapping[str, Any]) -> dict:
    """The DOOW_TRACK_* variables as a config layer; ``below`` is what the lower layers resolved."""
    layer: Dict[str, Any] = {}
    names: Dict[str, str] = {}
    for name, (path, kind) in _ENV_VALUES.items():
        text, source = _env_text(env, name)
        if text is None:
            continue
        section, _, key = path.rpartition(".")
        (layer.setdefault(section, {}) if section else layer)[key] = _env_value(source, text, kind)
        names[f"$.{path}"] = source
    if env.get(_HEALTH_PORT):
        port = _env_int(_HEALTH_PORT, env[_HEALTH_PORT])
        layer["health"] = {"listen": _health_listen(port, merge(dict(below), layer))}
        names["$.health.listen"] = _HEALTH_PORT
    return _validated_layer("environment", layer, names)


def _env_value(name: str, text: str, kind: str) -> Any:
    if kind == "int":
        return _env_int(name, text)
    if kind == "json":
        return _env_json(name, text)
    if kind == "bool":
        return _env_bool(name, text)
    if kind == "proxy":
        return proxy_setting(text)
    return parse_input(text) if kind == "input" else text


def _health_listen(port: int, below: Mapping[str, Any]) -> str:
    """DOOW_TRACK_HEALTH_PORT (the official sidecar's) moves the port only: a host set in the config
    file or DOOW_TRACK_HEALTH_LISTEN (an image's ``0.0.0.0``, so that probes reach it) stays;
    with none, loopback as by default."""
    current = Listen.parse((below.get("health") or {}).get("listen"))
    return str(Listen(current.host if current else "127.0.0.1", port))


def _env_int(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ConfigError("environment", [Problem(name, f"{text!r} is not a whole number")]) from None


def _env_bool(name: str, text: str) -> bool:
    """The official clients set these with ``true``; 1/yes/on and their opposites mean the same here."""
    word = text.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ConfigError("environment", [Problem(name, f"{text!r} is not true or false (nor 1/0, yes/no, on/off)")])


def _env_json(name: str, text: str) -> Any:
    return parse_json(text, "environment", name)


def parse_input(text: str) -> dict:
    """``stdin``, ``file:PATH`` or ``tcp:PORT`` (the official sidecar's spelling)."""
    mode, _, rest = text.partition(":")
    if mode == "stdin" and not rest:
        return {"mode": "stdin"}
    if mode == "file" and rest:
        return {"mode": "file", "path": rest}
    if mode == "tcp" and rest.isdigit():
        return {"mode": "tcp", "port": int(rest)}
    raise ConfigError("environment", [Problem("DOOW_TRACK_INPUT", f"{text!r} is not stdin, file:PATH or tcp:PORT")])


def merge(base: dict, top: dict) -> dict:
    """Deep-merge config layers; ``attribution`` merges key by key like every section."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def _defaults() -> dict:
    """Defaults come from the schema's ``default`` annotations: one source of truth."""
    schema = load_schema("config")
    out: Dict[str, Any] = {}
    for key, spec in schema["properties"].items():
        if "default" in spec:
            out[key] = spec["default"]
        elif spec.get("type") == "object" and "properties" in spec:
            section = {k: v["default"] for k, v in spec["properties"].items() if "default" in v}
            if section:
                out[key] = section
    return out


def proxy_setting(text: str) -> Union[str, bool]:
    """``--proxy`` and ``DOOW_TRACK_PROXY``: a URL, or ``off`` for a direct connection."""
    return False if text.strip().lower() in ("off", "none", "direct") else text.strip()


_UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
_UTF32_BOMS = (b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")


def read_key_file(path: str, source: str = "--api-key-file", setting: str = "$.apiKey") -> str:
    """Read a secret from a file (first line), as secret managers, systemd credentials and
    container secrets provide; ``source`` (the flag or variable) and the path name it in errors.

    A UTF-8 byte-order mark (Windows editors write one) is skipped.  Raises ConfigError (never
    quoting the file's bytes) when the file is UTF-16 or UTF-32, holds a NUL byte, is not UTF-8,
    its first line is empty, or that line is not a valid ``setting`` (and as ``read_text`` does).
    """
    where = "command line" if source.startswith("--") else "environment"

    def refuse(reason: str) -> ConfigError:
        return ConfigError(where, [Problem(source, f"{path}: {reason}")])

    data = read_text(path, source)
    reason = _not_text(data)
    if reason:
        raise refuse(reason)
    key = data[len(_UTF8_BOM):] if data.startswith(_UTF8_BOM) else data
    key = key.decode("utf-8").partition("\n")[0].strip()
    if not key:  # else the error would be about a key never given, under a flag never used
        raise refuse("its first line is empty; it must hold the key (dk_...)" if setting == "$.apiKey"
                     else "its first line is empty; it must hold the secret")
    section, _, name = setting[2:].rpartition(".")
    found = problems("config", {section: {name: key}} if section else {name: key})
    if found:
        raise refuse(f"its first line {_SECRET_KEYS[setting]}")
    return key


def _not_text(data: bytes) -> Optional[str]:
    """Why a key file's bytes are not UTF-8 text a key can be read from, or None."""
    if data.startswith(_UTF32_BOMS):
        return "is UTF-32 text (it starts with a UTF-32 byte-order mark); save it as UTF-8 or ASCII"
    if data.startswith(_UTF16_BOMS):
        return "is UTF-16 text (it starts with a UTF-16 byte-order mark); save it as UTF-8 or ASCII"
    if b"\x00" in data:
        # ASCII saved as UTF-16 without a byte-order mark: every other byte is NUL.
        if len(data) >= 2 and (not any(data[1:8:2]) or not any(data[0:8:2])):
            return "is UTF-16 text (every other byte is NUL); save it as UTF-8 or ASCII"
        return f"holds a NUL byte (at byte {data.index(0)}): it is not a text file"
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"is not UTF-8 text (invalid at byte {error.start}); save it as UTF-8 or ASCII"
    return None


def key_source(api_key: Optional[str], api_key_file: Optional[str],
               env: Mapping[str, str]) -> Optional[Tuple[str, Optional[str]]]:
    """Where ``load`` takes the key from, flags before environment: (``--api-key``, None),
    (``--api-key-file``, path), (``DOOW_TRACK_API_KEY_FILE``, path) or (``DOOW_TRACK_API_KEY``, None);
    None when neither gives one (the config file's ``apiKey``, if any, is then the key)."""
    if api_key:
        return "--api-key", None
    if api_key_file:
        return "--api-key-file", api_key_file
    for name in ("DOOW_TRACK_API_KEY_FILE", "DOOW_TRACK_API_KEY"):
        if env.get(name):
            return name, env[name] if name.endswith("_FILE") else None
    return None


def load(path: Optional[str], env: Mapping[str, str], flags: Optional[dict] = None,
         require_file: bool = True) -> Settings:
    """Resolve settings: defaults < file < environment < flags (a camelCase dict).

    Path defaults depend on the user (see ``locations``): root's are the schema's.
    """
    data = merge(_defaults(), locations.config_defaults(env))
    warnings: List[str] = []
    origins = {"proxy": "the default"}
    if path and (require_file or os.path.exists(path)):
        layer, warnings = read_file(path)
        data = _merge_layer(data, layer, f"the config file {path}", origins)
    data = _merge_layer(data, _env_layer(env, data), "DOOW_TRACK_PROXY", origins)
    if flags:
        data = _merge_layer(data, _validated_layer("command line", normalize(flags), FLAG_NAMES), "--proxy", origins)
    return _settings(data, path if path and os.path.exists(path) else None, env, warnings, origins["proxy"])


def _merge_layer(data: dict, layer: dict, origin: str, origins: Dict[str, str]) -> dict:
    """``data`` with ``layer`` over it; ``origins`` learns which layer set the proxy (for ``check``)."""
    if "proxy" in layer:
        origins["proxy"] = origin
    return merge(data, layer)


def _egress(data: dict, env: Mapping[str, str], proxy_origin: str) -> Tuple[Route, Tls]:
    """The proxy route for the endpoint and the TLS section; raises ConfigError naming the setting."""
    section = data.get("tls", {})
    tls = Tls(trust_store=section["trustStore"], ca_file=section.get("caFile"), cert_file=section.get("certFile"),
              key_file=section.get("keyFile"))
    if tls.key_file and not tls.cert_file:
        raise ConfigError("config", [Problem("$.tls.keyFile", "set tls.certFile too: a key alone is no certificate")])
    try:
        return route(data["endpoint"], data["proxy"], proxy_origin, env), tls
    except EgressError as error:
        raise ConfigError(error.source, [error.problem]) from None


def _settings(data: dict, source: Optional[str], env: Mapping[str, str], warnings: List[str],
              proxy_origin: str = "the default") -> Settings:
    retry, socket, spool, log, producers = (data.get(k, {}) for k in ("retry", "socket", "spool", "log", "producers"))
    tcp, health = data.get("tcp") or {}, data.get("health") or {}  # "health": null turns the listener off
    endpoint_route, tls = _egress(data, env, proxy_origin)
    return Settings(
        api_key=data.get("apiKey"),
        endpoint=data["endpoint"].rstrip("/"),
        flush_at=data["flushAt"],
        flush_interval=data["flushInterval"] / 1000,
        max_batch_events=data["maxBatchEvents"],
        concurrency=data["concurrency"],
        timeout=data["timeout"] / 1000,
        shutdown_timeout=data["shutdownTimeout"] / 1000,
        max_attempts=retry["maxAttempts"],
        initial_delay=retry["initialDelay"] / 1000,
        max_delay=retry["maxDelay"] / 1000,
        max_retry_after=retry["maxRetryAfter"] / 1000,
        idle_timeout=producers["idleTimeout"] / 1000,
        max_connections_per_source=producers["maxConnectionsPerSource"],
        attribution=data.get("attribution", {}),
        pidfile=data.get("pidfile"),
        socket_path=socket.get("path"),
        socket_mode=int(socket["mode"], 8),
        socket_group=socket.get("group"),
        input=data.get("input"),
        tcp_listen=Listen.parse(tcp.get("listen")),
        tcp_token=tcp.get("token"),
        spool_dir=spool["dir"],
        spool_max_bytes=spool["maxBytes"],
        spool_fsync=spool["fsync"],
        health_listen=Listen.parse(health.get("listen")),
        log_level=log["level"],
        log_format=log["format"],
        log_file=log.get("file"),
        route=endpoint_route,
        tls=tls,
        disabled=data["disabled"],
        debug=data["debug"],
        source=source,
        warnings=tuple(warnings),
    )


def resolve_paths(settings: Settings, base: str) -> Settings:
    """Settings with relative paths made absolute against ``base``.

    The agent runs in ``/`` once detached (and under systemd), so the paths
    of a config such as the documented ``./doow-track.json`` are taken from the
    directory the command was started in, by the agent and the commands alike.
    """

    def resolve(path: Optional[str]) -> Optional[str]:
        return os.path.normpath(os.path.join(base, path)) if path else path

    source = settings.input
    if source and source.get("path"):
        source = {**source, "path": resolve(source["path"])}
    if source and source.get("paths"):
        source = {**source, "paths": [resolve(path) for path in source["paths"]]}
    tls = replace(settings.tls, ca_file=resolve(settings.tls.ca_file), cert_file=resolve(settings.tls.cert_file),
                  key_file=resolve(settings.tls.key_file))
    return replace(settings, socket_path=resolve(settings.socket_path), spool_dir=resolve(settings.spool_dir), tls=tls,
                   log_file=resolve(settings.log_file), pidfile=resolve(settings.pidfile), input=source,
                   source=resolve(settings.source))


def default_config_path(env: Mapping[str, str]) -> str:
    """Where agent commands look for the config when ``--config`` is not given."""
    return env.get("DOOW_TRACK_CONFIG") or DEFAULT_CONFIG_PATH
