#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: install
short_description: Install, upgrade or remove the doow-track runtime in a versioned virtualenv
version_added: 0.1.0
description:
  - Installs the C(doow-track-agent) distribution (console script C(doow-track))
    into one virtualenv per version under O(prefix), C(PREFIX/versions/VERSION),
    and points the C(PREFIX/current) symlink at it atomically. Rolling back is
    re-pointing C(current) at an older version that is still installed.
  - Installs from PyPI or another index, from a wheel file on the host, or fully
    offline from a wheelhouse directory (C(pip install --no-index --find-links)).
  - A virtualenv whose Python changed under it (interpreter upgraded or removed,
    or a different O(python)) or whose install is incomplete is rebuilt.
  - Needs the C(venv) module of the target's Python (C(python3-venv) on
    Debian/Ubuntu). The module itself uses the standard library only.
  - A version is built in a temporary directory next to C(versions/VERSION)
    and renamed into place once pip succeeded and the install answers with the
    right version, so a failed or interrupted install leaves nothing
    half-built.
  - A O(wheelhouse) with one subdirectory per Python version
    (C(py3.9), C(py3.12), ...; see the C(doow.track.wheelhouse) playbook)
    installs from the subdirectory that matches the virtualenv's Python.
author:
  - doow-track contributors (@doow)
