"""Config layers: defaults < file < environment < flags, errors naming the key."""

from __future__ import annotations

import json

import pytest

from doow_track_agent import config

KEY = "dk_test_0123456789abcdef"


def write(tmp_path, data) -> str:
    path = tmp_path / "doow-track.json"
    path.write_text(json.dumps(data))
    path.chmod(0o600)
    return str(path)


def test_seed_format_and_snake_case_mean_the_same(tmp_path):
    seed = {"apiKey": KEY, "endpoint": "https://api.doow.co", "flushAt": 20, "flushInterval": 10000,
            "attribution": {"env": "prod", "service": "billing-worker"}}
    snake = {"api_key": KEY, "endpoint": "https://api.doow.co", "flush_at": 20, "flush_interval": 10000,
             "attribution": {"env": "prod", "service": "billing-worker"}}
    assert config.load(write(tmp_path, seed), {}) == config.load(write(tmp_path, snake), {})


def test_precedence_flags_over_env_over_file(tmp_path):
    path = write(tmp_path, {"apiKey": KEY, "flushAt": 5, "flushInterval": 100, "endpoint": "http://file:1"})
    env = {"DOOW_TRACK_FLUSH_AT": "7", "DOOW_TRACK_ENDPOINT": "http://env:1"}
    settings = config.load(path, env, {"endpoint": "http://flag:1"})
    assert (settings.flush_at, settings.flush_interval, settings.endpoint) == (7, 0.1, "http://flag:1")
    assert settings.concurrency == 4  # schema default


def test_errors_name_the_key_and_never_the_secret(tmp_path):
    path = write(tmp_path, {"apiKey": "sk_live_supersecretvalue", "flushAtt": 3, "spool": {"maxBytes": "big"}})
    with pytest.raises(config.ConfigError) as caught:
        config.load(path, {})
    text = str(caught.value)
    assert "supersecretvalue" not in text
    assert "$.apiKey" in text and "did you mean 'flushAt'" in text and "$.spool.maxBytes" in text


def test_env_errors_name_the_variable():
    with pytest.raises(config.ConfigError, match="DOOW_TRACK_FLUSH_AT"):
        config.load(None, {"DOOW_TRACK_FLUSH_AT": "soon"})
    with pytest.raises(config.ConfigError, match="DOOW_TRACK_INPUT"):
        config.load(None, {"DOOW_TRACK_INPUT": "udp:9"})
    assert config.load(None, {"DOOW_TRACK_INPUT": "file:/var/log/u.jsonl"}).input == {"mode": "file", "path": "/var/log/u.jsonl"}


def test_world_readable_key_file_warns(tmp_path):
    path = write(tmp_path, {"apiKey": KEY})
    (tmp_path / "doow-track.json").chmod(0o644)
    assert any("readable by other users" in w for w in config.load(path, {}).warnings)


def test_key_never_in_repr(tmp_path):
    assert KEY not in repr(config.load(write(tmp_path, {"apiKey": KEY}), {}))
