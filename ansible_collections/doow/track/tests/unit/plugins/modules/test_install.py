# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import sys

import pytest

from ansible_collections.doow.track.plugins.modules import install
from ansible_collections.doow.track.tests.unit.plugins.modules.utils import run_module


class FakeHost(object):
    """Emulates python -m venv, pip and the probe of installed versions."""

    def __init__(self, runner, python_version=(3, 11)):
        self.python_version = list(python_version)
        self.available = ['0.1.0', '0.2.0']
        self.installed = {}   # venv dir -> version
        self.pip_calls = []
        self.pip_envs = []
        runner.on(self.handle)

    def handle(self, args, kwargs):
        if args[1:3] == ['-c', 'import json, sys; print(json.dumps(list(sys.version_info[:2])))']:
            return 0, json.dumps(self.python_version), ''
        if args[1:3] == ['-m', 'venv']:
            vdir = args[3]
            os.makedirs(os.path.join(vdir, 'bin'))
            open(os.path.join(vdir, 'bin', 'python'), 'w').close()
            return 0, '', ''
        if args[1:4] == ['-m', 'pip', 'install']:
            self.pip_calls.append(args)
            self.pip_envs.append(kwargs.get('environ_update') or {})
            vdir = os.path.dirname(os.path.dirname(args[0]))
            spec = args[-1]
            if '--dry-run' in args:
                report = args[args.index('--report') + 1]
                with open(report, 'w') as f:
                    meta = {'name': 'doow-track-agent', 'version': self.available[-1]}
                    json.dump({'install': [{'metadata': meta}]}, f)
                return 0, '', ''
            if spec.endswith('.whl'):
                version = install.wheel_version(spec)
            elif '==' in spec:
                version = spec.split('==')[1]
            else:
                version = self.available[-1]
            if version not in self.available:
                return 1, '', 'ERROR: No matching distribution found for %s' % spec
            cli = os.path.join(vdir, 'bin', 'doow-track')
            # The version lives in the venv itself, so that it moves with it
            # (the module builds in a temporary directory and renames it).
            with open(cli, 'w') as f:
                f.write('#!%s/bin/python\n# %s\n' % (vdir, version))
            os.chmod(cli, 0o755)
            self.installed[vdir] = version
            return 0, '', ''
        if len(args) > 2 and args[1] == '-c' and args[2] == install.PROBE:
            cli = os.path.join(os.path.dirname(args[0]), 'doow-track')
            try:
                with open(cli) as f:
                    version = f.read().splitlines()[1][2:]
            except (IOError, OSError, IndexError):
                return 1, '', 'no such venv'
            return 0, json.dumps({'python': self.python_version, 'version': version}), ''
        return None


def test_failed_install_leaves_nothing_half_built(tmp_path, module_env, host):
    wheel, wh = _wheel(tmp_path, '0.3.0')   # not available: pip fails
    prefix = str(tmp_path / 'opt')
    result, failed = run_module(install.main, dict(wheel=wheel, wheelhouse=wh, prefix=prefix))
    assert failed and 'No matching distribution' in result['msg']
    assert os.listdir(os.path.join(prefix, 'versions')) == []
    assert not os.path.lexists(os.path.join(prefix, 'current'))


def test_built_venv_names_its_final_path(tmp_path, module_env, host):
    wheel, wh = _wheel(tmp_path)
    prefix = str(tmp_path / 'opt')
    result, failed = run_module(install.main, dict(wheel=wheel, wheelhouse=wh, prefix=prefix))
    assert not failed, result
    vdir = os.path.join(prefix, 'versions', '0.1.0')
    with open(os.path.join(vdir, 'bin', 'doow-track')) as f:
        assert f.readline() == '#!%s/bin/python\n' % vdir
    assert sorted(os.listdir(os.path.join(prefix, 'versions'))) == ['0.1.0']


def test_wheelhouse_per_python_version(tmp_path, module_env, host):
    wheel, wh = _wheel(tmp_path)
    os.makedirs(os.path.join(wh, 'py3.11'))
    os.makedirs(os.path.join(wh, 'py3.9'))
    result, failed = run_module(install.main, dict(wheel=wheel, wheelhouse=wh, prefix=str(tmp_path / 'opt')))
    assert not failed, result
    pip = host.pip_calls[-1]
    assert pip[pip.index('--find-links') + 1] == os.path.join(wh, 'py3.11')


def test_wheelhouse_without_this_python_names_it(tmp_path, module_env, host):
    wheel, wh = _wheel(tmp_path)
    os.makedirs(os.path.join(wh, 'py3.9'))
    result, failed = run_module(install.main, dict(wheel=wheel, wheelhouse=wh, prefix=str(tmp_path / 'opt')))
    assert failed and 'no py3.11 directory' in result['msg'] and 'py3.9' in result['msg']