options:
  name:
    description:
      - Distribution name to install from an index or wheelhouse.
    type: str
    default: doow-track-agent
  version:
    description:
      - Version to install, for example C(0.1.0).
      - When not set, O(state=present) keeps the installed version (or installs
        the version of O(wheel), or the newest one available on a fresh host), and
        O(state=latest) installs the newest version available.
      - With O(state=absent), only this version is removed.
    type: str
  state:
    description:
      - V(present) installs O(version) (or anything, when no version is given).
      - V(latest) upgrades to the newest version the index or wheelhouse offers.
      - V(absent) removes O(version), or everything the module created under
        O(prefix) when no version is given.
    type: str
    choices: [present, latest, absent]
    default: present
  prefix:
    description:
      - Directory that holds C(versions/) and the C(current) link.
      - When not given, E(DOOW_TRACK_PREFIX) on the target, then the default.
    type: path
    default: /opt/doow-track
  python:
    description:
      - Python interpreter used to create the virtualenvs (3.9 or newer).
      - Defaults to the interpreter that runs this module.
    type: path
  wheel:
    description:
      - Path on the target to a C(doow_track_agent-VERSION-*.whl) to install.
        Its version is read from the file name.
      - Dependencies come from O(wheelhouse) when given, else from the index.
    type: path
  wheelhouse:
    description:
      - Directory on the target with the wheels of the runtime and of its
        dependencies. Installs with C(--no-index --find-links), without network.
    type: path
  index_url:
    description:
      - Base URL of the Python package index (E(PIP_INDEX_URL)).
      - May carry credentials (C(https://user:token@host/simple)); given to pip
        in its environment, never logged or returned.
    type: str
  extra_index_urls:
    description:
      - Extra package indexes (E(PIP_EXTRA_INDEX_URL)); never logged or returned.
    type: list
    elements: str
    default: []
  proxy:
    description:
      - Proxy for pip, in the form C([scheme://][user:passwd@]proxy.server:port);
        without a scheme, C(http://) is assumed (pip itself refuses a proxy
        without one).
      - Given to pip in its environment (E(PIP_PROXY)), not on its command
        line; the password is never returned or logged.
    type: str
  pip_extra_args:
    description:
      - Further arguments for C(pip install), for example C(--trusted-host).
      - Passwords of URLs in them (C(scheme://user:passwd@host)) are masked in
        the output.
    type: list
    elements: str
    default: []
  keep_versions:
    description:
      - How many installed versions to keep (the current one included); older
        ones are removed after a successful switch. V(0) keeps all.
    type: int
    default: 2
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details: The diff shows the version the C(current) link points at.
  platform:
    platforms: posix
notes:
  - The C(doow-track) CLI of the current version is C(PREFIX/current/bin/doow-track);
    the other modules of this collection find it there.
seealso:
  - module: doow.track.service
'''

EXAMPLES = r'''
- name: Install doow-track 0.1.0 from PyPI
  doow.track.install:
    version: 0.1.0

- name: Install offline from a wheel and a wheelhouse copied to the host
  doow.track.install:
    wheel: /opt/doow-track/dist/doow_track_agent-0.1.0-py3-none-any.whl
    wheelhouse: /opt/doow-track/dist/wheelhouse
    prefix: /opt/doow-track

- name: Upgrade to the newest release through a proxy
  doow.track.install:
    state: latest
    proxy: proxy.example.com:3128

- name: Roll back by re-pointing current at the previous version
  doow.track.install:
    version: 0.1.0
  notify: Restart doow-track agent

- name: Remove everything under the prefix
  doow.track.install:
    state: absent
'''

RETURN = r'''
version:
  description: Version the C(current) link points at after the run (null after a full removal).
  returned: always
  type: str
  sample: 0.1.0
previous_version:
  description: Version C(current) pointed at before the run.
  returned: always
  type: str
  sample: 0.0.9
cli:
  description: Path of the C(doow-track) CLI of the current version.
  returned: when installed
  type: str
  sample: /opt/doow-track/current/bin/doow-track
venv:
  description: The virtualenv of the current version.
  returned: when installed
  type: str
  sample: /opt/doow-track/versions/0.1.0
python:
  description: Interpreter the virtualenv was built with.
  returned: when installed
  type: str
  sample: /usr/bin/python3.11
installed_versions:
  description: Versions installed under the prefix after the run.
  returned: always
  type: list
  elements: str
  sample: ["0.0.9", "0.1.0"]
rebuilt:
  description: Whether an existing but broken virtualenv was rebuilt.
  returned: always
  type: bool
'''

import json
import os
import re
import shutil
import sys
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_bytes
from ansible_collections.doow.track.plugins.module_utils.doow_cli import url_secrets

MARKER = '.doow-track-install.json'
BUILD_PREFIX = '.build-'
WHEEL_RE = re.compile(r'^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$')

PROBE = (
    "import json, sys\n"
    "try:\n"
    "    from importlib.metadata import version\n"
    "    v = version(sys.argv[1])\n"
    "except Exception:\n"
    "    v = None\n"
    "print(json.dumps({'python': list(sys.version_info[:2]), 'version': v}))\n"
)


def canonical(name):
    return re.sub(r'[-_.]+', '-', name).lower()


def wheel_version(path):
    m = WHEEL_RE.match(os.path.basename(path))
    if not m:
        return None
    return m.group('version')


def proxy_url(proxy):
    """pip wants a scheme: ``user:pw@proxy:3128`` -> ``http://user:pw@proxy:3128``."""
    return proxy if '://' in proxy else 'http://' + proxy


def wheelhouse_for(wheelhouse, python_version):
    """WHEELHOUSE/py3.X when the wheelhouse is split per Python version, else WHEELHOUSE."""
    sub = os.path.join(wheelhouse, 'py%s.%s' % tuple(python_version))
    return sub if os.path.isdir(sub) else wheelhouse


def split_per_python(wheelhouse):
    try:
        return [n for n in os.listdir(wheelhouse) if re.match(r'^py\d+\.\d+', n)]
    except OSError:
        return []


def python_identity(module, python):
    """(realpath, [major, minor]) of the interpreter that will create venvs."""
    real = os.path.realpath(python)
    rc, out, err = module.run_command([python, '-c', 'import json, sys; print(json.dumps(list(sys.version_info[:2])))'])
    if rc != 0:
        module.fail_json(msg='python=%s does not run: %s' % (python, (err or out).strip()))
    try:
        ver = json.loads(out.strip())
    except ValueError:
        module.fail_json(msg='python=%s printed something unexpected: %s' % (python, out))
    if tuple(ver) < (3, 9):
        module.fail_json(msg='python=%s is Python %s; doow-track needs 3.9 or newer' % (python, '.'.join(map(str, ver))))
    return real, ver


def relocate(built, final):
    """A virtualenv names its own path in its scripts' shebangs, its activate
    scripts and pyvenv.cfg: point them at where it is renamed to."""
    old, new = to_bytes(built), to_bytes(final)
    bindir = os.path.join(built, 'bin')
    paths = [os.path.join(bindir, n) for n in os.listdir(bindir)] + [os.path.join(built, 'pyvenv.cfg')]
    for path in paths:
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, 'rb') as f:
            data = f.read()
        if old in data:
            mode = os.stat(path).st_mode
            with open(path, 'wb') as f:
                f.write(data.replace(old, new))
            os.chmod(path, mode)


class Installer(object):
    def __init__(self, module):
        self.module = module
        p = module.params
        self.name = p['name']
        self.prefix = p['prefix']
        self.versions_dir = os.path.join(self.prefix, 'versions')
        self.current = os.path.join(self.prefix, 'current')
        self.python = p['python'] or sys.executable
        self.check = module.check_mode
        self.rebuilt = False

    # -- inspection ---------------------------------------------------------
    def venv_dir(self, version):
        return os.path.join(self.versions_dir, version)

    def current_version(self):
        try:
            target = os.readlink(self.current)
        except OSError:
            return None
        return os.path.basename(target.rstrip('/'))

    def marker(self, version):
        path = os.path.join(self.venv_dir(version), MARKER)
        try:
            with open(path) as f:
                return json.load(f)
        except (IOError, OSError, ValueError):
            return None

    def installed_versions(self):
        try:
            names = os.listdir(self.versions_dir)
        except OSError:
            return []
        found = [n for n in names if not n.startswith('.') and self.marker(n) is not None]
        return sorted(found, key=lambda n: (self.marker(n) or {}).get('installed_at', 0))

    def venv_healthy(self, version, identity):
        """True when versions/VERSION is a complete install of VERSION whose
        Python is still the one it was built with."""
        info = self.marker(version)
        if not info:
            return False
        if info.get('python') != identity[0] or list(info.get('python_version') or []) != list(identity[1]):
            return False
        py = os.path.join(self.venv_dir(version), 'bin', 'python')
        cli = os.path.join(self.venv_dir(version), 'bin', 'doow-track')
        if not (os.path.exists(py) and os.access(cli, os.X_OK)):
            return False
        rc, out, err = self.module.run_command([py, '-c', PROBE, self.name])
        if rc != 0:
            return False
        try:
            probe = json.loads(out.strip())
        except ValueError:
            return False
        return probe.get('version') == version and list(probe.get('python')) == list(identity[1])

    # -- pip ----------------------------------------------------------------
    def pip_source_args(self, python_version=None):
        p = self.module.params
        args = []
        if p['wheelhouse']:
            wheelhouse = wheelhouse_for(p['wheelhouse'], python_version) if python_version else p['wheelhouse']
            args += ['--no-index', '--find-links', wheelhouse]
        args += p['pip_extra_args']
        return args

    def pip_env(self):
        # The proxy in the environment: a command line is visible to every local user in ps.
        env = {'PIP_DISABLE_PIP_VERSION_CHECK': '1', 'PIP_NO_INPUT': '1',
               'PIP_NO_WARN_SCRIPT_LOCATION': '1'}
        p = self.module.params
        if p['proxy']:
            env['PIP_PROXY'] = proxy_url(p['proxy'])
        # Index URLs may carry credentials too: environment, not argv.
        if p['index_url'] and not p['wheelhouse']:
            env['PIP_INDEX_URL'] = p['index_url']
        if p['extra_index_urls'] and not p['wheelhouse']:
            env['PIP_EXTRA_INDEX_URL'] = ' '.join(p['extra_index_urls'])
        return env

    def spec(self, version):
        wheel = self.module.params['wheel']
        if wheel:
            return wheel
        return '%s==%s' % (self.name, version) if version else self.name

    def resolve_latest(self, identity):
        """Ask pip which version it would install (pip install --dry-run --report),
        using the current virtualenv's pip or a throwaway one."""
        scratch = tempfile.mkdtemp(prefix='doow-track-resolve-')
        try:
            cur = self.current_version()
            if cur and self.venv_healthy(cur, identity):
                py = os.path.join(self.venv_dir(cur), 'bin', 'python')
            else:
                self.run([self.python, '-m', 'venv', os.path.join(scratch, 'venv')], 'create a scratch virtualenv')
                py = os.path.join(scratch, 'venv', 'bin', 'python')
            report = os.path.join(scratch, 'report.json')
            cmd = [py, '-m', 'pip', 'install', '--dry-run', '--ignore-installed', '--no-deps',
                   '--quiet', '--report', report] + self.pip_source_args(identity[1]) + [self.spec(None)]
            self.run(cmd, 'resolve the newest version of %s' % self.name, environ_update=self.pip_env())
            with open(report) as f:
                data = json.load(f)
            for item in data.get('install', []):
                meta = item.get('metadata', {})
                if canonical(meta.get('name', '')) == canonical(self.name):
                    return meta.get('version')
            self.module.fail_json(msg='pip did not report a version for %s' % self.name)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def run(self, cmd, what, environ_update=None):
        rc, out, err = self.module.run_command(cmd, environ_update=environ_update)
        if rc != 0:
            hint = ''
            if '-m' in cmd and 'venv' in cmd:
                hint = ' (on Debian/Ubuntu install the python3-venv package)'
            self.module.fail_json(msg='failed to %s%s: %s' % (what, hint, (err or out).strip()[-2000:]),
                                  rc=rc, cmd=cmd, stdout=out, stderr=err)
        return out

    # -- actions ------------------------------------------------------------
    def build(self, version, identity):
        """Build versions/VERSION in a temporary directory beside it and rename
        it into place only when complete: a failure leaves nothing behind."""
        vdir = self.venv_dir(version)
        if not os.path.isdir(self.versions_dir):
            os.makedirs(self.versions_dir, 0o755)
        self.remove_stale_builds(version)
        tmp = os.path.join(self.versions_dir, '%s%s-%d' % (BUILD_PREFIX, version, os.getpid()))
        try:
            self.run([self.python, '-m', 'venv', tmp], 'create the virtualenv %s' % vdir)
            py = os.path.join(tmp, 'bin', 'python')
            cmd = [py, '-m', 'pip', 'install', '--quiet'] + self.pip_source_args(identity[1]) + [self.spec(version)]
            self.run(cmd, 'install %s' % self.spec(version), environ_update=self.pip_env())
            rc, out, err = self.module.run_command([py, '-c', PROBE, self.name])
            try:
                got = json.loads(out.strip()).get('version')
            except ValueError:
                got = None
            if got != version:
                self.module.fail_json(msg='installed %s but it reports version %s, expected %s'
                                          % (self.spec(version), got, version))
            info = {'name': self.name, 'version': version, 'python': identity[0],
                    'python_version': list(identity[1]), 'installed_at': time.time(),
                    'source': self.spec(version)}
            with open(os.path.join(tmp, MARKER), 'w') as f:
                json.dump(info, f)
            relocate(tmp, vdir)
            if os.path.lexists(vdir):
                self.rebuilt = True
                old = '%s.old-%d' % (tmp, os.getpid())
                os.rename(vdir, old)
                os.rename(tmp, vdir)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, vdir)
        finally:
            if os.path.lexists(tmp):
                shutil.rmtree(tmp, ignore_errors=True)

    def remove_stale_builds(self, version):
        """Temporary build directories of this version left by an interrupted run."""
        for name in os.listdir(self.versions_dir):
            if name.startswith('%s%s-' % (BUILD_PREFIX, version)):
                shutil.rmtree(os.path.join(self.versions_dir, name), ignore_errors=True)

    def switch(self, version):
        """Atomically point current at versions/VERSION (relative link)."""
        tmp = os.path.join(self.prefix, '.current.%d' % os.getpid())
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.join('versions', version), tmp)
        os.rename(tmp, self.current)

    def prune(self, keep, current):
        if keep <= 0:
            return []
        removed = []
        versions = self.installed_versions()
        others = [v for v in versions if v != current]
        excess = len(versions) - keep
        for v in others:
            if excess <= 0:
                break
            if not self.check:
                shutil.rmtree(self.venv_dir(v), ignore_errors=True)
            removed.append(v)
            excess -= 1
        return removed

    def remove_all(self):
        changed = False
        if os.path.lexists(self.current):
            changed = True
            if not self.check:
                os.unlink(self.current)
        if os.path.isdir(self.versions_dir):
            changed = True
            if not self.check:
                shutil.rmtree(self.versions_dir)
        if not self.check and os.path.isdir(self.prefix) and not os.listdir(self.prefix):
            os.rmdir(self.prefix)
        return changed


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', default='doow-track-agent'),
            version=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'latest', 'absent']),
            prefix=dict(type='path', default='/opt/doow-track', fallback=(env_fallback, ['DOOW_TRACK_PREFIX'])),
            python=dict(type='path'),
            wheel=dict(type='path'),
            wheelhouse=dict(type='path'),
            index_url=dict(type='str', no_log=True),
            extra_index_urls=dict(type='list', elements='str', default=[], no_log=True),
            proxy=dict(type='str', no_log=True),
            pip_extra_args=dict(type='list', elements='str', default=[]),
            keep_versions=dict(type='int', default=2),
        ),
        mutually_exclusive=[('wheelhouse', 'index_url')],
        supports_check_mode=True,
    )
    p = module.params
    # pip may repeat a URL decoded or reformatted: hide each password itself too.
    for url in [p['proxy'], p['index_url']] + p['extra_index_urls'] + p['pip_extra_args']:
        if url:
            module.no_log_values.update(url_secrets(url))
    inst = Installer(module)
    previous = inst.current_version()
    result = dict(changed=False, previous_version=previous, version=previous, rebuilt=False)

    if p['state'] == 'absent':
        if p['version']:
            vdir = inst.venv_dir(p['version'])
            if os.path.lexists(vdir):
                result['changed'] = True
                if not module.check_mode:
                    if previous == p['version'] and os.path.lexists(inst.current):
                        os.unlink(inst.current)
                    shutil.rmtree(vdir)
            if previous == p['version']:
                result['version'] = None
        else:
            result['changed'] = inst.remove_all()
            result['version'] = None
        result['installed_versions'] = [] if module.check_mode and not p['version'] else inst.installed_versions()
        if module.check_mode and p['version']:
            result['installed_versions'] = [v for v in result['installed_versions'] if v != p['version']]
        result['diff'] = dict(before={'current': previous}, after={'current': result['version']})
        module.exit_json(**result)

    if p['wheel']:
        wv = wheel_version(p['wheel'])
        if not os.path.isfile(p['wheel']):
            if module.check_mode and wv:
                # A play copies the wheel in an earlier task, which check mode skipped.
                result.update(changed=previous != wv, version=wv,
                              msg='wheel %s is not on the host yet (check mode)' % p['wheel'],
                              diff=dict(before={'current': previous}, after={'current': wv}))
                module.exit_json(**result)
            if not (wv and previous == wv and inst.marker(wv)):
                module.fail_json(msg='wheel=%s does not exist on the target' % p['wheel'])
            # Already installed and current: the wheel is not needed (checked below).
        if not wv:
            module.fail_json(msg='cannot read a version from the wheel file name %s' % p['wheel'])
        if p['version'] and p['version'] != wv:
            module.fail_json(msg='version=%s but the wheel %s is version %s' % (p['version'], p['wheel'], wv))
    else:
        wv = None
    if p['wheelhouse'] and not os.path.isdir(p['wheelhouse']) and not module.check_mode and previous != wv:
        module.fail_json(msg='wheelhouse=%s is not a directory on the target' % p['wheelhouse'])

    identity = python_identity(module, inst.python)
    result['python'] = identity[0]
    if p['wheelhouse'] and os.path.isdir(p['wheelhouse']) and split_per_python(p['wheelhouse']) \
            and wheelhouse_for(p['wheelhouse'], identity[1]) == p['wheelhouse']:
        module.fail_json(msg='wheelhouse=%s has no py%s.%s directory for the Python of this host (it has %s)'
                         % (p['wheelhouse'], identity[1][0], identity[1][1],
                            ', '.join(sorted(split_per_python(p['wheelhouse'])))))

    target = p['version'] or wv
    if not target and p['state'] == 'present' and previous and inst.venv_healthy(previous, identity):
        target = previous
    if not target:
        # latest, or a fresh host without a pinned version: ask pip.
        target = inst.resolve_latest(identity)

    need_build = not inst.venv_healthy(target, identity)
    if need_build and p['wheel'] and not os.path.isfile(p['wheel']) and not module.check_mode:
        module.fail_json(msg='the virtualenv of %s must be (re)built but wheel=%s does not exist on the target'
                         % (target, p['wheel']))
    need_switch = previous != target
    if need_build or need_switch:
        result['changed'] = True
    if need_build and os.path.lexists(inst.venv_dir(target)):
        result['rebuilt'] = True
    if not module.check_mode:
        if need_build:
            inst.build(target, identity)
        if need_switch or need_build:
            inst.switch(target)
    removed = inst.prune(p['keep_versions'], target)
    if removed:
        result['changed'] = True
        result['removed_versions'] = removed

    vdir = inst.venv_dir(target)
    result.update(
        version=target,
        venv=vdir,
        cli=os.path.join(p['prefix'], 'current', 'bin', 'doow-track'),
        installed_versions=inst.installed_versions() if not module.check_mode
        else sorted(set(inst.installed_versions() + [target]) - set(removed)),
        diff=dict(before={'current': previous}, after={'current': target}),
    )
    module.exit_json(**result)


if __name__ == '__main__':
    main()
