# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

"""The shared piece of the doow.track modules: find the doow-track CLI, run it
with --json, parse its one JSON object and turn its exit status into a clear
fail_json.  Standard library only: this runs on the managed host."""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import re

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.six.moves.urllib.parse import unquote

DEFAULT_PREFIX = '/opt/doow-track'
DEFAULT_CONFIG = '/etc/doow-track/doow-track.json'
DEFAULT_SOCKET = '/run/doow-track/doow-track.sock'
DEFAULT_HEALTH_LISTEN = '127.0.0.1:9090'
DEFAULT_SPOOL_DIR = '/var/lib/doow-track'
DEFAULT_PIDFILE = '/run/doow-track/doow-track.pid'
CLI_NAME = 'doow-track'

# docs/cli-contract.md, "Exit statuses (sysexits)"
EXIT_OK = 0
EXIT_NOT_RUNNING = 3
EXIT_USAGE = 64
EXIT_DATAERR = 65
EXIT_UNAVAILABLE = 69
EXIT_TEMPFAIL = 75
EXIT_NOPERM = 77
EXIT_CONFIG = 78

EXIT_MEANINGS = {
    EXIT_NOT_RUNNING: 'no agent is running',
    EXIT_USAGE: 'usage error: the installed doow-track did not accept these arguments (is it too old for this collection?)',
    EXIT_DATAERR: 'some events are invalid or were rejected by the API',
    EXIT_UNAVAILABLE: 'no agent reachable, or the agent did not come up',
    EXIT_TEMPFAIL: 'temporary failure: delivery failed after retries, the spool is full, or the agent did not stop in time',
    EXIT_NOPERM: 'the API key was rejected by Doow (401/403)',
    EXIT_CONFIG: 'bad configuration',
}


def cli_argument_spec():
    """Options every CLI-driving module takes (doc fragment doow.track.common)."""
    return dict(
        cli=dict(type='path'),
        prefix=dict(type='path', default=DEFAULT_PREFIX, fallback=(env_fallback, ['DOOW_TRACK_PREFIX'])),
    )


def config_file_argument_spec():
    """doc fragment doow.track.common.config_file"""
    return dict(config_file=dict(type='path', default=DEFAULT_CONFIG, fallback=(env_fallback, ['DOOW_TRACK_CONFIG'])))


def api_argument_spec():
    """doc fragment doow.track.common.api"""
    return dict(
        api_key=dict(type='str', no_log=True),
        endpoint=dict(type='str'),
    )


def mask_key(key):
    """A key as dk_\u2026abcd: the runtime's redact.mask_key, kept in step by
    tests/unit/test_collection_in_step.py.  The dk_ prefix stays when present;
    the last 4 characters show only when more than 8 follow the prefix; no
    key reads (none)."""
    if not key:
        return u'(none)'
    key = u'%s' % (key,)
    prefix = u'dk_' if key.startswith(u'dk_') else u''
    if len(key) > len(prefix) + 8:
        return u'%s\u2026%s' % (prefix, key[-4:])
    return u'%s\u2026' % (prefix,)


def _split_userinfo(url):
    """(scheme://, userinfo, host and rest) of a URL as typed: the scheme may be
    missing and the password may hold '#', '/', '?', '@' or blanks, so the
    userinfo runs to the last '@'; userinfo is None when there is no '@'."""
    match = re.match(r'[A-Za-z][A-Za-z0-9+.-]*://', url)
    start = match.end() if match else 0
    userinfo, at, host = url[start:].rpartition('@')
    return url[:start], (userinfo if at else None), host


def mask_url(url):
    """A URL with its password shown as ***: the runtime's egress.mask_url
    (redact.mask_userinfo), kept in step by tests/unit/test_collection_in_step.py.
    URLs without a password are returned unchanged; never raises."""
    scheme, userinfo, host = _split_userinfo(url)
    if userinfo is None or ':' not in userinfo:
        return url
    return '%s%s:***@%s' % (scheme, userinfo.partition(':')[0], host)


def url_secrets(url):
    """The password of a URL's user:password@ part, as written and decoded
    (%40 and @), for AnsibleModule.no_log_values; empty when there is none.
    Read as mask_url reads it, without failing on a URL urlsplit would refuse."""
    password = (_split_userinfo(url)[1] or '').partition(':')[2]
    if not password:
        return set()
    return set((password, unquote(password)))


def read_json_file(path):
    """Parse a JSON file; None when it does not exist or cannot be read/parsed."""
    try:
        with open(path, 'rb') as f:
            return json.loads(f.read().decode('utf-8'))
    except (IOError, OSError, ValueError):
        return None