def test_proxy_without_scheme_and_credentials_masked(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    params = dict(version='0.3.0', prefix=prefix, proxy='puser:proxy-s3cret@proxy.example:3128',
                  index_url='https://iuser:index-s3cret@pypi.example/simple',
                  pip_extra_args=['--extra-index-url=https://x:extra-s3cret@other.example/simple'])
    result, failed = run_module(install.main, params)
    assert failed
    env = host.pip_envs[-1]
    assert env['PIP_PROXY'] == 'http://puser:proxy-s3cret@proxy.example:3128'
    assert env['PIP_INDEX_URL'] == 'https://iuser:index-s3cret@pypi.example/simple'
    # credentials never on pip's command line, which every local user sees in ps
    assert not [a for a in host.pip_calls[-1] if 'proxy-s3cret' in a or 'index-s3cret' in a]
    text = json.dumps(result)
    for secret in ('proxy-s3cret', 'index-s3cret', 'extra-s3cret'):
        assert secret not in text


@pytest.fixture
def host(runner):
    return FakeHost(runner)


def _wheel(tmp_path, version='0.1.0'):
    wh = tmp_path / 'dist' / 'wheelhouse'
    wh.mkdir(parents=True, exist_ok=True)
    wheel = tmp_path / 'dist' / ('doow_track_agent-%s-py3-none-any.whl' % version)
    wheel.write_text(u'')
    return str(wheel), str(wh)


def test_wheel_version():
    assert install.wheel_version('/x/doow_track_agent-0.1.0-py3-none-any.whl') == '0.1.0'
    assert install.wheel_version('doow_track_agent-1.2.3rc1-1-py3-none-any.whl') == '1.2.3rc1'
    assert install.wheel_version('not-a-wheel.tar.gz') is None


def test_offline_install_then_idempotent(tmp_path, module_env, host, runner):
    prefix = str(tmp_path / 'opt')
    wheel, wh = _wheel(tmp_path)
    args = dict(prefix=prefix, wheel=wheel, wheelhouse=wh)
    result, failed = run_module(install.main, args)
    assert not failed, result
    assert result['changed'] is True
    assert result['version'] == '0.1.0' and result['previous_version'] is None
    assert result['cli'] == os.path.join(prefix, 'current', 'bin', 'doow-track')
    assert os.readlink(os.path.join(prefix, 'current')) == os.path.join('versions', '0.1.0')
    pip = host.pip_calls[0]
    assert pip[pip.index('--find-links') + 1] == wh and '--no-index' in pip and pip[-1] == wheel
    marker = json.load(open(os.path.join(prefix, 'versions', '0.1.0', install.MARKER)))
    assert marker['version'] == '0.1.0' and marker['python_version'] == [3, 11]

    result, failed = run_module(install.main, args)
    assert not failed and result['changed'] is False and result['version'] == '0.1.0'
    assert len(host.pip_calls) == 1


def test_version_upgrade_switches_link_and_keeps_previous(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    result, failed = run_module(install.main, dict(prefix=prefix, version='0.2.0'), diff=True)
    assert not failed and result['changed']
    assert result['previous_version'] == '0.1.0' and result['version'] == '0.2.0'
    assert result['diff'] == {'before': {'current': '0.1.0'}, 'after': {'current': '0.2.0'}}
    assert sorted(result['installed_versions']) == ['0.1.0', '0.2.0']
    # rollback is re-pointing the link: no pip run
    calls = len(host.pip_calls)
    result, failed = run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    assert not failed and result['changed'] and result['version'] == '0.1.0'
    assert len(host.pip_calls) == calls


def test_keep_versions_prunes(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    host.available = ['0.1.0', '0.2.0', '0.3.0']
    for v in ('0.1.0', '0.2.0', '0.3.0'):
        result, failed = run_module(install.main, dict(prefix=prefix, version=v, keep_versions=2))
        assert not failed
    assert result['removed_versions'] == ['0.1.0']
    assert sorted(os.listdir(os.path.join(prefix, 'versions'))) == ['0.2.0', '0.3.0']


def test_check_mode_changes_nothing(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    wheel, wh = _wheel(tmp_path)
    result, failed = run_module(install.main, dict(prefix=prefix, wheel=wheel, wheelhouse=wh), check_mode=True)
    assert not failed and result['changed'] is True and result['version'] == '0.1.0'
    assert not os.path.exists(prefix)
    assert host.pip_calls == []


def test_rebuilt_when_python_changes(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    host.python_version = [3, 12]
    result, failed = run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    assert not failed and result['changed'] and result['rebuilt']
    marker = json.load(open(os.path.join(prefix, 'versions', '0.1.0', install.MARKER)))
    assert marker['python_version'] == [3, 12]


def test_incomplete_venv_is_rebuilt(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    os.unlink(os.path.join(prefix, 'versions', '0.1.0', install.MARKER))
    result, failed = run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    assert not failed and result['changed'] and result['rebuilt']


def test_present_without_version_keeps_installed(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    result, failed = run_module(install.main, dict(prefix=prefix))
    assert not failed and not result['changed'] and result['version'] == '0.1.0'


def test_latest_upgrades(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    before = len(host.pip_calls)
    result, failed = run_module(install.main, dict(prefix=prefix, state='latest', index_url='https://pypi.example/simple'))
    assert not failed and result['changed'] and result['version'] == '0.2.0'
    calls = host.pip_calls[before:]
    assert '--dry-run' in calls[0] and '--dry-run' not in calls[1]
    assert all(env['PIP_INDEX_URL'] == 'https://pypi.example/simple' for env in host.pip_envs[before:])
    result, failed = run_module(install.main, dict(prefix=prefix, state='latest'))
    assert not failed and not result['changed']


def test_pip_failure_is_clear(tmp_path, module_env, host):
    result, failed = run_module(install.main, dict(prefix=str(tmp_path / 'opt'), version='9.9.9'))
    assert failed
    assert 'failed to install doow-track-agent==9.9.9' in result['msg']
    assert 'No matching distribution' in result['msg']


def test_wheel_version_mismatch(tmp_path, module_env, host):
    wheel, wh = _wheel(tmp_path)
    result, failed = run_module(install.main, dict(prefix=str(tmp_path / 'o'), wheel=wheel, version='0.2.0'))
    assert failed and 'is version 0.1.0' in result['msg']


def test_missing_wheel(tmp_path, module_env, host):
    result, failed = run_module(install.main, dict(prefix=str(tmp_path / 'o'), wheel=str(tmp_path / 'x.whl')))
    assert failed and 'does not exist' in result['msg']


def test_old_python_refused(tmp_path, module_env, runner):
    runner.on(lambda args, kw: (0, '[3, 8]', ''))
    result, failed = run_module(install.main, dict(prefix=str(tmp_path / 'o'), version='0.1.0'))
    assert failed and 'needs 3.9' in result['msg']


def test_absent(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    run_module(install.main, dict(prefix=prefix, version='0.1.0'))
    run_module(install.main, dict(prefix=prefix, version='0.2.0'))
    result, failed = run_module(install.main, dict(prefix=prefix, state='absent', version='0.1.0'))
    assert not failed and result['changed'] and result['version'] == '0.2.0'
    assert result['installed_versions'] == ['0.2.0']
    result, failed = run_module(install.main, dict(prefix=prefix, state='absent'), check_mode=True)
    assert not failed and result['changed'] and os.path.isdir(prefix)
    result, failed = run_module(install.main, dict(prefix=prefix, state='absent'))
    assert not failed and result['changed'] and not os.path.exists(prefix)
    result, failed = run_module(install.main, dict(prefix=prefix, state='absent'))
    assert not failed and not result['changed']


def test_default_python_is_module_interpreter(tmp_path, module_env, host, runner):
    run_module(install.main, dict(prefix=str(tmp_path / 'opt'), version='0.1.0'))
    venv_calls = [c for c in runner.commands() if c[1:3] == ['-m', 'venv']]
    assert venv_calls[0][0] == sys.executable


def test_check_mode_before_the_wheel_was_copied(tmp_path, module_env, host):
    args = dict(prefix=str(tmp_path / 'o'), wheel=str(tmp_path / 'doow_track_agent-0.1.0-py3-none-any.whl'),
                wheelhouse=str(tmp_path / 'wh'))
    result, failed = run_module(install.main, args, check_mode=True)
    assert not failed and result['changed'] and result['version'] == '0.1.0'
    assert not os.path.exists(str(tmp_path / 'o')) and host.pip_calls == []


def test_missing_wheel_of_the_current_version_is_fine(tmp_path, module_env, host):
    prefix = str(tmp_path / 'opt')
    wheel, wh = _wheel(tmp_path)
    run_module(install.main, dict(prefix=prefix, wheel=wheel, wheelhouse=wh))
    os.unlink(wheel)
    result, failed = run_module(install.main, dict(prefix=prefix, wheel=wheel, wheelhouse=wh))
    assert not failed and not result['changed'] and result['version'] == '0.1.0'
    host.python_version = [3, 12]
    result, failed = run_module(install.main, dict(prefix=prefix, wheel=wheel, wheelhouse=wh))
    assert failed and 'must be (re)built' in result['msg']
