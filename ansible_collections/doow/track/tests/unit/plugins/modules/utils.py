# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import contextlib
import json

import pytest

from ansible.module_utils import basic
from ansible.module_utils.common.parameters import remove_values
from ansible.module_utils.common.text.converters import to_bytes

try:
    from ansible.module_utils.testing import patch_module_args
except ImportError:  # ansible-core < 2.19
    from unittest import mock

    @contextlib.contextmanager
    def patch_module_args(args=None):
        payload = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args or {}}))
        with mock.patch.object(basic, '_ANSIBLE_ARGS', payload):
            yield


class AnsibleExitJson(Exception):
    pass


class AnsibleFailJson(Exception):
    pass


# Like the real exit_json/fail_json, mask every no_log value in the result.
def exit_json(self, **kwargs):
    kwargs.setdefault('changed', False)
    raise AnsibleExitJson(remove_values(kwargs, self.no_log_values))


def fail_json(self, **kwargs):
    kwargs['failed'] = True
    raise AnsibleFailJson(remove_values(kwargs, self.no_log_values))


@pytest.fixture
def module_env(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)


def run_module(main, args, check_mode=False, diff=False):
    """Run a module's main(); return (result dict, failed)."""
    args = dict(args)
    if check_mode:
        args['_ansible_check_mode'] = True
    if diff:
        args['_ansible_diff'] = True
    with patch_module_args(args):
        try:
            main()
        except AnsibleExitJson as e:
            return e.args[0], False
        except AnsibleFailJson as e:
            return e.args[0], True
    raise AssertionError('module did not call exit_json or fail_json')


class FakeRunner(object):
    """Stands in for AnsibleModule.run_command: handlers get the argv list and
    return (rc, stdout, stderr) or None to fall through."""

    def __init__(self):
        self.calls = []
        self.handlers = []

    def on(self, handler):
        self.handlers.append(handler)
        return handler

    def __call__(self, module, args, **kwargs):
        self.calls.append(dict(args=list(args), kwargs=kwargs))
        for handler in reversed(self.handlers):
            out = handler(list(args), kwargs)
            if out is not None:
                return out
        raise AssertionError('unexpected command: %r' % (args,))

    def commands(self):
        return [c['args'] for c in self.calls]


@pytest.fixture
def runner(monkeypatch):
    fake = FakeRunner()

    def run_command(self, args, **kwargs):
        return fake(self, args, **kwargs)

    monkeypatch.setattr(basic.AnsibleModule, 'run_command', run_command)
    return fake


def make_cli(tmp_path, name='doow-track'):
    """An executable placeholder for the CLI (never run: run_command is faked)."""
    prefix = tmp_path / 'prefix'
    bindir = prefix / 'versions' / '0.1.0' / 'bin'
    bindir.mkdir(parents=True)
    cli = bindir / name
    cli.write_text(u'#!/bin/sh\nexit 0\n')
    cli.chmod(0o755)
    (prefix / 'current').symlink_to('versions/0.1.0')
    return str(prefix), str(prefix / 'current' / 'bin' / name)


def js(value):
    return json.dumps(value)
