# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.doow.track.plugins.modules import service
from ansible_collections.doow.track.tests.unit.plugins.modules.utils import make_cli, run_module

UNIT = u'[Unit]\nDescription=doow-track agent\n[Service]\nType=notify\nExecStart=/x\n'


class FakeAgent(object):
    """The agent as the CLI reports it."""

    def __init__(self, runner, cli):
        self.cli = cli
        self.pid = None
        self.generation = 0
        self.next_pid = 100
        self.reload_rc = 0
        self.version = '0.1.0'
        self.systemctl = []
        self.active = False
        self.enabled = False
        runner.on(self.handle)

    def start(self):
        self.next_pid += 1
        self.pid = self.next_pid
        self.generation = 1

    def handle(self, args, kwargs):
        if args[0] == '/bin/systemctl':
            return self.handle_systemctl(args[1:])
        if args[0] != self.cli:
            return None
        cmd = args[1]
        if cmd == 'status':
            if self.pid is None:
                return 3, json.dumps({'running': False}), ''
            return 0, json.dumps({'running': True, 'ready': True, 'pid': self.pid,
                                  'generation': self.generation, 'version': self.version}), ''
        if cmd == '--config':
            assert '--pidfile' in args
            if self.pid is not None:
                return 69, '', 'doow-track: another agent holds the pidfile'
            self.start()
            return 0, '', ''
        if cmd == 'stop':
            was = self.pid
            self.pid = None
            return 0, json.dumps({'was_running': was is not None, 'stopped': True, 'pid': was}), ''
        if cmd == 'reload':
            if self.pid is None:
                return 3, json.dumps({'ok': False}), ''
            before = self.generation
            if self.reload_rc:
                return self.reload_rc, json.dumps({'ok': False, 'pid': self.pid, 'generation_before': before,
                                                   'generation': before, 'error': 'flushAt: bad value'}), ''
            self.generation += 1
            return 0, json.dumps({'ok': True, 'pid': self.pid, 'generation_before': before,
                                  'generation': self.generation, 'error': None}), ''
        if cmd == 'systemd-unit':
            return 0, UNIT, ''
        return None

    def handle_systemctl(self, args):
        self.systemctl.append(args)
        if args[0] == 'is-active':
            return (0 if self.active else 3), '', ''
        if args[0] == 'is-enabled':
            return (0 if self.enabled else 1), '', ''
        if args[0] == 'start':
            self.active = True
            self.start()
        elif args[0] == 'stop':
            self.active = False
            self.pid = None
        elif args[0] == 'restart':
            self.active = True
            self.start()
        elif args[0] == 'reload':
            self.generation += 1
        elif args[0] == 'enable':
            self.enabled = True
        elif args[0] == 'disable':
            self.enabled = False
        return 0, '', ''


@pytest.fixture
def agent(tmp_path, runner, monkeypatch):
    prefix, cli = make_cli(tmp_path)
    monkeypatch.setattr(service.time, 'sleep', lambda s: None)
    fake = FakeAgent(runner, cli)
    fake.prefix = prefix
    (tmp_path / 'c.json').write_text(u'{}')
    return fake


def args(agent, tmp_path, **kw):
    a = dict(prefix=agent.prefix, config_file=str(tmp_path / 'c.json'), pidfile=str(tmp_path / 'a.pid'),
             manager='direct')
    a.update(kw)
    return a


def test_started_then_idempotent(tmp_path, module_env, agent, runner):
    result, failed = run_module(service.main, args(agent, tmp_path))
    assert not failed and result['changed'] and result['running'] and result['pid'] == 101
    start = [c for c in runner.commands() if c[1] == '--config'][0]
    assert start == [agent.cli, '--config', str(tmp_path / 'c.json'), '--pidfile', str(tmp_path / 'a.pid')]
    result, failed = run_module(service.main, args(agent, tmp_path))
    assert not failed and not result['changed'] and result['pid'] == 101


def test_pidfile_from_config(tmp_path, module_env, agent, runner):
    cfg = tmp_path / 'c.json'
    cfg.write_text(json.dumps({'pidfile': '/run/x/agent.pid'}))
    a = args(agent, tmp_path)
    del a['pidfile']
    run_module(service.main, a)
    start = [c for c in runner.commands() if c[1] == '--config'][0]
    assert start[-1] == '/run/x/agent.pid'


