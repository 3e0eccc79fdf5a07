#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: config
short_description: Write the doow-track agent's JSON configuration
version_added: 0.1.0
description:
  - Builds the agent's JSON configuration from options and writes it to
    O(config_file) atomically, after the runtime's own C(doow-track check)
    accepted it. A rejected configuration never replaces the old file; the
    error names the offending key.
  - The file is written canonically (sorted keys), so a second identical run
    reports no change. Keys are the runtime's camelCase names; nested options
    accept snake_case keys (C(max_bytes) becomes C(maxBytes)).
  - Returns RV(reload_needed) when the content changed on a host that
    already had a configuration, so a handler can reload the running agent.
author:
  - doow-track contributors (@doow)
options:
  flush_at:
    description: Events that trigger a flush (C(flushAt)).
    type: int
  flush_interval:
    description: Milliseconds between flushes when the queue is not empty (C(flushInterval)).
    type: int
  max_batch_events:
    description: Most events in one request (C(maxBatchEvents), at most 500).
    type: int
  concurrency:
    description: Requests in flight (C(concurrency)).
    type: int
  request_timeout:
    description: HTTP request timeout in milliseconds (C(timeout)).
    type: int
  shutdown_timeout:
    description: Drain deadline on shutdown in milliseconds (C(shutdownTimeout)).
    type: int
  attribution:
    description: Default attribution merged under every event's own (C(attribution)).
    type: dict
  socket:
    description: Unix socket intake, keys C(path), C(mode), C(group) (C(socket)).
    type: dict
  input:
    description: Extra input source in the Node client's shape, keys C(mode) (C(stdin), C(file), C(tcp)), C(path), C(port) (C(input)).
    type: dict
  tcp:
    description: Loopback TCP intake, keys C(listen), C(token) (C(tcp)).
    type: dict
  spool:
    description: Durable spool, keys C(dir), C(max_bytes), C(fsync) (C(spool)).
    type: dict
  health:
    description: Health listener, key C(listen), for example C(127.0.0.1:9090) (C(health)).
    type: dict
  log:
    description: Logging, keys C(level), C(format), C(file) (C(log)).
    type: dict
  pidfile:
    description: The agent's pidfile (C(pidfile)); M(doow.track.service) uses it.
    type: path
  proxy:
    description:
      - Forward proxy for every request to the endpoint (C(proxy)), a URL such
        as V(http://user:password@proxy.example.com:3128) (V(host:port) means
        C(http://host:port), as for curl), V(false) to connect directly
        whatever E(HTTPS_PROXY) says, or V(true) to use the agent's
        E(HTTPS_PROXY), E(HTTP_PROXY), E(ALL_PROXY) and E(NO_PROXY).
      - Not set, the key is left out and the runtime's default (V(true)) applies.
      - The password is written to O(config_file) and never returned or
        logged; RV(config) and the diff show it as C(***). When other options
        are invalid, the whole URL is hidden.
    type: raw
  tls:
    description: How the endpoint's certificate is verified, and the client certificate (C(tls)).
    type: dict
    suboptions:
      trust_store:
        description:
          - V(certifi) (the bundle shipped with the runtime) or V(system), the
            operating system's trust store (C(trustStore)).
        type: str
        choices: [certifi, system]
      ca_file:
        description:
          - PEM file on the host of CA certificates trusted in addition to the
            trust store, for example a TLS-inspecting proxy's CA (C(caFile)).
        type: path
      cert_file:
        description: PEM client certificate on the host, for gateways that require mutual TLS (C(certFile)).
        type: path
      key_file:
        description:
          - Unencrypted PEM private key of O(tls.cert_file) on the host (C(keyFile));
            leave it out when O(tls.cert_file) holds the key too.
        type: path
  extra:
    description:
      - Any other top-level keys, written as given and merged last (a nested
        dictionary is merged one level deep into the one built from options).
    type: dict
    default: {}
  validate:
    description:
      - Run C(doow-track check) on the new content before it replaces the file.
      - In check mode the validation runs when the CLI is installed.
    type: bool
    default: true
  owner:
    description: Owner of the file (default the user running the module).
    type: str
  group:
    description: Group of the file.
    type: str
  mode:
    description: Permissions of the file; it holds the API key.
    type: raw
    default: '0600'
extends_documentation_fragment:
  - doow.track.common
  - doow.track.common.config_file
  - doow.track.common.api
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
    details:
      - The diff shows the JSON document with the API key, the TCP token and the proxy password masked.
      - A change of owner, group or mode alone reports C(changed) with a diff
        of those attributes.
  platform:
    platforms: posix
seealso:
  - module: doow.track.service
'''

EXAMPLES = r'''
- name: Configure the agent
  doow.track.config:
    config_file: /etc/doow-track/doow-track.json
    api_key: "{{ vault_doow_track_api_key }}"
    endpoint: https://api.doow.co
    flush_at: 20
    flush_interval: 10000
    attribution:
      env: prod
      service: billing-worker
    socket:
      path: /run/doow-track/doow-track.sock
      mode: "0660"
      group: doow-track
    spool:
      dir: /var/lib/doow-track
      max_bytes: 1073741824
    health:
      listen: 127.0.0.1:9090
    owner: root
    group: doow-track
    mode: "0640"
  register: doow_track_config
  notify: Reload doow-track agent

- name: Deliver through the corporate proxy, trusting its inspection CA
  doow.track.config:
    api_key: "{{ vault_doow_track_api_key }}"
    proxy: "http://doow:{{ vault_proxy_password | urlencode }}@proxy.corp.example:3128"
    tls:
      ca_file: /usr/local/share/ca-certificates/corp-inspection-ca.crt
      trust_store: system
  notify: Reload doow-track agent

- name: Key and endpoint set once for the group
  module_defaults:
    group/doow.track.api:
      api_key: "{{ vault_doow_track_api_key }}"
      endpoint: https://api.doow.co
  doow.track.config:
    attribution:
      env: staging
'''

RETURN = r'''
path:
  description: The configuration file.
  returned: always
  type: str
  sample: /etc/doow-track/doow-track.json
config:
  description: The configuration written (or that would be), API key, TCP token and proxy password masked.
  returned: always
  type: dict
  sample: {"apiKey": "dk_...abcd", "endpoint": "https://api.doow.co", "flushAt": 20}
content_changed:
  description: Whether the file's content changed (ownership/mode changes excluded).
  returned: always
  type: bool
reload_needed:
  description: The content changed and a configuration existed before, so a running agent should reload.
  returned: always
  type: bool
validated:
  description: Whether C(doow-track check) validated the new content.
  returned: always
  type: bool
check_warnings:
  description: Warnings from C(doow-track check), each with C(key) and C(message).
  returned: when validated
  type: list
  elements: dict
'''

import copy
import json
import os
import re
import tempfile

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.module_utils.parsing.convert_bool import BOOLEANS, boolean
from ansible_collections.doow.track.plugins.module_utils.doow_cli import (
    DoowCli, EXIT_CONFIG, api_argument_spec, cli_argument_spec, config_file_argument_spec, mask_key, mask_url,
    url_secrets,
)

SCALARS = (
    ('api_key', 'apiKey'),
    ('endpoint', 'endpoint'),
    ('flush_at', 'flushAt'),
    ('flush_interval', 'flushInterval'),
    ('max_batch_events', 'maxBatchEvents'),
    ('concurrency', 'concurrency'),
    ('request_timeout', 'timeout'),
    ('shutdown_timeout', 'shutdownTimeout'),
    ('pidfile', 'pidfile'),
)
# Nested sections whose keys are camelCased; attribution is user data and kept as is.
SECTIONS = ('socket', 'input', 'tcp', 'spool', 'health', 'log', 'tls')


def camel(name):
    return re.sub(r'_([a-z0-9])', lambda m: m.group(1).upper(), name)


def proxy_setting(value):
    """The config's C(proxy): a boolean as given (also from a templated
    string such as 'False'), or a URL, C(http://) added to C(host:port) as
    the runtime does for --proxy; None when not set."""
    if value is None or isinstance(value, bool):
        return value
    text = to_native(value).strip()
    if text.lower() in BOOLEANS:
        return boolean(text)
    return text if '://' in text else 'http://' + text


def build_config(params):
    cfg = {}
    for option, key in SCALARS:
        if params.get(option) is not None:
            cfg[key] = params[option]
    proxy = proxy_setting(params.get('proxy'))
    if proxy is not None:
        cfg['proxy'] = proxy
    if params.get('attribution') is not None:
        cfg['attribution'] = dict(params['attribution'])
    for section in SECTIONS:
        value = params.get(section)
        if value is None:
            continue
        keys = dict((camel(k), v) for k, v in value.items() if v is not None)
        # A section with nothing set means the runtime's defaults: left out, so adding one changes no file.
        if keys or section != 'tls':
            cfg[section] = keys
    for key, value in (params.get('extra') or {}).items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            merged = dict(cfg[key])
            merged.update(value)
            cfg[key] = merged
        else:
            cfg[key] = value
    return cfg


def render(cfg):
    return json.dumps(cfg, indent=2, sort_keys=True, ensure_ascii=False) + '\n'


def masked(cfg):
    if not isinstance(cfg, dict):
        return cfg
    out = copy.deepcopy(cfg)
    for key in ('apiKey', 'api_key'):
        if out.get(key):
            out[key] = mask_key(out[key])
    tcp = out.get('tcp')
    if isinstance(tcp, dict) and tcp.get('token'):
        tcp['token'] = '********'
    if isinstance(out.get('proxy'), str):
        out['proxy'] = mask_url(out['proxy'])
    return out


def render_attributes(attrs):
    """``{'mode': '0644', 'owner': 0}`` -> ``'mode: 0644\\nowner: 0\\n'`` (sorted)."""
    return ''.join('%s: %s\n' % (key, attrs[key]) for key in sorted(attrs) if key != 'path')


def read_current(path):
    try:
        with open(path, 'rb') as f:
            raw = f.read()
    except (IOError, OSError):
        return None, None
    try:
        return raw, json.loads(raw.decode('utf-8'))
    except ValueError:
        return raw, None


def main():
    argument_spec = dict(
        flush_at=dict(type='int'),
        flush_interval=dict(type='int'),
        max_batch_events=dict(type='int'),
        concurrency=dict(type='int'),
        request_timeout=dict(type='int'),
        shutdown_timeout=dict(type='int'),
        attribution=dict(type='dict'),
        socket=dict(type='dict'),
        input=dict(type='dict'),
        tcp=dict(type='dict', no_log=False),
        spool=dict(type='dict'),
        health=dict(type='dict'),
        log=dict(type='dict'),
        pidfile=dict(type='path'),
        proxy=dict(type='raw', no_log=True),
        tls=dict(type='dict', options=dict(
            trust_store=dict(type='str', choices=['certifi', 'system']),
            ca_file=dict(type='path'),
            cert_file=dict(type='path'),
            key_file=dict(type='path', no_log=False),
        )),
        extra=dict(type='dict', default={}),
        validate=dict(type='bool', default=True),
        owner=dict(type='str'),
        group=dict(type='str'),
        mode=dict(type='raw', default='0600'),
    )
    argument_spec.update(cli_argument_spec())
    argument_spec.update(config_file_argument_spec())
    argument_spec.update(api_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    path = p['config_file']
    tcp = p.get('tcp') or {}
    if tcp.get('token'):
        module.no_log_values.add(str(tcp['token']))
    # no_log hid the whole proxy URL while the options were validated (a failure
    # there prints them all); now only its password stays hidden, so results
    # and the diff can show which proxy. extra may set a proxy too.
    if isinstance(p.get('proxy'), str):
        module.no_log_values.discard(p['proxy'])
    for proxy in (p.get('proxy'), (p.get('extra') or {}).get('proxy')):
        if isinstance(proxy, str):
            module.no_log_values.update(url_secrets(proxy))

    cfg = build_config(p)
    content = render(cfg)
    before_raw, before_cfg = read_current(path)
    existed = before_raw is not None
    content_changed = before_raw != to_bytes(content)

    result = dict(changed=False, path=path, config=masked(cfg), content_changed=content_changed,
                  reload_needed=False, validated=False)
    if content_changed:
        result['diff'] = dict(
            before_header=path, after_header=path,
            before=render(masked(before_cfg)) if before_cfg is not None else (
                '' if not existed else '<file is not valid JSON>\n'),
            after=render(masked(cfg)),
        )

    parent = os.path.dirname(path) or '.'
    cli = DoowCli(module)
    if content_changed and p['validate']:
        cli_path = cli.find(required=not module.check_mode)
        if cli_path:
            tmpdir = parent if os.path.isdir(parent) else None
            fd, tmp = tempfile.mkstemp(prefix='.doow-track-check-', suffix='.json', dir=tmpdir)
            try:
                with os.fdopen(fd, 'wb') as f:
                    f.write(to_bytes(content))
                res = cli.run(['check', '--config', tmp], ok_rcs=(0, EXIT_CONFIG), what='doow-track check')
                if res.rc == EXIT_CONFIG or res.data.get('ok') is False:
                    res.rc = EXIT_CONFIG
                    module.fail_json(
                        msg='%s; %s was left unchanged' % (
                            cli.describe_failure(res, what='doow-track check of the new configuration'), path),
                        errors=res.data.get('errors', []), path=path)
                result['validated'] = True
                result['check_warnings'] = res.data.get('warnings', [])
                for warning in result['check_warnings']:
                    if isinstance(warning, dict) and 'readable by other users' not in to_native(warning.get('message')):
                        module.warn('doow-track check: %s: %s' % (warning.get('key'), warning.get('message')))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    if content_changed:
        result['changed'] = True
        result['reload_needed'] = existed
        if not module.check_mode:
            if not os.path.isdir(parent):
                os.makedirs(parent, 0o755)
            fd, tmp = tempfile.mkstemp(prefix='.doow-track-', suffix='.json', dir=parent)
            try:
                with os.fdopen(fd, 'wb') as f:
                    f.write(to_bytes(content))
                    f.flush()
                    os.fsync(f.fileno())
                os.chmod(tmp, 0o600)
                os.rename(tmp, path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)

    file_args = dict(path=path, mode=p['mode'], owner=p['owner'], group=p['group'],
                     secontext=[None, None, None], attributes=None)
    if os.path.exists(path):
        attrs = dict(before={}, after={})
        result['changed'] = module.set_fs_attributes_if_different(file_args, result['changed'], diff=attrs)
        if attrs['after']:
            # An ownership or mode change is a change: show it like a file diff.
            attr_diff = dict(before_header='%s (attributes)' % path, after_header='%s (attributes)' % path,
                             before=render_attributes(attrs['before']), after=render_attributes(attrs['after']))
            result['diff'] = [result['diff'], attr_diff] if 'diff' in result else attr_diff
    module.exit_json(**result)


if __name__ == '__main__':
    main()
