"""What doctor examines, resolved once: the config file, the settings, the key and where each came from.

Gathering facts is kept apart from judging them: a broken config is then
reported once, by the config checks, and every later check sees exactly the
settings pipe mode and the agent would resolve (flags > environment > file).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import List, Mapping, Optional, Tuple

from doow_track_agent import client, config, identity
from doow_track_agent.cli import options
from doow_track_agent.config import ConfigError, Settings

# Where a malformed key is named, depending on the layer it came from.
KEY_PATHS = ("$.apiKey", "DOOW_TRACK_API_KEY", "DOOW_TRACK_API_KEY_FILE", "--api-key", "--api-key-file")
# Config sections only the agent reads: a file with none of them configures pipe mode only.
AGENT_SECTIONS = ("pidfile", "socket", "spool", "health", "input", "tcp")


@dataclass
class Subject:
    """The facts every check group reads; nothing here is a verdict."""

    config_path: str
    config_explicit: bool
    config_exists: bool
    config_readable: bool
    file_data: Optional[dict]
    file_warnings: List[str]
    errors: List[ConfigError]
    settings: Optional[Settings]
    key_source: Optional[str]
    args: argparse.Namespace
    licenses: List[str] = field(default_factory=list)
    events_path: Optional[str] = None
    other_configs: List[str] = field(default_factory=list)
    timeout: float = 3.0
    _agent: Optional[Tuple[Optional[int], Optional[dict]]] = field(default=None, repr=False)
    untrusted_agent: Optional[str] = None  # why what answers as the agent is not believed (no signal, no figures)

    @property
    def key(self) -> Optional[str]:
        return self.settings.api_key if self.settings else None

    @property
    def key_problem(self) -> Optional[str]:
        """Why the key was refused while loading (its value is never part of the message)."""
        for error in self.errors:
            for path, message in error.problems:
                if path in KEY_PATHS:
                    return f"{error.source}: {path}: {message}"
        return None

    def running_agent(self) -> Tuple[Optional[int], Optional[dict]]:
        """(pid, ``/status`` document) of the agent serving these settings, looked up once for every check.

        Found as ``doow-track status`` finds it (``client.find_agent``); (None, None) without settings,
        and when what answers cannot be trusted (``untrusted_agent`` then says why).
        """
        if self._agent is None and self.settings is not None:
            try:
                self._agent = client.find_agent(self.settings, options.pidfile_path(self.args, self.settings))
            except identity.Untrusted as error:
                self.untrusted_agent = str(error)
        if self._agent is None:
            self._agent = (None, None)
        return self._agent

    @property
    def agent_configured(self) -> bool:
        """Whether an agent is expected here, so that its absence is a failure rather than a skip."""
        sections = self.file_data or {}
        return bool(getattr(self.args, "pidfile", None)) or any(key in sections for key in AGENT_SECTIONS)


def _flag_layer(args: argparse.Namespace) -> dict:
    """The overrides doctor accepts, as a config layer."""
    layer: dict = {}
    if args.api_key:
        layer["apiKey"] = args.api_key
    elif args.api_key_file:
        layer["apiKey"] = config.read_key_file(args.api_key_file)
    if args.endpoint:
        layer["endpoint"] = args.endpoint
    return layer


def _key_source(args: argparse.Namespace, env: Mapping[str, str], file_data: Optional[dict],
                path: str) -> Optional[str]:
    """The layer the resolved key comes from, in the order ``config.load`` applies them."""
    source = config.key_source(args.api_key, args.api_key_file, env)
    if source:
        name, key_file = source
        return f"{name} {key_file}" if key_file else name
    if file_data and "apiKey" in file_data:
        return f"{path} (apiKey)"
    return None


def gather(args: argparse.Namespace, env: Mapping[str, str]) -> Subject:
    """Read the config the way pipe mode and the agent do, keeping every problem instead of exiting."""
    path = args.config or config.default_config_path(env)
    explicit = bool(args.config or env.get("DOOW_TRACK_CONFIG"))
    exists = os.path.exists(path)
    readable = exists and os.access(path, os.R_OK)
    errors: List[ConfigError] = []
    file_data, warnings = None, []
    if readable:
        try:
            file_data, warnings = config.read_file(path)
        except ConfigError as error:
            errors.append(error)
    settings = None
    # A file that is named but unusable leaves nothing trustworthy to check the network or agent with.
    if not errors and (file_data is not None or not explicit):
        try:
            loaded = config.load(path if file_data is not None else None, env, _flag_layer(args))
            settings = config.resolve_paths(loaded, os.getcwd())
        except ConfigError as error:
            errors.append(error)
    return Subject(
        config_path=path, config_explicit=explicit, config_exists=exists, config_readable=readable,
        file_data=file_data, file_warnings=warnings, errors=errors, settings=settings,
        key_source=_key_source(args, env, file_data, path) if settings else None, args=args,
        licenses=list(args.license or []), events_path=args.events, other_configs=list(args.other_config or []),
        timeout=args.timeout,
    )