def test_stopped(tmp_path, module_env, agent):
    agent.start()
    result, failed = run_module(service.main, args(agent, tmp_path, state='stopped'))
    assert not failed and result['changed'] and not result['running'] and result['state'] == 'stopped'
    result, failed = run_module(service.main, args(agent, tmp_path, state='stopped'))
    assert not failed and not result['changed']


def test_stopped_when_not_installed(tmp_path, module_env, runner):
    result, failed = run_module(service.main, dict(prefix=str(tmp_path / 'none'), state='stopped', manager='direct',
                                                   config_file=str(tmp_path / 'c.json')))
    assert not failed and not result['changed'] and runner.calls == []


def test_restarted_changes_pid(tmp_path, module_env, agent):
    agent.start()
    result, failed = run_module(service.main, args(agent, tmp_path, state='restarted'))
    assert not failed and result['changed'] and result['previous_pid'] == 101 and result['pid'] == 102


def test_reloaded_keeps_pid_new_generation(tmp_path, module_env, agent):
    agent.start()
    result, failed = run_module(service.main, args(agent, tmp_path, state='reloaded'))
    assert not failed and result['changed']
    assert result['pid'] == 101 and result['previous_pid'] == 101 and result['generation'] == 2


def test_reload_rejected_fails(tmp_path, module_env, agent):
    agent.start()
    agent.reload_rc = 78
    result, failed = run_module(service.main, args(agent, tmp_path, state='reloaded'))
    assert failed
    assert 'kept its previous configuration' in result['msg'] and 'flushAt: bad value' in result['msg']


def test_reloaded_starts_stopped_agent(tmp_path, module_env, agent):
    result, failed = run_module(service.main, args(agent, tmp_path, state='reloaded'))
    assert not failed and result['changed'] and result['running']


def test_check_mode_fresh_host(tmp_path, module_env, runner):
    result, failed = run_module(service.main, dict(prefix=str(tmp_path / 'none'), manager='direct',
                                                   config_file=str(tmp_path / 'c.json')), check_mode=True)
    assert not failed and result['changed'] and result['running']
    assert 'not installed yet' in result['msg'] and runner.calls == []


def test_check_mode_changes_nothing(tmp_path, module_env, agent):
    result, failed = run_module(service.main, args(agent, tmp_path), check_mode=True)
    assert not failed and result['changed'] and agent.pid is None
    agent.start()
    for state in ('restarted', 'reloaded', 'stopped'):
        result, failed = run_module(service.main, args(agent, tmp_path, state=state), check_mode=True)
        assert not failed and result['changed']
    assert agent.pid == 101 and agent.generation == 1


def test_not_running_after_start_fails(tmp_path, module_env, agent, runner):
    runner.on(lambda a, kw: (0, '', '') if a[1] == '--config' else None)  # starts nothing
    result, failed = run_module(service.main, args(agent, tmp_path, timeout=0))
    assert failed and 'not running after the task' in result['msg']


def test_auto_picks_direct_without_systemd(tmp_path, module_env, agent, monkeypatch):
    monkeypatch.setattr(service, 'systemd_booted', lambda: False)
    result, failed = run_module(service.main, args(agent, tmp_path, manager='auto'))
    assert not failed and result['manager'] == 'direct'


@pytest.fixture
def systemd(agent, monkeypatch, tmp_path):
    monkeypatch.setattr(service, 'systemd_booted', lambda: True)
    real = service.AnsibleModule.get_bin_path

    def get_bin_path(self, name, required=False, opt_dirs=None):
        if name == 'systemctl':
            return '/bin/systemctl'
        return real(self, name, required=required, opt_dirs=opt_dirs)
    monkeypatch.setattr(service.AnsibleModule, 'get_bin_path', get_bin_path)
    (tmp_path / 'units').mkdir()
    return agent


