# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.doow.track.plugins.module_utils.doow_cli import url_secrets
from ansible_collections.doow.track.plugins.modules import config


@pytest.mark.parametrize('given, written', [
    (None, None),
    (False, False),
    ('False', False),  # a role variable false, templated into a string
    ('off', False),
    ('true', True),
    ('proxy.corp.example:3128', 'http://proxy.corp.example:3128'),
    (' https://u:p@proxy:3129 ', 'https://u:p@proxy:3129'),
])
def test_proxy_setting(given, written):
    assert config.proxy_setting(given) == written


def test_tls_section_camel_cased_and_left_out_when_empty():
    tls = dict(trust_store='system', ca_file='/etc/ca.pem', cert_file=None, key_file=None)
    assert config.build_config(dict(tls=tls, proxy='p:3128')) == {
        'tls': {'trustStore': 'system', 'caFile': '/etc/ca.pem'}, 'proxy': 'http://p:3128'}
    assert config.build_config(dict(tls=dict.fromkeys(tls))) == {}


def test_masked_config_hides_the_proxy_password_only():
    cfg = config.masked({'proxy': 'http://ops:s3cret@proxy:3128', 'apiKey': 'dk_live_abcdefgh1234'})
    assert cfg == {'proxy': 'http://ops:***@proxy:3128', 'apiKey': u'dk_\u20261234'}
    assert config.masked({'proxy': False}) == {'proxy': False}


@pytest.mark.parametrize('url, secrets', [
    ('http://proxy:3128', set()),
    ('http://ops@proxy:3128', set()),
    ('http://ops:s3cret@proxy:3128', {'s3cret'}),
    ('http://ops:p%40ss@proxy:3128', {'p%40ss', 'p@ss'}),
    ('http://ops:pw@proxy:bad-port/path', {'pw'}),
    ('ops:pw@proxy:3128', {'pw'}),
    ('http://ops:p#w/?x@proxy:3128', {'p#w/?x'}),
    ('http://ops:p@ss w@[::1', {'p@ss w'}),
])
def test_url_secrets(url, secrets):
    assert url_secrets(url) == secrets
