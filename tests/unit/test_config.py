"""Config layers: defaults < file < environment < flags, errors naming the key."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, strategies as st

from doow_track_agent import config
from tests.support.cli import run

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


def test_secrets_come_from_the_env_or_a_mounted_file(tmp_path):
    key_file, token_file = tmp_path / "key", tmp_path / "token"
    key_file.write_text(KEY + "\n")
    token_file.write_text("t" * 24 + "\n")
    settings = config.load(None, {"DOOW_TRACK_API_KEY_FILE": str(key_file), "DOOW_TRACK_TCP_TOKEN_FILE": str(token_file),
                                  "DOOW_TRACK_TCP_LISTEN": "0.0.0.0:9091"})
    assert (settings.api_key, settings.tcp_token, str(settings.tcp_listen)) == (KEY, "t" * 24, "0.0.0.0:9091")
    assert config.load(None, {"DOOW_TRACK_TCP_TOKEN": "u" * 16}).tcp_token == "u" * 16


def test_a_secret_set_twice_or_unreadable_is_named_never_shown(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(KEY)
    with pytest.raises(config.ConfigError, match="DOOW_TRACK_API_KEY: set together with DOOW_TRACK_API_KEY_FILE"):
        config.load(None, {"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_API_KEY_FILE": str(key_file)})
    with pytest.raises(config.ConfigError, match="DOOW_TRACK_TCP_TOKEN_FILE: .*missing: cannot read"):
        config.load(None, {"DOOW_TRACK_TCP_TOKEN_FILE": str(tmp_path / "missing")})
    key_file.write_text("sk_live_supersecretvalue\n")
    with pytest.raises(config.ConfigError) as caught:
        config.load(None, {"DOOW_TRACK_API_KEY_FILE": str(key_file)})
    assert "DOOW_TRACK_API_KEY_FILE" in str(caught.value) and "supersecretvalue" not in str(caught.value)
    with pytest.raises(config.ConfigError) as caught:
        config.load(None, {"DOOW_TRACK_TCP_TOKEN": "short-secret"})
    assert "DOOW_TRACK_TCP_TOKEN" in str(caught.value) and "short-secret" not in str(caught.value)


def test_log_and_shutdown_settings_from_the_env():
    settings = config.load(None, {"DOOW_TRACK_LOG_FORMAT": "json", "DOOW_TRACK_LOG_LEVEL": "warning",
                                  "DOOW_TRACK_SHUTDOWN_TIMEOUT": "25000"})
    assert (settings.log_format, settings.log_level, settings.shutdown_timeout) == ("json", "warning", 25.0)
    with pytest.raises(config.ConfigError, match="DOOW_TRACK_LOG_FORMAT"):
        config.load(None, {"DOOW_TRACK_LOG_FORMAT": "xml"})


@given(host=st.sampled_from(["0.0.0.0", "10.1.2.3", "127.0.0.1", "::", "pod.local"]),
       port=st.integers(1, 65535))
def test_health_port_moves_the_port_and_keeps_the_configured_host(tmp_path_factory, host, port):
    listen = f"[{host}]:9090" if ":" in host else f"{host}:9090"
    path = write(tmp_path_factory.mktemp("c"), {"health": {"listen": listen}})
    moved = config.load(path, {"DOOW_TRACK_HEALTH_PORT": str(port)}).health_listen
    assert (moved.host, moved.port) == (host, port)
    assert str(config.load(None, {"DOOW_TRACK_HEALTH_PORT": str(port)}).health_listen) == f"127.0.0.1:{port}"


def test_health_listen_from_the_env_and_the_official_port_on_top():
    env = {"DOOW_TRACK_HEALTH_LISTEN": "0.0.0.0:9090"}
    assert str(config.load(None, env).health_listen) == "0.0.0.0:9090"
    assert str(config.load(None, {**env, "DOOW_TRACK_HEALTH_PORT": "9095"}).health_listen) == "0.0.0.0:9095"
    with pytest.raises(config.ConfigError, match="DOOW_TRACK_HEALTH_LISTEN"):
        config.load(None, {"DOOW_TRACK_HEALTH_LISTEN": "9090"})


@pytest.mark.parametrize("text, path", [
    ('{"apiKey": "%s", "apiKey": "dk_test_second_key_9999"}' % KEY, "$.apiKey"),
    ('{"apiKey": "%s", "tcp": {"listen": "127.0.0.1:0", "token": "a", "token": "b"}}' % KEY, "$.tcp.token"),
    ('{"apiKey": "%s", "attribution": {"env": "a"}, "attribution": {"env": "b"}}' % KEY, "$.attribution"),
])
def test_a_key_given_twice_in_the_config_is_refused_by_its_json_path(tmp_path, text, path):
    config_path = tmp_path / "doow-track.json"
    config_path.write_text(text)
    config_path.chmod(0o600)
    with pytest.raises(config.ConfigError) as caught:
        config.load(str(config_path), {})
    message = str(caught.value)
    assert f"{path}: key given more than once" in message
    assert KEY not in message and "dk_test_second_key_9999" not in message
    refused = run(["check", "--config", str(config_path)], stdin=b"", secrets=["dk_test_second_key_9999"])
    assert refused.code == 78 and path in refused.out + refused.err


def test_a_key_given_twice_in_an_environment_json_value_is_refused():
    with pytest.raises(config.ConfigError, match=r"DOOW_TRACK_ATTRIBUTION\.env: key given more than once"):
        config.load(None, {"DOOW_TRACK_API_KEY": KEY, "DOOW_TRACK_ATTRIBUTION": '{"env": "a", "env": "b"}'})


@given(st.dictionaries(st.sampled_from(["env", "service", "team"]), st.text(max_size=5), min_size=1))
def test_unique_keys_parse_as_json_does(attribution):
    text = json.dumps({"attribution": attribution})
    assert config.parse_json(text, "test") == json.loads(text)
