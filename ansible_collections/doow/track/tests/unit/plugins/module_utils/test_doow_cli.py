# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

import pytest

from ansible_collections.doow.track.plugins.module_utils import doow_cli


class Failed(Exception):
    pass


class FakeModule(object):
    def __init__(self, params=None, path_bins=None, results=None):
        self.params = params or {}
        self.path_bins = path_bins or {}
        self.results = list(results or [])
        self.calls = []

    def get_bin_path(self, name, required=False):
        return self.path_bins.get(name)

    def fail_json(self, **kwargs):
        raise Failed(kwargs)

    def run_command(self, cmd, **kwargs):
        self.calls.append((cmd, kwargs))
        return self.results.pop(0)


def test_mask_key():
    assert doow_cli.mask_key('dk_live_abcdefgh1234') == u'dk_\u20261234'
    assert doow_cli.mask_key('dk_abcdefg') == u'dk_\u2026'
    assert doow_cli.mask_key('short') == u'\u2026'
    assert doow_cli.mask_key(None) == u'(none)'


def test_parse_json_output():
    assert doow_cli.parse_json_output('{"a": 1}\n') == {'a': 1}
    assert doow_cli.parse_json_output('warning: x\n{"a": 2}\n') == {'a': 2}
    assert doow_cli.parse_json_output('') is None
    assert doow_cli.parse_json_output('not json') is None


def test_agent_settings_defaults(tmp_path):
    s = doow_cli.agent_settings(str(tmp_path / 'missing.json'))
    assert s['exists'] is False
    assert s['socket'] == doow_cli.DEFAULT_SOCKET
    assert s['health_listen'] == '127.0.0.1:9090'
    assert s['spool_dir'] == doow_cli.DEFAULT_SPOOL_DIR
    assert s['pidfile'] is None


def test_agent_settings_from_config(tmp_path):
    cfg = tmp_path / 'c.json'
    cfg.write_text(json.dumps({'socket': {'path': '/x.sock'}, 'health': {'listen': '127.0.0.1:9999'},
                               'spool': {'dir': '/sp'}, 'pidfile': '/p.pid'}))
    s = doow_cli.agent_settings(str(cfg))
    assert (s['exists'], s['socket'], s['health_listen'], s['spool_dir'], s['pidfile']) == \
        (True, '/x.sock', '127.0.0.1:9999', '/sp', '/p.pid')


