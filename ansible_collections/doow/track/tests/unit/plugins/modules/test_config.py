# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os
import stat

import pytest

from ansible_collections.doow.track.plugins.modules import config
from ansible_collections.doow.track.tests.unit.plugins.modules.utils import make_cli, run_module

KEY = 'dk_live_supersecret_0000abcd'


@pytest.fixture
def cli(tmp_path, runner):
    prefix, path = make_cli(tmp_path)
    state = {'checked': [], 'reject': None}

    def check(args, kwargs):
        if args[0] == path and args[1] == 'check':
            cfg_path = args[args.index('--config') + 1]
            with open(cfg_path) as f:
                state['checked'].append(json.load(f))
            if state['reject']:
                return 78, json.dumps({'ok': False, 'config': cfg_path, 'errors': [state['reject']], 'warnings': []}), ''
            return 0, json.dumps({'ok': True, 'config': cfg_path, 'errors': [], 'warnings': []}), ''
        return None
    runner.on(check)
    return prefix, state


def args_for(tmp_path, prefix, **kw):
    a = dict(config_file=str(tmp_path / 'etc' / 'doow-track.json'), prefix=prefix, api_key=KEY,
             endpoint='http://127.0.0.1:8080', flush_at=20, attribution={'env': 'prod'},
             spool={'dir': '/var/lib/x', 'max_bytes': 1024}, health={'listen': '127.0.0.1:9191'})
    a.update(kw)
    return a


def test_build_config_camel_cases_sections_not_attribution():
    cfg = config.build_config(dict(api_key='dk_x', flush_interval=5, request_timeout=7,
                                   attribution={'my_key': 1}, spool={'max_bytes': 2, 'fsync': None},
                                   extra={'spool': {'fsync': 'always'}, 'newKey': True}))
    assert cfg == {'apiKey': 'dk_x', 'flushInterval': 5, 'timeout': 7, 'attribution': {'my_key': 1},
                   'spool': {'maxBytes': 2, 'fsync': 'always'}, 'newKey': True}


def test_writes_validated_file_then_idempotent(tmp_path, module_env, cli):
    prefix, state = cli
    args = args_for(tmp_path, prefix)
    result, failed = run_module(config.main, args)
    assert not failed, result
    assert result['changed'] and result['validated'] and result['content_changed']
    assert result['reload_needed'] is False  # nothing was configured before
    path = args['config_file']
    on_disk = json.load(open(path))
    assert on_disk['apiKey'] == KEY and on_disk['spool'] == {'dir': '/var/lib/x', 'maxBytes': 1024}
    assert state['checked'][0] == on_disk
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert KEY not in json.dumps(result)
    assert result['config']['apiKey'] == u'dk_\u2026abcd'
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith('.')]

    result, failed = run_module(config.main, args)
    assert not failed and result['changed'] is False and result['reload_needed'] is False
    assert len(state['checked']) == 1


def test_change_needs_reload_and_diff_masks_key(tmp_path, module_env, cli):
    prefix, state = cli
    run_module(config.main, args_for(tmp_path, prefix))
    result, failed = run_module(config.main, args_for(tmp_path, prefix, attribution={'env': 'staging'}), diff=True)
    assert not failed and result['changed'] and result['reload_needed']
    diff = result['diff']
    assert '"staging"' in diff['after'] and '"prod"' in diff['before']
    assert KEY not in diff['before'] + diff['after']
    assert u'dk_\u2026abcd' in diff['after']


def test_rejected_config_keeps_old_file(tmp_path, module_env, cli):
    prefix, state = cli
    args = args_for(tmp_path, prefix)
    run_module(config.main, args)
    before = open(args['config_file']).read()
    state['reject'] = {'key': 'flushAt', 'message': "-1 is less than the minimum of 1"}
    result, failed = run_module(config.main, args_for(tmp_path, prefix, flush_at=-1))
    assert failed
    assert 'flushAt: -1 is less than the minimum of 1' in result['msg']
    assert 'left unchanged' in result['msg']
    assert open(args['config_file']).read() == before


def test_check_mode_writes_nothing(tmp_path, module_env, cli):
    prefix, state = cli
    args = args_for(tmp_path, prefix)
    result, failed = run_module(config.main, args, check_mode=True, diff=True)
    assert not failed and result['changed'] and result['validated']
    assert not os.path.exists(args['config_file'])
    assert result['diff']['before'] == ''


def test_check_mode_without_cli_skips_validation(tmp_path, module_env, runner):
    args = args_for(tmp_path, str(tmp_path / 'nothing-here'))
    result, failed = run_module(config.main, args, check_mode=True)
    assert not failed and result['changed'] and not result['validated']
    assert runner.calls == []


def test_missing_cli_fails_outside_check_mode(tmp_path, module_env, runner):
    result, failed = run_module(config.main, args_for(tmp_path, str(tmp_path / 'nothing-here')))
    assert failed and 'doow-track CLI not found' in result['msg']


def test_validate_false(tmp_path, module_env, runner):
    args = args_for(tmp_path, str(tmp_path / 'nothing-here'), validate=False)
    result, failed = run_module(config.main, args)
    assert not failed and result['changed'] and not result['validated']


def test_mode_change_only(tmp_path, module_env, cli):
    prefix, state = cli
    args = args_for(tmp_path, prefix)
    run_module(config.main, args)
    result, failed = run_module(config.main, dict(args, mode='0640'))
    assert not failed and result['changed'] and not result['content_changed'] and not result['reload_needed']
    assert stat.S_IMODE(os.stat(args['config_file']).st_mode) == 0o640


def test_tcp_token_masked(tmp_path, module_env, cli):
    prefix, state = cli
    result, failed = run_module(config.main, args_for(tmp_path, prefix, tcp={'listen': '127.0.0.1:9091', 'token': 'tok-secret'}))
    assert not failed and result['config']['tcp']['token'] == '********'


def test_no_log_on_api_key():
    from ansible_collections.doow.track.plugins.module_utils.doow_cli import api_argument_spec
    assert api_argument_spec()['api_key']['no_log']


def test_mode_only_change_is_a_change_with_a_diff(tmp_path, module_env, cli):
    prefix, state = cli
    run_module(config.main, args_for(tmp_path, prefix))
    result, failed = run_module(config.main, args_for(tmp_path, prefix, mode='0640'), diff=True)
    assert not failed and result['changed'] and not result['content_changed'] and not result['reload_needed']
    assert result['diff']['before'] == 'mode: 0600\n' and result['diff']['after'] == 'mode: 0640\n'
    result, failed = run_module(config.main, args_for(tmp_path, prefix, mode='0640'), diff=True)
    assert not failed and not result['changed'] and 'diff' not in result
