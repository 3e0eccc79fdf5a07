# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.doow.track.plugins.modules import event
from ansible_collections.doow.track.tests.unit.plugins.modules.utils import make_cli, run_module

KEY = 'dk_test_direct_key_9876wxyz'


class FakeCli(object):
    def __init__(self, runner, cli):
        self.cli = cli
        self.agent_up = True
        self.sent = []
        self.env = []
        runner.on(self.handle)

    def handle(self, args, kwargs):
        if args[0] != self.cli:
            return None
        if args[1] == '--dry-run':
            line = json.loads(kwargs['data'])
            ok = line.get('quantity', 0) > 0
            return (0 if ok else 65), json.dumps({'lines_read': 1, 'valid': int(ok), 'invalid': int(not ok),
                                                  'event_ids': [line['event_id']], 'errors': []}), ''
        if args[1] == 'send':
            line = json.loads(args[-2] if args[-1] == '--json' else args[-1])
            if '--direct' in args:
                self.env.append(kwargs.get('environ_update') or {})
                self.sent.append(('direct', line))
                return 0, json.dumps({'lines_read': 1, 'valid': 1, 'invalid': 0, 'delivered': 1,
                                      'event_ids': [line['event_id']], 'exit_code': 0}), ''
            if not self.agent_up:
                return 69, json.dumps({'sent': 0, 'accepted': 0, 'exit_code': 69}), 'no agent at socket'
            self.sent.append(('agent', line))
            return 0, json.dumps({'sent': 1, 'accepted': 1, 'invalid': 0, 'event_ids': [line['event_id']],
                                  'errors': [], 'exit_code': 0}), ''
        return None


@pytest.fixture
def cli(tmp_path, runner):
    prefix, path = make_cli(tmp_path)
    fake = FakeCli(runner, path)
    fake.prefix = prefix
    spool = tmp_path / 'spool'
    spool.mkdir()
    cfg = tmp_path / 'c.json'
    cfg.write_text(json.dumps({'apiKey': KEY, 'endpoint': 'http://127.0.0.1:8080',
                               'socket': {'path': str(tmp_path / 'a.sock')}, 'spool': {'dir': str(spool)}}))
    fake.config = str(cfg)
    fake.spool = str(spool)
    return fake


def base(cli, **kw):
    a = dict(metric='deploys', quantity=1, license_id='lic_x', prefix=cli.prefix, config_file=cli.config)
    a.update(kw)
    return a


def test_through_agent(tmp_path, module_env, cli, runner):
    result, failed = run_module(event.main, base(cli, attribution={'release': '42'}, unit='count'))
    assert not failed and result['changed'] and result['sent'] and result['via'] == 'agent'
    via, line = cli.sent[0]
    assert via == 'agent'
    assert line == {'metric': 'deploys', 'quantity': 1, 'license_id': 'lic_x', 'event_id': result['event_id'],
                    'attribution': {'release': '42'}, 'unit': 'count'}
    send = [c for c in runner.commands() if c[1] == 'send'][0]
    assert send[send.index('--socket') + 1] == str(tmp_path / 'a.sock')
    assert send[send.index('--config') + 1] == cli.config


def test_generated_ids_differ(module_env, cli):
    r1 = run_module(event.main, base(cli))[0]
    r2 = run_module(event.main, base(cli))[0]
    assert r1['event_id'] != r2['event_id'] and r1['changed'] and r2['changed']


def test_event_id_sent_once(module_env, cli):
    r1, failed = run_module(event.main, base(cli, event_id='deploy-42'))
    assert not failed and r1['changed'] and r1['event_id'] == 'deploy-42'
    r2, failed = run_module(event.main, base(cli, event_id='deploy-42'))
    assert not failed and not r2['changed'] and not r2['sent'] and 'already sent' in r2['msg']
    assert len(cli.sent) == 1
    assert open(os.path.join(cli.spool, event.LEDGER_NAME)).read() == 'deploy-42\n'
    r3, failed = run_module(event.main, base(cli, event_id='deploy-42', resend=True))
    assert not failed and r3['changed'] and len(cli.sent) == 2
    assert cli.sent[0][1]['event_id'] == cli.sent[1][1]['event_id'] == 'deploy-42'