def test_systemd_installs_unit_enables_and_starts(tmp_path, module_env, systemd, runner):
    a = args(systemd, tmp_path, manager='auto', enabled=True, unit_dir=str(tmp_path / 'units'), user='doow-track')
    result, failed = run_module(service.main, a, diff=True)
    assert not failed and result['changed'] and result['manager'] == 'systemd'
    unit = tmp_path / 'units' / 'doow-track.service'
    assert unit.read_text() == UNIT and result['diff']['after'] == UNIT
    gen = [c for c in runner.commands() if c[1] == 'systemd-unit'][0]
    assert gen[gen.index('--exec') + 1] == systemd.cli and gen[gen.index('--user') + 1] == 'doow-track'
    assert ['daemon-reload'] in systemd.systemctl
    assert ['enable', 'doow-track.service'] in systemd.systemctl
    assert ['start', 'doow-track.service'] in systemd.systemctl
    result, failed = run_module(service.main, a)
    assert not failed and not result['changed']


def test_systemd_reload_confirms_generation(tmp_path, module_env, systemd):
    a = args(systemd, tmp_path, manager='systemd', unit_dir=str(tmp_path / 'units'))
    run_module(service.main, a)
    result, failed = run_module(service.main, dict(a, state='reloaded'))
    assert not failed and result['generation'] == 2 and result['pid'] == result['previous_pid']
    assert ['reload', 'doow-track.service'] in systemd.systemctl


def test_systemd_stopped(tmp_path, module_env, systemd):
    a = args(systemd, tmp_path, manager='systemd', unit_dir=str(tmp_path / 'units'))
    run_module(service.main, a)
    result, failed = run_module(service.main, dict(a, state='stopped'))
    assert not failed and result['changed'] and not result['running']
    assert os.path.exists(str(tmp_path / 'units' / 'doow-track.service'))


def test_stopped_without_config_is_noop(tmp_path, module_env, agent, runner):
    os.unlink(str(tmp_path / 'c.json'))
    result, failed = run_module(service.main, args(agent, tmp_path, state='stopped'))
    assert not failed and not result['changed'] and runner.calls == []


def test_stopped_without_config_kills_pidfile_process(tmp_path, module_env, agent, monkeypatch):
    os.unlink(str(tmp_path / 'c.json'))
    (tmp_path / 'a.pid').write_text(u'4242\n')
    alive = {4242: True}

    def fake_kill(pid, sig):
        if not alive.get(pid):
            raise OSError(3, 'No such process')
        if sig:
            alive[pid] = False
    monkeypatch.setattr(service.os, 'kill', fake_kill)
    result, failed = run_module(service.main, args(agent, tmp_path, state='stopped'))
    assert not failed and result['changed'] and result['previous_pid'] == 4242 and not alive[4242]


def test_start_without_config_fails(tmp_path, module_env, agent):
    os.unlink(str(tmp_path / 'c.json'))
    result, failed = run_module(service.main, args(agent, tmp_path))
    assert failed and 'does not exist' in result['msg']


def test_systemd_without_systemd_fails_before_writing(tmp_path, module_env, agent, monkeypatch, runner):
    monkeypatch.setattr(service, 'systemd_booted', lambda: False)
    (tmp_path / 'units').mkdir()
    a = args(agent, tmp_path, manager='systemd', unit_dir=str(tmp_path / 'units'))
    result, failed = run_module(service.main, a)
    assert failed and 'did not boot with systemd' in result['msg'] and not result['changed']
    assert os.listdir(str(tmp_path / 'units')) == []
    assert not [c for c in runner.commands() if 'systemd-unit' in c]


def test_direct_manager_refuses_enabled(tmp_path, module_env, agent):
    result, failed = run_module(service.main, args(agent, tmp_path, enabled=True))
    assert failed and 'direct manager cannot provide' in result['msg'] and not result['changed']
    assert agent.pid is None


def test_direct_manager_starts_agent_as_user(tmp_path, module_env, agent, runner, monkeypatch):
    import pwd
    nobody = pwd.getpwnam('nobody')
    monkeypatch.setattr(service.os, 'geteuid', lambda: 0)
    dropped = []

    def behind_drop(cmd, kwargs):
        if cmd[1:3] != ['-c', service.DROP_PRIVILEGES]:
            return None
        dropped.append(cmd)
        return agent.handle(cmd[5:], kwargs)
    runner.on(behind_drop)
    result, failed = run_module(service.main, args(agent, tmp_path, user='nobody'))
    assert not failed, result
    assert len(dropped) == 1 and dropped[0][3:5] == [nobody.pw_name, ''] and dropped[0][5] == agent.cli
    assert '--pidfile' in dropped[0]