def _exe(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(u'#!/bin/sh\n')
    path.chmod(0o755)
    return str(path)


def test_find_prefers_cli_option(tmp_path):
    cli = _exe(tmp_path / 'bin' / 'doow-track')
    _exe(tmp_path / 'prefix' / 'current' / 'bin' / 'doow-track')
    m = FakeModule({'cli': cli, 'prefix': str(tmp_path / 'prefix')})
    assert doow_cli.DoowCli(m).find() == cli


def test_find_bad_cli_option_fails(tmp_path):
    m = FakeModule({'cli': str(tmp_path / 'nope'), 'prefix': None})
    with pytest.raises(Failed) as e:
        doow_cli.DoowCli(m).find()
    assert 'not an executable' in e.value.args[0]['msg']


def test_find_prefix_then_path(tmp_path):
    in_prefix = _exe(tmp_path / 'prefix' / 'current' / 'bin' / 'doow-track')
    m = FakeModule({'cli': None, 'prefix': str(tmp_path / 'prefix')}, path_bins={'doow-track': '/usr/bin/doow-track'})
    assert doow_cli.DoowCli(m).find() == in_prefix
    m = FakeModule({'cli': None, 'prefix': str(tmp_path / 'other')}, path_bins={'doow-track': '/usr/bin/doow-track'})
    assert doow_cli.DoowCli(m).find() == '/usr/bin/doow-track'


def test_find_missing(tmp_path):
    m = FakeModule({'cli': None, 'prefix': str(tmp_path)})
    cli = doow_cli.DoowCli(m)
    assert cli.find(required=False) is None
    with pytest.raises(Failed) as e:
        cli.find()
    msg = e.value.args[0]['msg']
    assert 'not found' in msg and str(tmp_path) in msg and 'PATH' in msg


def test_run_appends_json_and_parses(tmp_path):
    cli = _exe(tmp_path / 'doow-track')
    m = FakeModule({'cli': cli, 'prefix': None}, results=[(0, '{"running": true}\n', '')])
    res = doow_cli.DoowCli(m).run(['status', '--config', '/c.json'])
    assert m.calls[0][0] == [cli, 'status', '--config', '/c.json', '--json']
    assert res.rc == 0 and res.data == {'running': True} and res.parsed


def test_run_without_json(tmp_path):
    cli = _exe(tmp_path / 'doow-track')
    m = FakeModule({'cli': cli, 'prefix': None}, results=[(0, '[Unit]\n', '')])
    res = doow_cli.DoowCli(m).run(['systemd-unit'], json_output=False)
    assert m.calls[0][0] == [cli, 'systemd-unit']
    assert res.stdout == '[Unit]\n' and not res.parsed


def test_run_failure_maps_exit_status(tmp_path):
    cli = _exe(tmp_path / 'doow-track')
    out = json.dumps({'ok': False, 'errors': [{'key': 'flushAt', 'message': "'x' is not of type 'integer'"}]})
    m = FakeModule({'cli': cli, 'prefix': None}, results=[(78, out, '')])
    with pytest.raises(Failed) as e:
        doow_cli.DoowCli(m).run(['check', '--config', '/c.json'])
    failure = e.value.args[0]
    assert failure['rc'] == 78
    assert 'bad configuration' in failure['msg']
    assert "flushAt: 'x' is not of type 'integer'" in failure['msg']


def test_run_failure_uses_stderr_when_no_json(tmp_path):
    cli = _exe(tmp_path / 'doow-track')
    m = FakeModule({'cli': cli, 'prefix': None}, results=[(77, '', 'boom\nkey dk_…abcd rejected\n')])
    with pytest.raises(Failed) as e:
        doow_cli.DoowCli(m).run(['send'], what='doow-track send')
    assert e.value.args[0]['msg'].startswith('doow-track send failed with exit status 77 (the API key was rejected')
    assert 'rejected' in e.value.args[0]['msg']


def test_run_ok_rcs_and_env(tmp_path):
    cli = _exe(tmp_path / 'doow-track')
    m = FakeModule({'cli': cli, 'prefix': None}, results=[(3, '{"running": false}', '')])
    res = doow_cli.DoowCli(m).run(['status'], ok_rcs=(0, 3), environ_update={'DOOW_TRACK_API_KEY': 'dk_x'})
    assert res.rc == 3 and res.get('running') is False
    assert m.calls[0][1]['environ_update']['DOOW_TRACK_API_KEY'] == 'dk_x'


def test_unknown_exit_status(tmp_path):
    cli = _exe(tmp_path / 'doow-track')
    m = FakeModule({'cli': cli, 'prefix': None}, results=[(1, '', 'Traceback\nValueError: x\n')])
    with pytest.raises(Failed) as e:
        doow_cli.DoowCli(m).run(['status'])
    assert 'unexpected exit status' in e.value.args[0]['msg']
    assert 'ValueError: x' in e.value.args[0]['msg']


def test_argument_specs():
    assert doow_cli.api_argument_spec()['api_key']['no_log'] is True
    assert doow_cli.cli_argument_spec()['prefix']['default'] == '/opt/doow-track'
    assert doow_cli.config_file_argument_spec()['config_file']['default'] == doow_cli.DEFAULT_CONFIG


def test_env_fallbacks_match_the_cli():
    from ansible.module_utils.basic import env_fallback
    assert doow_cli.config_file_argument_spec()['config_file']['fallback'] == (env_fallback, ['DOOW_TRACK_CONFIG'])
    assert doow_cli.cli_argument_spec()['prefix']['fallback'] == (env_fallback, ['DOOW_TRACK_PREFIX'])


def test_describe_failure_reads_the_error_of_each_line():
    data = {'sent': 1, 'accepted': 0, 'invalid': 1, 'exit_code': 65,
            'errors': [{'line': 1, 'error': 'metadata.note looks like an AWS access key id', 'kind': 'secret'}]}
    result = doow_cli.CliResult(['doow-track', 'send'], 65, data, json.dumps(data), '')
    msg = doow_cli.DoowCli(FakeModule()).describe_failure(result)
    assert msg.endswith(': 1: metadata.note looks like an AWS access key id')
