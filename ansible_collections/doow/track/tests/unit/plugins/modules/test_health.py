# -*- coding: utf-8 -*-
# Copyright: (c) 2026, doow-track contributors
# Apache License 2.0 (see LICENSE or https://www.apache.org/licenses/LICENSE-2.0)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import io
import json

import pytest

from ansible_collections.doow.track.plugins.modules import health
from ansible_collections.doow.track.tests.unit.plugins.modules.utils import run_module


def status(**kw):
    s = {'running': True, 'ready': True, 'pid': 42, 'version': '0.1.0', 'generation': 1,
         'spool': {'events': 0, 'bytes': 0, 'oldest_age_seconds': None, 'full': False, 'dead_letters': 0},
         'counters': {'delivered': 3}, 'last_error': None, 'key_rejected': False}
    s.update(kw)
    return s


@pytest.fixture
def served(monkeypatch):
    """A queue of answers for open_url: dicts are /status documents, exceptions are raised."""
    answers = []
    urls = []

    def fake_open_url(url, **kwargs):
        urls.append(url)
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(answer, Exception):
            raise answer
        return io.BytesIO(json.dumps(answer).encode())
    monkeypatch.setattr(health, 'open_url', fake_open_url)
    monkeypatch.setattr(health.time, 'sleep', lambda s: None)
    return answers, urls


def test_healthy_from_config_listen(tmp_path, module_env, served):
    answers, urls = served
    answers.append(status())
    cfg = tmp_path / 'c.json'
    cfg.write_text(json.dumps({'health': {'listen': '127.0.0.1:9393'}}))
    result, failed = run_module(health.main, dict(config_file=str(cfg)))
    assert not failed and result['healthy'] and result['changed'] is False
    assert urls == ['http://127.0.0.1:9393/status']
    assert result['status']['pid'] == 42


def test_url_option(module_env, served):
    answers, urls = served
    answers.append(status())
    result, failed = run_module(health.main, dict(url='http://127.0.0.1:9000/'))
    assert not failed and urls == ['http://127.0.0.1:9000/status']


def test_down(module_env, served):
    answers, urls = served
    answers.append(IOError('[Errno 111] Connection refused'))
    result, failed = run_module(health.main, dict(url='http://127.0.0.1:9000', timeout=0))
    assert failed
    assert 'the agent is down' in result['msg'] and 'Connection refused' in result['msg']


def test_waits_for_ready(module_env, served):
    answers, urls = served
    answers.extend([IOError('refused'), status(ready=False, last_error='connect timeout'), status()])
    result, failed = run_module(health.main, dict(url='http://127.0.0.1:9000', timeout=30, interval=0.01))
    assert not failed and result['healthy'] and len(urls) == 3


def test_not_ready_reports_last_error(module_env, served):
    answers, urls = served
    answers.append(status(ready=False, last_error='HTTP 503 from http://127.0.0.1:1'))
    result, failed = run_module(health.main, dict(url='http://x:1', timeout=0))
    assert failed and 'deliveries are failing: HTTP 503' in result['msg']


def test_key_rejected_fails_fast(module_env, served):
    answers, urls = served
    answers.append(status(ready=False, key_rejected=True))
    result, failed = run_module(health.main, dict(url='http://x:1', timeout=600))
    assert failed and 'API key was rejected' in result['msg'] and len(urls) == 1


def test_spool_thresholds(module_env, served):
    answers, urls = served
    answers.append(status(spool={'events': 12, 'oldest_age_seconds': 400.0, 'dead_letters': 2, 'full': False},
                          last_error='timeout'))
    result, failed = run_module(health.main, dict(url='http://x:1', timeout=0, max_spool_events=10,
                                                  max_spool_age=300, max_dead_letters=0))
    assert failed
    assert 'spool holds 12 undelivered events (more than 10); last error: timeout' in result['msg']
    assert 'waits since 400 s' in result['msg'] and '2 events were dead-lettered' in result['msg']
    assert len(result['problems']) == 3


def test_spool_drains(module_env, served):
    answers, urls = served
    answers.extend([status(spool={'events': 1}), status(spool={'events': 0})])
    result, failed = run_module(health.main, dict(url='http://x:1', timeout=30, max_spool_events=0, interval=0.01))
    assert not failed and result['healthy']


def test_ready_not_required(module_env, served):
    answers, urls = served
    answers.append(status(ready=False))
    result, failed = run_module(health.main, dict(url='http://x:1', timeout=0, require_ready=False))
    assert not failed


def test_check_mode_reads(module_env, served):
    answers, urls = served
    answers.append(status())
    result, failed = run_module(health.main, dict(url='http://x:1'), check_mode=True)
    assert not failed and result['healthy'] and urls


def test_non_json(module_env, monkeypatch):
    monkeypatch.setattr(health, 'open_url', lambda url, **kw: io.BytesIO(b'<html>'))
    result, failed = run_module(health.main, dict(url='http://x:1', timeout=0))
    assert failed and 'not JSON' in result['msg']
