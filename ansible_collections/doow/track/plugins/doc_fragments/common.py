# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # How a module finds the installed doow-track CLI.
    DOCUMENTATION = r'''
options:
  cli:
    description:
      - Path to the C(doow-track) executable on the target.
      - When not set, the module uses C(PREFIX/current/bin/doow-track) (the
        virtualenv that M(doow.track.install) and the C(doow.track.agent) role
        create), then C(doow-track) on E(PATH).
    type: path
  prefix:
    description:
      - Installation prefix used by M(doow.track.install); searched for the
        CLI when O(cli) is not set.
      - When not given, E(DOOW_TRACK_PREFIX) on the target, then the default.
    type: path
    default: /opt/doow-track
notes:
  - The modules are thin wrappers around the C(doow-track) command line and
    its C(--json) output; the command line is the contract between them.
'''

    CONFIG_FILE = r'''
options:
  config_file:
    description:
      - The agent's JSON configuration file. The module reads from it where
        the agent listens (socket, health port, pidfile, spool directory).
      - When not given, E(DOOW_TRACK_CONFIG) on the target (as for the
        C(doow-track) CLI itself), then the default.
    type: path
    default: /etc/doow-track/doow-track.json
'''

    API = r'''
options:
  api_key:
    description:
      - Doow SDK API key (starts with C(dk_)). Never logged or returned; the
        key only appears masked as C(dk_...abcd).
      - Keep it in Ansible Vault and set it once for the C(doow.track.api)
        action group with C(module_defaults).
    type: str
  endpoint:
    description:
      - Base URL of the Doow ingest API, for example C(https://api.doow.co)
        or the local receiver C(http://127.0.0.1:8080).
    type: str
'''
