#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: service
short_description: Start, stop, restart or reload the doow-track agent
version_added: 0.1.0
description:
  - Manages the doow-track agent either through systemd (installing the unit
    that C(doow-track systemd-unit) generates) or directly as a python-daemon
    process tracked by its pidfile.
  - V(reloaded) sends SIGHUP and confirms that the agent took the new
    configuration (a new config generation with the same pid); when the agent
    kept its old configuration because the new one is invalid, the task fails.
  - In check mode on a host where the runtime is not installed yet the module
    reports what it would do instead of failing.
author:
  - doow-track contributors (@doow)
options:
  state:
    description:
      - V(started) and V(stopped) are idempotent; V(restarted) always restarts;
        V(reloaded) reloads a running agent and starts a stopped one.
    type: str
    choices: [started, stopped, restarted, reloaded]
    default: started
  enabled:
    description:
      - Start the agent at boot (C(systemctl enable)).
      - The direct manager has no boot integration, so V(true) fails with it
        before anything changes; on hosts without systemd set V(false) (or
        leave it unset) and start the agent at boot by your own means.
    type: bool
  manager:
    description:
      - V(systemd) when systemd is PID 1 (installs the unit, uses systemctl);
        V(direct) runs the agent as a python-daemon process with a pidfile.
      - V(auto) picks V(systemd) when the host booted with systemd, else V(direct).
      - V(systemd) on a host that did not boot with systemd fails before
        writing anything.
    type: str
    choices: [auto, systemd, direct]
    default: auto
  pidfile:
    description:
      - The agent's pidfile. Defaults to the C(pidfile) key of the
        configuration, else C(/run/doow-track/doow-track.pid).
    type: path
  name:
    description: Name of the systemd unit, without C(.service).
    type: str
    default: doow-track
  unit_dir:
    description: Directory the systemd unit is written to.
    type: path
    default: /etc/systemd/system
  user:
    description:
      - User the agent runs as, under every manager. The systemd unit gets
        C(User=) (C(doow-track systemd-unit --user)); the direct manager starts
        the agent as this user (the module must run as root for that).
      - Default the user running the module.
    type: str
  group:
    description:
      - Primary group of the agent (systemd C(Group=)); default the primary
        group of O(user). Supplementary groups (the socket's group) come from
        the group database.
    type: str
  timeout:
    description: Seconds to wait for the agent to stop or to confirm a reload.
    type: int
    default: 30
extends_documentation_fragment:
  - doow.track.common
  - doow.track.common.config_file
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: With the systemd manager the diff shows changes of the unit file.
  platform:
    platforms: posix
seealso:
  - module: doow.track.config
  - module: doow.track.health
'''

EXAMPLES = r'''
- name: Start the agent (systemd or pidfile, whatever the host has)
  doow.track.service:
    state: started
    enabled: true

- name: Reload after a configuration change and confirm it took effect
  doow.track.service:
    state: reloaded
    config_file: /etc/doow-track/doow-track.json

- name: Several agents on one machine, each with its own files
  doow.track.service:
    state: started
    manager: direct
    prefix: /srv/agent-a
    config_file: /srv/agent-a/doow-track.json
    pidfile: /srv/agent-a/doow-track.pid
'''

RETURN = r'''
manager:
  description: The manager used.
  returned: always
  type: str
  sample: direct
state:
  description: The state reached (V(started) or V(stopped)).
  returned: always
  type: str
  sample: started
running:
  description: Whether the agent runs after the task (assumed in check mode).
  returned: always
  type: bool
pid:
  description: The agent's pid after the task.
  returned: when running
  type: int
  sample: 4242
previous_pid:
  description: The agent's pid before the task.
  returned: always
  type: int
  sample: 4242
generation:
  description: The agent's configuration generation after the task.
  returned: when running
  type: int
  sample: 2
version:
  description: Runtime version the running agent reports.
  returned: when running
  type: str
  sample: 0.1.0
unit_path:
  description: The systemd unit file.
  returned: with the systemd manager
  type: str
  sample: /etc/systemd/system/doow-track.service
'''

import errno
import grp
import os
import pwd
import signal
import sys
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes
from ansible_collections.doow.track.plugins.module_utils.doow_cli import (
    DEFAULT_PIDFILE, EXIT_CONFIG, EXIT_NOT_RUNNING, DoowCli, agent_settings,
    cli_argument_spec, config_file_argument_spec,
)


# Runs as root in front of the CLI: become the agent's user (with its
# supplementary groups, for the socket group), then exec the CLI.
DROP_PRIVILEGES = (
    "import grp, os, pwd, sys\n"
    "user = pwd.getpwnam(sys.argv[1])\n"
    "gid = grp.getgrnam(sys.argv[2]).gr_gid if sys.argv[2] else user.pw_gid\n"
    "os.initgroups(user.pw_name, gid)\n"
    "os.setgid(gid)\n"
    "os.setuid(user.pw_uid)\n"
    "os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)\n"
    "os.execv(sys.argv[3], sys.argv[3:])\n"
)


def systemd_booted():
    # sd_booted(3): the canonical test that systemd is PID 1.
    return os.path.isdir('/run/systemd/system')


class Agent(object):
    def __init__(self, module):
        self.module = module
        p = module.params
        self.cli = DoowCli(module)
        self.config_file = p['config_file']
        settings = agent_settings(self.config_file)
        self.pidfile = p['pidfile'] or settings['pidfile'] or DEFAULT_PIDFILE
        self.timeout = p['timeout']
        # Stopping an agent that was never installed is a no-op, not an error.
        required = not module.check_mode and p['state'] != 'stopped'
        self.installed = self.cli.find(required=required) is not None

    def status(self):
        """The agent's status dict ({'running': False} when the CLI is not
        installed or the agent has no configuration)."""
        if not self.installed:
            return {'running': False}
        if not os.path.exists(self.config_file):
            pid = self.pidfile_pid()
            return {'running': pid is not None, 'pid': pid, 'unconfigured': True}
        res = self.cli.run(['status', '--config', self.config_file],
                           ok_rcs=(0, EXIT_NOT_RUNNING), what='doow-track status')
        data = dict(res.data)
        data['running'] = res.rc == 0 and data.get('running', True) is not False
        return data

    def pidfile_pid(self):
        """The live pid in the pidfile, or None."""
        try:
            with open(self.pidfile) as f:
                pid = int(f.read().strip() or 0)
        except (IOError, OSError, ValueError):
            return None
        if pid <= 0:
            return None
        try:
            os.kill(pid, 0)
        except OSError as e:
            return pid if e.errno == errno.EPERM else None
        return pid

    def kill(self, pid):
        """Stop an agent whose configuration is gone: SIGTERM, wait, report."""
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            return
        deadline = time.time() + self.timeout
        while time.time() < deadline and self.pidfile_pid() == pid:
            time.sleep(0.2)
        if self.pidfile_pid() == pid:
            self.module.fail_json(msg='agent pid %s did not stop within %ss' % (pid, self.timeout))

    def wait_status(self, predicate, seconds):
        deadline = time.time() + seconds
        status = self.status()
        while not predicate(status) and time.time() < deadline:
            time.sleep(0.25)
            status = self.status()
        return status

    # direct manager -------------------------------------------------------
    def run_as(self):
        """The command that puts the CLI in the agent user's shoes ([] when
        the module already runs as that user)."""
        user, group = self.module.params['user'], self.module.params['group']
        if not user and not group:
            return []
        try:
            entry = pwd.getpwnam(user) if user else pwd.getpwuid(os.getuid())
            gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
        except KeyError as e:
            self.module.fail_json(msg='cannot run the agent as user=%s group=%s: %s' % (user, group, e))
        if (entry.pw_uid, gid) == (os.getuid(), os.getgid()):
            return []
        if os.geteuid() != 0:
            self.module.fail_json(msg='starting the agent as user=%s group=%s needs root (become: true)'
                                  % (entry.pw_name, group or gid))
        return [sys.executable, '-c', DROP_PRIVILEGES, entry.pw_name, group or '']

    def start(self):
        if not os.path.exists(self.config_file):
            self.module.fail_json(msg='cannot start the agent: its configuration %s does not exist '
                                      '(write it with doow.track.config)' % self.config_file)
        self.cli.run(['--config', self.config_file, '--pidfile', self.pidfile], json_output=False,
                     run_as=self.run_as(),
                     what='starting the agent (doow-track --config %s --pidfile %s)' % (self.config_file, self.pidfile))
        return self.wait_status(lambda s: s.get('running'), self.timeout)

    def stop(self):
        if not os.path.exists(self.config_file):
            pid = self.pidfile_pid()
            if pid:
                self.kill(pid)
            return {'running': False}
        self.cli.run(['stop', '--config', self.config_file, '--pidfile', self.pidfile,
                      '--timeout', str(self.timeout)], what='doow-track stop')
        return self.status()

    def reload(self, before):
        res = self.cli.run(['reload', '--config', self.config_file, '--pidfile', self.pidfile,
                            '--timeout', str(self.timeout)],
                           ok_rcs=(0, EXIT_CONFIG), what='doow-track reload')
        if res.rc == EXIT_CONFIG or res.data.get('ok') is False:
            self.cli.fail(res, what='reload of the agent (it kept its previous configuration)',
                          previous_pid=before.get('pid'))
        after = self.status()
        self.confirm_reload(before, after, res.data)
        return after

    def confirm_reload(self, before, after, reply=None):
        if after.get('pid') != before.get('pid'):
            self.module.fail_json(msg='agent pid changed during reload (%s -> %s): it restarted instead of reloading'
                                  % (before.get('pid'), after.get('pid')), status=after)
        gen_before = (reply or {}).get('generation_before', before.get('generation'))
        gen_after = after.get('generation')
        if gen_before is not None and gen_after is not None and gen_after <= gen_before:
            self.module.fail_json(msg='agent did not take a new configuration generation (still %s)' % gen_after,
                                  status=after)


class Systemd(object):
    def __init__(self, module, agent):
        self.module = module
        self.agent = agent
        self.name = module.params['name']
        self.unit = self.name + '.service'
        self.unit_path = os.path.join(module.params['unit_dir'], self.unit)
        self.systemctl = module.get_bin_path('systemctl', required=not module.check_mode)

    def ctl(self, *args):
        rc, out, err = self.module.run_command([self.systemctl] + list(args))
        return rc, out.strip(), err.strip()

    def must(self, *args):
        rc, out, err = self.ctl(*args)
        if rc != 0:
            self.module.fail_json(msg='systemctl %s failed: %s' % (' '.join(args), err or out), rc=rc)
        return out

    def ensure_unit(self, diff):
        """Install the generated unit; True when it changed."""
        if not self.agent.installed:
            return True
        cli_path = self.agent.cli.find()
        args = ['systemd-unit', '--config', self.agent.config_file, '--exec', cli_path]
        for option in ('user', 'group'):
            if self.module.params[option]:
                args += ['--' + option, self.module.params[option]]
        res = self.agent.cli.run(args, json_output=False, what='doow-track systemd-unit')
        wanted = res.stdout
        try:
            with open(self.unit_path) as f:
                current = f.read()
        except (IOError, OSError):
            current = None
        if current == wanted:
            return False
        diff.update(before_header=self.unit_path, after_header=self.unit_path,
                    before=current or '', after=wanted)
        if not self.module.check_mode:
            fd, tmp = tempfile.mkstemp(dir=os.path.dirname(self.unit_path), prefix='.' + self.unit)
            with os.fdopen(fd, 'wb') as f:
                f.write(to_bytes(wanted))
            os.chmod(tmp, 0o644)
            os.rename(tmp, self.unit_path)
            self.must('daemon-reload')
        return True

    def is_active(self):
        if not self.systemctl:
            return False
        return self.ctl('is-active', '--quiet', self.unit)[0] == 0

    def is_enabled(self):
        if not self.systemctl:
            return False
        return self.ctl('is-enabled', '--quiet', self.unit)[0] == 0


def main():
    argument_spec = dict(
        state=dict(type='str', default='started', choices=['started', 'stopped', 'restarted', 'reloaded']),
        enabled=dict(type='bool'),
        manager=dict(type='str', default='auto', choices=['auto', 'systemd', 'direct']),
        pidfile=dict(type='path'),
        name=dict(type='str', default='doow-track'),
        unit_dir=dict(type='path', default='/etc/systemd/system'),
        user=dict(type='str'),
        group=dict(type='str'),
        timeout=dict(type='int', default=30),
    )
    argument_spec.update(cli_argument_spec())
    argument_spec.update(config_file_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    manager = p['manager']
    if manager == 'auto':
        manager = 'systemd' if systemd_booted() else 'direct'
    if manager == 'systemd' and p['state'] != 'stopped' and not systemd_booted():
        module.fail_json(msg='manager=systemd but this host did not boot with systemd (no /run/systemd/system); '
                             'nothing was written. Use manager=direct or auto.', manager=manager, changed=False)
    if manager == 'direct' and p['enabled']:
        module.fail_json(msg='enabled=true asks for a start at boot, which the direct manager cannot provide '
                             '(no systemd on this host); nothing was changed. Set enabled=false and start the '
                             'agent at boot by your own means, or run it under systemd.',
                         manager=manager, changed=False)

    agent = Agent(module)
    before = agent.status()
    result = dict(changed=False, manager=manager, previous_pid=before.get('pid'))
    if not agent.installed and p['state'] != 'stopped':
        result['msg'] = 'doow-track is not installed yet (check mode): the agent would be %s' % p['state']
    state = p['state']
    check = module.check_mode
    after = before

    if manager == 'systemd':
        sd = Systemd(module, agent)
        result['unit_path'] = sd.unit_path
        diff = {}
        if state != 'stopped':
            unit_changed = sd.ensure_unit(diff)
            if unit_changed:
                result['changed'] = True
                result['diff'] = diff
        if p['enabled'] is not None and sd.is_enabled() != p['enabled']:
            result['changed'] = True
            if not check:
                sd.must('enable' if p['enabled'] else 'disable', sd.unit)
        active = sd.is_active()
        if state == 'started' and not active:
            result['changed'] = True
            if not check:
                sd.must('start', sd.unit)
                after = agent.wait_status(lambda s: s.get('running'), p['timeout'])
        elif state == 'stopped' and active:
            result['changed'] = True
            if not check:
                sd.must('stop', sd.unit)
                after = agent.status()
        elif state == 'restarted':
            result['changed'] = True
            if not check:
                sd.must('restart', sd.unit)
                after = agent.wait_status(lambda s: s.get('running') and s.get('pid') != before.get('pid'),
                                          p['timeout'])
        elif state == 'reloaded':
            result['changed'] = True
            if not check:
                if active:
                    sd.must('reload', sd.unit)
                    gen = before.get('generation') or 0
                    after = agent.wait_status(lambda s: (s.get('generation') or 0) > gen, p['timeout'])
                    agent.confirm_reload(before, after)
                else:
                    sd.must('start', sd.unit)
                    after = agent.wait_status(lambda s: s.get('running'), p['timeout'])
    else:
        running = before.get('running')
        if state == 'started' and not running:
            result['changed'] = True
            if not check:
                after = agent.start()
        elif state == 'stopped' and running:
            result['changed'] = True
            if not check:
                after = agent.stop()
        elif state == 'restarted':
            result['changed'] = True
            if not check:
                if running:
                    agent.stop()
                after = agent.start()
        elif state == 'reloaded':
            result['changed'] = True
            if not check:
                after = agent.reload(before) if running else agent.start()

    if check:
        running = state != 'stopped' if result['changed'] else bool(before.get('running'))
    else:
        running = bool(after.get('running'))
        if state != 'stopped' and not running:
            module.fail_json(msg='the agent is not running after the task (see its log; config %s)'
                             % agent.config_file, status=after, **result)
    result['running'] = running
    result['state'] = 'started' if running else 'stopped'
    if running and not check:
        for key in ('pid', 'generation', 'version'):
            if after.get(key) is not None:
                result[key] = after[key]
    elif running and not result['changed']:
        for key in ('pid', 'generation', 'version'):
            if before.get(key) is not None:
                result[key] = before[key]
    module.exit_json(**result)


if __name__ == '__main__':
    main()
