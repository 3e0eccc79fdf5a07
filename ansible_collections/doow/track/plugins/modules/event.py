#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: event
short_description: Send one usage event to Doow
version_added: 0.1.0
description:
  - Sends one usage event through the local doow-track agent (committed to its
    durable spool, delivered by the agent) or directly to the Doow API.
  - The event is validated by the runtime's own schema. In check mode it is
    only validated.
  - Every event has an C(event_id); Doow (and the local receiver) de-duplicate
    on it. With O(event_id) given, re-running the task never counts the event
    twice; the module also remembers the ids it sent from the host and reports
    C(changed=false) without sending again.
  - Works ad hoc as written, for example
    C(ansible all -m doow.track.event -a "metric=deploys quantity=1 license_id=lic_x").
author:
  - doow-track contributors (@doow)
options:
  metric:
    description: Metric name.
    type: str
    required: true
  quantity:
    description: Quantity, a number greater than zero.
    type: float
    required: true
  license_id:
    description: License (contract) that receives the usage.
    type: str
    required: true
  attribution:
    description: Flat attribution merged over the agent's default attribution (the event wins).
    type: dict
  unit:
    description: Unit of the quantity.
    type: str
  kind:
    description: Event kind.
    type: str
    choices: [USAGE, ADJUSTMENT]
  timestamp:
    description: When the usage happened, ISO 8601. Defaults to now.
    type: str
  metadata:
    description: Metadata object. Never put secrets or customer content here.
    type: dict
  event_id:
    description:
      - Idempotency key. Generated (a UUID) when not given, so that the task
        returns it; give one to make re-runs safe.
    type: str
  via:
    description:
      - V(agent) sends through the running agent's socket; V(direct) delivers
        to the API without an agent; V(auto) uses the agent when one runs,
        else delivers directly.
    type: str
    choices: [auto, agent, direct]
    default: auto
  socket:
    description: The agent's socket. Defaults to C(socket.path) of O(config_file).
    type: path
  api_key:
    description:
      - Doow SDK API key (C(dk_...)) for V(direct) delivery. Never logged or
        returned. Falls back to the C(apiKey) of O(config_file), then
        E(DOOW_TRACK_API_KEY) on the target.
    type: str
  endpoint:
    description:
      - Endpoint for V(direct) delivery. Falls back to the C(endpoint) of
        O(config_file), then E(DOOW_TRACK_ENDPOINT), then C(https://api.doow.co).
    type: str
  ledger:
    description:
      - File in which the module records the event ids it sent from this
        host, so that a re-run with the same O(event_id) reports no change.
      - Defaults to C(SPOOL_DIR/ansible-event-ids) of the agent (or
        C(~/.doow-track/ansible-event-ids) when no spool directory exists).
    type: path
  resend:
    description: Send even when O(event_id) is in the ledger (Doow still de-duplicates it).
    type: bool
    default: false
extends_documentation_fragment:
  - doow.track.common
  - doow.track.common.config_file
  - ansible.builtin.action_common_attributes
attributes:
  check_mode:
    support: full
    details: Validates the event with the runtime's schema; sends nothing.
  diff_mode:
    support: none
  platform:
    platforms: posix
seealso:
  - module: doow.track.health
'''

EXAMPLES = r'''
- name: Count a deploy, once, whatever happens to the play
  doow.track.event:
    metric: deploys
    quantity: 1
    license_id: lic_abc123
    event_id: "deploy-{{ release_id }}"
    attribution:
      service: billing-worker
      release: "{{ release_id }}"

- name: Send directly, without an agent
  doow.track.event:
    metric: backfill_rows
    quantity: 5120
    license_id: lic_abc123
    via: direct
    api_key: "{{ vault_doow_track_api_key }}"
    endpoint: https://api.doow.co
'''

RETURN = r'''
event_id:
  description: The event's id (given or generated).
  returned: always
  type: str
  sample: 2b7e151628ae4ed2a6abf7158809cf4f
via:
  description: How the event went (V(agent) or V(direct)), or would go in check mode.
  returned: always
  type: str
  sample: agent
sent:
  description: Whether the event was handed over in this run.
  returned: always
  type: bool
event:
  description: The event as sent (input line format).
  returned: always
  type: dict
  sample: {"metric": "deploys", "quantity": 1, "license_id": "lic_x", "event_id": "deploy-42"}
result:
  description: The CLI's JSON summary (C(doow-track send --json)).
  returned: when sent or validated
  type: dict
'''

import json
import os
import pwd
import shutil
import tempfile
import uuid

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native
from ansible_collections.doow.track.plugins.module_utils.doow_cli import (
    EXIT_DATAERR, EXIT_UNAVAILABLE, DoowCli, agent_settings, api_argument_spec,
    cli_argument_spec, config_file_argument_spec,
)

LEDGER_NAME = 'ansible-event-ids'
LEDGER_KEEP = 10000


def build_event(p, event_id):
    quantity = p['quantity']
    if quantity is not None and float(quantity).is_integer():
        quantity = int(quantity)
    event = dict(metric=p['metric'], quantity=quantity, license_id=p['license_id'], event_id=event_id)
    for key in ('attribution', 'unit', 'kind', 'timestamp', 'metadata'):
        if p.get(key) is not None:
            event[key] = p[key]
    return event


def ledger_path(p, settings):
    if p['ledger']:
        return p['ledger']
    spool = settings['spool_dir']
    if settings['exists'] and spool and os.path.isdir(spool) and os.access(spool, os.W_OK):
        return os.path.join(spool, LEDGER_NAME)
    home = os.environ.get('HOME') or pwd.getpwuid(os.getuid()).pw_dir
    return os.path.join(home, '.doow-track', LEDGER_NAME)


def ledger_has(path, event_id):
    try:
        with open(path) as f:
            return any(line.rstrip('\n') == event_id for line in f)
    except (IOError, OSError):
        return False


def ledger_add(path, event_id):
    parent = os.path.dirname(path)
    try:
        if not os.path.isdir(parent):
            os.makedirs(parent, 0o700)
        try:
            with open(path) as f:
                ids = [line.rstrip('\n') for line in f if line.strip()]
        except (IOError, OSError):
            ids = []
        ids.append(event_id)
        ids = ids[-LEDGER_KEEP:]
        tmp = path + '.tmp'
        with open(tmp, 'w') as f:
            f.write('\n'.join(ids) + '\n')
        # In the agent's spool directory the ledger belongs to the agent's
        # user like everything else there, not to whoever ran the task.
        owner = os.stat(parent)
        if os.geteuid() == 0 and (owner.st_uid, owner.st_gid) != (0, 0):
            os.chown(tmp, owner.st_uid, owner.st_gid)
        os.rename(tmp, path)
        return None
    except (IOError, OSError) as e:
        return to_native(e)


def send_direct(cli, args, line, env):
    """``doow-track send --direct`` with its outbox and rejects files in a
    scratch directory removed afterwards: a failed event is reported by this
    task (re-run it with the same event_id), never left as a file in the
    remote user's home that nobody reads."""
    scratch = tempfile.mkdtemp(prefix='doow-track-event-')
    try:
        args = args + ['--outbox', os.path.join(scratch, 'outbox.ndjson'),
                       '--rejects', os.path.join(scratch, 'rejects.ndjson'), line]
        return cli.run(args, environ_update=env, ok_rcs=(0,), what='doow-track send --direct')
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    argument_spec = dict(
        metric=dict(type='str', required=True),
        quantity=dict(type='float', required=True),
        license_id=dict(type='str', required=True),
        attribution=dict(type='dict'),
        unit=dict(type='str'),
        kind=dict(type='str', choices=['USAGE', 'ADJUSTMENT']),
        timestamp=dict(type='str'),
        metadata=dict(type='dict'),
        event_id=dict(type='str'),
        via=dict(type='str', default='auto', choices=['auto', 'agent', 'direct']),
        socket=dict(type='path'),
        ledger=dict(type='path'),
        resend=dict(type='bool', default=False),
    )
    argument_spec.update(cli_argument_spec())
    argument_spec.update(config_file_argument_spec())
    argument_spec.update(api_argument_spec())
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    p = module.params
    if p['quantity'] <= 0:
        module.fail_json(msg='quantity must be greater than zero, got %s' % p['quantity'])

    event_id = p['event_id'] or str(uuid.uuid4())
    event = build_event(p, event_id)
    line = json.dumps(event, sort_keys=True, separators=(',', ':'))
    settings = agent_settings(p['config_file'])
    ledger = ledger_path(p, settings)
    result = dict(changed=False, event_id=event_id, event=event, sent=False, via=p['via'])

    if p['event_id'] and not p['resend'] and ledger_has(ledger, event_id):
        result['msg'] = 'event %s was already sent from this host (ledger %s); not sent again' % (event_id, ledger)
        module.exit_json(**result)

    cli = DoowCli(module)
    if module.check_mode:
        if cli.find(required=False) is None:
            result.update(changed=True, msg='doow-track is not installed: the event was not validated')
            module.exit_json(**result)
        # Validation only: the runtime's schema, nothing sent.
        res = cli.run(['--dry-run'], data=line + '\n', ok_rcs=(0,), what='validation of the event')
        result.update(changed=True, result=res.data)
        module.exit_json(**result)

    socket = p['socket'] or settings['socket']
    base = ['send']
    if p['config_file'] and settings['exists']:
        base += ['--config', p['config_file']]
    env = {}
    via = p['via']
    if via in ('auto', 'agent'):
        args = base + ['--socket', socket, line]
        res = cli.run(args, ok_rcs=(0, EXIT_UNAVAILABLE), what='doow-track send (through the agent at %s)' % socket)
        if res.rc == EXIT_UNAVAILABLE:
            if via == 'agent':
                cli.fail(res, what='doow-track send (no agent answers on %s)' % socket)
            via = 'direct'
        else:
            result['via'] = 'agent'
    if via == 'direct':
        result['via'] = 'direct'
        cfg = settings['config']
        api_key = p['api_key'] or cfg.get('apiKey') or cfg.get('api_key')
        endpoint = p['endpoint'] or cfg.get('endpoint')
        if api_key:
            module.no_log_values.add(api_key)
            env['DOOW_TRACK_API_KEY'] = api_key
        elif not os.environ.get('DOOW_TRACK_API_KEY'):
            module.fail_json(msg='no agent answers and no API key for direct delivery: set api_key, '
                                 'or the apiKey of %s, or DOOW_TRACK_API_KEY' % p['config_file'], **result)
        if endpoint:
            env['DOOW_TRACK_ENDPOINT'] = endpoint
        res = send_direct(cli, base + ['--direct'], line, env)
    result['result'] = res.data
    if res.data.get('invalid') or res.rc == EXIT_DATAERR:
        cli.fail(res, what='doow-track send (event rejected)')
    result.update(changed=True, sent=True)
    if p['event_id']:
        error = ledger_add(ledger, event_id)
        if error:
            module.warn('could not record event %s in the ledger %s: %s' % (event_id, ledger, error))
    module.exit_json(**result)


if __name__ == '__main__':
    main()