def agent_settings(config_file):
    """Where the agent configured in config_file listens (with the runtime's
    defaults for missing keys)."""
    cfg = read_json_file(config_file) if config_file else None
    if not isinstance(cfg, dict):
        cfg = {}

    def sub(name):
        value = cfg.get(name)
        return value if isinstance(value, dict) else {}

    return dict(
        exists=bool(config_file and os.path.exists(config_file)),
        socket=sub('socket').get('path') or DEFAULT_SOCKET,
        health_listen=sub('health').get('listen') or DEFAULT_HEALTH_LISTEN,
        spool_dir=sub('spool').get('dir') or DEFAULT_SPOOL_DIR,
        pidfile=cfg.get('pidfile'),
        config=cfg,
    )


def parse_json_output(text):
    """The CLI prints exactly one JSON object on stdout with --json.  Be lenient
    about stray lines before it (a warning printed by a library)."""
    if not text:
        return None
    text = text.strip()
    try:
        value = json.loads(text)
        return value if isinstance(value, dict) else {'value': value}
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith('{'):
            try:
                return json.loads(line)
            except ValueError:
                continue
    return None


class CliResult(object):
    def __init__(self, cmd, rc, data, stdout, stderr):
        self.cmd = cmd
        self.rc = rc
        self.data = data if data is not None else {}
        self.parsed = data is not None
        self.stdout = stdout
        self.stderr = stderr

    def get(self, key, default=None):
        return self.data.get(key, default)


class DoowCli(object):
    """Runs the doow-track CLI for a module."""

    def __init__(self, module, cli=None, prefix=None):
        self.module = module
        self.cli = cli if cli is not None else module.params.get('cli')
        self.prefix = prefix if prefix is not None else module.params.get('prefix')
        self._path = None
        self.searched = []

    def candidates(self):
        if self.prefix:
            yield os.path.join(self.prefix, 'current', 'bin', CLI_NAME)

    def find(self, required=True):
        """Return the CLI path: the cli option, then PREFIX/current/bin, then PATH.
        With required=False return None instead of failing (check mode on a
        fresh host)."""
        if self._path:
            return self._path
        if self.cli:
            if os.path.isfile(self.cli) and os.access(self.cli, os.X_OK):
                self._path = self.cli
                return self._path
            if required:
                self.module.fail_json(msg='cli=%s is not an executable file' % self.cli)
            return None
        self.searched = []
        for candidate in self.candidates():
            self.searched.append(candidate)
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                self._path = candidate
                return self._path
        self.searched.append('PATH')
        found = self.module.get_bin_path(CLI_NAME, required=False)
        if found:
            self._path = found
            return self._path
        if required:
            self.module.fail_json(
                msg='doow-track CLI not found (looked in %s); install it with doow.track.install '
                    'or set the cli option' % ', '.join(self.searched))
        return None

    def run(self, args, data=None, json_output=True, ok_rcs=(EXIT_OK,), environ_update=None,
            fail=True, what=None, run_as=()):
        """Run ``doow-track ARGS [--json]``, behind the ``run_as`` command (a
        privilege drop) when given.  Returns a CliResult; with fail=True a
        status outside ok_rcs ends the module with fail_json."""
        path = self.find(required=True)
        cmd = list(run_as) + [path] + list(args)
        if json_output and '--json' not in cmd:
            cmd.append('--json')
        env = dict(environ_update or {})
        env.setdefault('PYTHONUNBUFFERED', '1')
        rc, out, err = self.module.run_command(cmd, data=data, environ_update=env,
                                               binary_data=data is not None and data.endswith('\n'))
        parsed = parse_json_output(out) if json_output else None
        result = CliResult(cmd, rc, parsed, out, err)
        if fail and rc not in ok_rcs:
            self.fail(result, what=what)
        return result

    def describe_failure(self, result, what=None):
        meaning = EXIT_MEANINGS.get(result.rc, 'unexpected exit status')
        subject = what or ' '.join([CLI_NAME] + list(result.cmd[1:2]))
        msg = '%s failed with exit status %s (%s)' % (subject, result.rc, meaning)
        details = []
        if result.parsed:
            for key in ('error', 'message'):
                if result.data.get(key):
                    details.append(str(result.data[key]))
            errors = result.data.get('errors') or []
            for error in errors[:5]:
                if isinstance(error, dict):
                    where = error.get('key') or error.get('path') or error.get('line')
                    # the CLI names the reason 'error' (send, check) or 'message'
                    reason = error.get('error') or error.get('message') or error.get('reason')
                    details.append('%s: %s' % (where, reason) if where is not None else str(reason))
                else:
                    details.append(str(error))
        stderr = (result.stderr or '').strip()
        if stderr and not details:
            details.append(stderr.splitlines()[-1])
        if details:
            msg += ': ' + '; '.join(details)
        return msg

    def fail(self, result, what=None, **extra):
        self.module.fail_json(
            msg=self.describe_failure(result, what=what),
            rc=result.rc, cmd=result.cmd, stdout=result.stdout, stderr=result.stderr,
            cli_result=result.data, **extra)
