#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: health
short_description: Check that the doow-track agent is up and delivering
version_added: 0.1.0
description:
  - Reads the agent's C(/status) on its loopback health listener and waits up
    to O(timeout) seconds for it to be healthy.
  - Fails with a clear message when the agent is down, the API key was
    rejected, deliveries keep failing, or the spool holds more than
    O(max_spool_events) events or older ones than O(max_spool_age).
  - Read-only; runs the same in check mode. Use it as the health gate of a
    rolling deployment.
author:
  - doow-track contributors (@doow)
options:
  url:
    description:
      - Base URL of the health listener, for example C(http://127.0.0.1:9090).
      - Defaults to C(health.listen) of O(config_file), else C(127.0.0.1:9090).
    type: str
  config_file:
    description:
      - The agent's configuration file, read to find the health listener.
      - When not given, E(DOOW_TRACK_CONFIG) on the target, then the default.
    type: path
    default: /etc/doow-track/doow-track.json
  timeout:
    description:
      - Seconds to wait for the agent to become healthy. V(0) checks once.
    type: int
    default: 30
  interval:
    description: Seconds between two reads of C(/status).
    type: float
    default: 1.0
  require_ready:
    description: Require C(ready) (deliveries work and the key is accepted).
    type: bool
    default: true
  max_spool_events:
    description:
      - Most events allowed in the spool (not yet delivered). V(0) waits until
        everything accepted so far was delivered.
    type: int
  max_spool_age:
    description: Most seconds the oldest undelivered event may wait.
    type: float
  max_dead_letters:
    description: Most dead-lettered (permanently undeliverable) events allowed.
    type: int
extends_documentation_fragment:
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: doow.track.service
'''

EXAMPLES = r'''
- name: Health gate after a rollout batch
  doow.track.health:
    timeout: 60
    max_spool_events: 1000

- name: Wait until every accepted event was delivered
  doow.track.health:
    url: http://127.0.0.1:9090
    max_spool_events: 0
    timeout: 30

- name: Fleet report without failing the play
  doow.track.health:
    timeout: 0
  register: doow_health
  failed_when: false
'''

RETURN = r'''
healthy:
  description: Whether every condition held.
  returned: always
  type: bool
url:
  description: The status URL read.
  returned: always
  type: str
  sample: http://127.0.0.1:9090/status
status:
  description: The agent's C(/status) document (see the runtime's CLI contract).
  returned: when the agent answered
  type: dict
  sample: {"running": true, "ready": true, "pid": 4242, "version": "0.1.0", "generation": 1,
           "spool": {"events": 0, "bytes": 0}, "counters": {"delivered": 10}}
problems:
  description: Why the agent is not healthy (empty when healthy).
  returned: always
  type: list
  elements: str
waited:
  description: Seconds spent waiting.
  returned: always
  type: float
'''

import json
import time

from ansible.module_utils.basic import AnsibleModule, env_fallback
from ansible.module_utils.common.text.converters import to_text
from ansible.module_utils.urls import open_url
from ansible_collections.doow.track.plugins.module_utils.doow_cli import agent_settings


def status_url(module):
    url = module.params['url']
    if not url:
        listen = agent_settings(module.params['config_file'])['health_listen']
        host, port = listen.rpartition(':')[::2]
        if host in ('', '0.0.0.0', '*'):
            host = '127.0.0.1'
        elif host == '::':
            host = '[::1]'
        url = 'http://%s:%s' % (host, port)
    url = url.rstrip('/')
    if not url.endswith('/status'):
        url += '/status'
    return url


def fetch(url):
    """(status dict or None, error text or None)"""
    try:
        resp = open_url(url, timeout=5, validate_certs=False, use_proxy=False)
        body = resp.read(1024 * 1024)
        return json.loads(to_text(body)), None
    except ValueError as e:
        return None, 'answered with something that is not JSON (%s)' % e
    except Exception as e:  # pylint: disable=broad-except
        code = getattr(e, 'code', None)
        if code is not None:
            try:
                return json.loads(to_text(e.read(1024 * 1024))), None
            except Exception:  # pylint: disable=broad-except
                return None, 'answered HTTP %s' % code
        return None, to_text(getattr(e, 'reason', None) or e)


def evaluate(status, params):
    problems = []
    if status.get('running') is False:
        problems.append('the agent reports it is not running')
    if status.get('key_rejected'):
        problems.append('the API key was rejected by Doow (401/403); deliveries are stopped')
    if params['require_ready'] and status.get('ready') is False and not status.get('key_rejected'):
        err = status.get('last_error')
        problems.append('the agent is not ready: deliveries are failing%s' % (': %s' % err if err else ''))
    spool = status.get('spool') or {}
    events = spool.get('events')
    if params['max_spool_events'] is not None and events is not None and events > params['max_spool_events']:
        err = status.get('last_error')
        problems.append('the spool holds %s undelivered events (more than %s)%s'
                        % (events, params['max_spool_events'], '; last error: %s' % err if err else ''))
    age = spool.get('oldest_age_seconds')
    if params['max_spool_age'] is not None and age is not None and age > params['max_spool_age']:
        problems.append('the oldest undelivered event waits since %.0f s (more than %s s)'
                        % (age, params['max_spool_age']))
    if spool.get('full'):
        problems.append('the spool is full (new events are refused)')
    dead = spool.get('dead_letters')
    if params['max_dead_letters'] is not None and dead is not None and dead > params['max_dead_letters']:
        problems.append('%s events were dead-lettered (more than %s)' % (dead, params['max_dead_letters']))
    return problems


def main():
    module = AnsibleModule(
        argument_spec=dict(
            url=dict(type='str'),
            config_file=dict(type='path', default='/etc/doow-track/doow-track.json',
                             fallback=(env_fallback, ['DOOW_TRACK_CONFIG'])),
            timeout=dict(type='int', default=30),
            interval=dict(type='float', default=1.0),
            require_ready=dict(type='bool', default=True),
            max_spool_events=dict(type='int'),
            max_spool_age=dict(type='float'),
            max_dead_letters=dict(type='int'),
        ),
        supports_check_mode=True,
    )
    p = module.params
    url = status_url(module)
    start = time.time()
    deadline = start + max(p['timeout'], 0)
    while True:
        status, error = fetch(url)
        if status is None:
            problems = ['the agent is down: nothing answers on %s (%s)' % (url, error)]
        else:
            problems = evaluate(status, p)
        # A rejected key does not heal by waiting.
        if not problems or time.time() >= deadline or (status or {}).get('key_rejected'):
            break
        time.sleep(min(p['interval'], max(deadline - time.time(), 0.05)))
    result = dict(changed=False, healthy=not problems, url=url, problems=problems,
                  waited=round(time.time() - start, 2))
    if status is not None:
        result['status'] = status
    if problems:
        module.fail_json(msg='doow-track agent unhealthy after %ss: %s' % (p['timeout'], '; '.join(problems)),
                         **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