def test_auto_falls_back_to_direct_with_key_in_env_not_argv(module_env, cli, runner):
    cli.agent_up = False
    result, failed = run_module(event.main, base(cli, api_key=KEY, endpoint='http://127.0.0.1:9'))
    assert not failed and result['via'] == 'direct' and cli.sent[0][0] == 'direct'
    assert cli.env[0]['DOOW_TRACK_API_KEY'] == KEY and cli.env[0]['DOOW_TRACK_ENDPOINT'] == 'http://127.0.0.1:9'
    assert not any(KEY in arg for c in runner.commands() for arg in c)
    assert KEY not in json.dumps(result)


def test_direct_key_from_config(module_env, cli):
    result, failed = run_module(event.main, base(cli, via='direct'))
    assert not failed and cli.env[0]['DOOW_TRACK_API_KEY'] == KEY
    assert cli.env[0]['DOOW_TRACK_ENDPOINT'] == 'http://127.0.0.1:8080'


def test_direct_without_key_fails(tmp_path, module_env, cli, monkeypatch):
    monkeypatch.delenv('DOOW_TRACK_API_KEY', raising=False)
    result, failed = run_module(event.main, base(cli, via='direct', config_file=str(tmp_path / 'none.json')))
    assert failed and 'no API key' in result['msg']


def test_via_agent_requires_agent(module_env, cli):
    cli.agent_up = False
    result, failed = run_module(event.main, base(cli, via='agent'))
    assert failed and 'no agent answers' in result['msg'] and cli.sent == []


def test_check_mode_validates_only(module_env, cli, runner):
    result, failed = run_module(event.main, base(cli, event_id='e-1'), check_mode=True)
    assert not failed and result['changed'] and not result['sent'] and cli.sent == []
    assert result['result']['valid'] == 1
    assert [c[1] for c in runner.commands()] == ['--dry-run']
    assert not os.path.exists(os.path.join(cli.spool, event.LEDGER_NAME))


def test_check_mode_without_cli(tmp_path, module_env, runner):
    result, failed = run_module(event.main, dict(metric='m', quantity=2.5, license_id='lic_x',
                                                 prefix=str(tmp_path / 'none'), config_file=str(tmp_path / 'c.json')),
                                check_mode=True)
    assert not failed and 'not installed' in result['msg'] and result['event']['quantity'] == 2.5


def test_quantity_must_be_positive(module_env, cli):
    result, failed = run_module(event.main, base(cli, quantity=0))
    assert failed and 'greater than zero' in result['msg']


def test_rejected_event_fails(module_env, cli, runner):
    runner.on(lambda a, kw: (65, json.dumps({'sent': 1, 'accepted': 0, 'invalid': 1,
                                             'errors': [{'path': '$.metric', 'message': 'too long'}]}), '')
              if a[1] == 'send' else None)
    result, failed = run_module(event.main, base(cli))
    assert failed and '$.metric: too long' in result['msg']


def test_ledger_default_without_spool(tmp_path, module_env, cli, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))
    result, failed = run_module(event.main, base(cli, event_id='x-1', config_file=str(tmp_path / 'none.json'),
                                                 socket=str(tmp_path / 'a.sock')))
    assert not failed
    assert os.path.exists(str(tmp_path / 'home' / '.doow-track' / event.LEDGER_NAME))


def test_config_and_prefix_from_environment(module_env, cli, monkeypatch):
    monkeypatch.setenv('DOOW_TRACK_CONFIG', cli.config)
    monkeypatch.setenv('DOOW_TRACK_PREFIX', cli.prefix)
    result, failed = run_module(event.main, dict(metric='deploys', quantity=1, license_id='lic_x'))
    assert not failed and result['via'] == 'agent' and cli.sent
