"""Secrets the user gave inside configuration stay out of every output, and problems are named where they are:
a URL's password in a refused proxy or endpoint, a key file that is not plain text (the re-send hint's key
source: test_node_compat.py).  Real ``doow-track`` processes; ``cli.run`` fails a test whose output holds a secret."""

from __future__ import annotations

import json

import pytest

from tests.support import cli
from tests.support.cli import KEY, lines

EVENT = {"metric": "api_calls", "quantity": 1, "license_id": "lic_abc123"}
PASSWORD = "pw-never-shown-7f3a"

# Refused for different reasons: no scheme, a blank, "#", "/", "@" or "?" in the password, a bad port,
# an unclosed IPv6 bracket, no host, a scheme that is not http(s).
PROXIES = [f"user:{PASSWORD}@proxy.invalid:9", f"http://user:{PASSWORD} x@proxy.invalid:9",
           f"http://user:{PASSWORD}#x@proxy.invalid:9", f"http://user:{PASSWORD}/x@proxy.invalid:9",
           f"http://user:p@{PASSWORD}@[::1", f"http://user:{PASSWORD}?x@proxy.invalid:99999",
           f"http://user:{PASSWORD}@", f"socks5://user:{PASSWORD}@proxy.invalid:1080"]


def _config(tmp_path, name: str = "doow-track.json", **keys) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(keys))
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize("proxy", PROXIES)
def test_a_refused_proxy_is_named_by_its_source_without_its_password(tmp_path, proxy):
    config = _config(tmp_path, proxy=proxy)
    sources = {"--proxy": (["--proxy", proxy], {}), "DOOW_TRACK_PROXY": ([], {"DOOW_TRACK_PROXY": proxy}),
               config: (["--config", config], {})}
    standard = ("HTTPS_PROXY", "ALL_PROXY")[PROXIES.index(proxy) % 2]  # either, read as curl reads them
    sources[standard] = ([], {standard: proxy})
    for name, (args, env) in sources.items():
        result = cli.run(["--dry-run", "--api-key", KEY, *args], stdin=lines(EVENT), env=env, secrets=[PASSWORD])
        if result.code == 0 and name == standard:
            continue  # host:port without a scheme, a blank in the password: usable there
        assert result.code == 78, (name, result.err)
        assert name in result.err and "***@" in result.err and "internal error" not in result.err, result.err
    doctor = cli.run(["doctor", "--timeout", "1", "--config", _config(tmp_path, "empty.json")],
                     env={"DOOW_TRACK_PROXY": proxy, "DOOW_TRACK_API_KEY": KEY}, secrets=[PASSWORD])
    assert "DOOW_TRACK_PROXY" in doctor.out and "config.schema" in doctor.out, doctor.out
    checked = cli.run(["check", "--config", config], secrets=[PASSWORD])
    assert checked.code != 0 and "proxy" in checked.out + checked.err


@pytest.mark.parametrize("endpoint", [f"https://user:{PASSWORD}@api.invalid", f"https://user:{PASSWORD}/x@api.invalid",
                                      f"https://user:{PASSWORD}#x@api.invalid", f"user:{PASSWORD}@api.invalid",
                                      f"https://user:{PASSWORD} x@api.invalid:99999"])
def test_a_refused_endpoint_is_named_without_its_password(endpoint):
    for name, args, env in (("--endpoint", ["--endpoint", endpoint], {}),
                            ("DOOW_TRACK_ENDPOINT", [], {"DOOW_TRACK_ENDPOINT": endpoint})):
        result = cli.run(["--dry-run", "--api-key", KEY, *args], stdin=lines(EVENT), env=env, secrets=[PASSWORD])
        assert result.code == 78 and name in result.err and "internal error" not in result.err, result.err


KEY_FILES = {
    "utf-16 with a byte-order mark": ((KEY + "\n").encode("utf-16"), "is UTF-16 text"),
    "utf-16 without one": ((KEY + "\n").encode("utf-16-le"), "is UTF-16 text"),
    "utf-32": ((KEY + "\n").encode("utf-32"), "is UTF-32 text"),
    "a NUL byte": (KEY.encode() + b"\0\n", "holds a NUL byte"),
    "latin-1": (KEY.encode() + "é\n".encode("latin-1"), "is not UTF-8 text"),
    "not an SDK key": (b"sk_" + KEY.encode() + b"\n", "must be a Doow SDK key"),
}


@pytest.mark.parametrize("content, reason", KEY_FILES.values(), ids=list(KEY_FILES))
@pytest.mark.parametrize("source", ["--api-key-file", "DOOW_TRACK_API_KEY_FILE"])
def test_a_key_file_that_is_not_a_plain_text_key_is_named_with_what_is_wrong(tmp_path, content, reason, source):
    key_file = tmp_path / "key"
    key_file.write_bytes(content)
    key_file.chmod(0o600)
    args, env = (["--api-key-file", str(key_file)], {}) if source.startswith("--") else \
        ([], {"DOOW_TRACK_API_KEY_FILE": str(key_file)})
    result = cli.run([*args, "--endpoint", "http://127.0.0.1:9"], stdin=lines(EVENT), env=env)
    assert result.code == 78, result.err
    assert f"{source}: {key_file}: " in result.err and reason in result.err, result.err
    assert "--api-key:" not in result.err and KEY[3:] not in result.err
    if reason in ("is UTF-16 text", "must be a Doow SDK key"):  # doctor reads key files with the same code
        doctor = cli.run(["doctor", "--timeout", "1", "--config", _config(tmp_path, "empty.json"), *args], env=env)
        assert f"{source}: {key_file}: " in doctor.out and "set, but malformed" in doctor.out, doctor.out


def test_a_key_file_with_a_utf8_byte_order_mark_is_read_without_it(tmp_path):
    key_file = tmp_path / "key"
    key_file.write_bytes(b"\xef\xbb\xbf" + KEY.encode() + b"\r\n")  # Notepad's "UTF-8 with BOM"
    key_file.chmod(0o600)
    result = cli.run(["--dry-run", "--api-key-file", str(key_file)], stdin=lines(EVENT))
    assert result.code == 0, result.err
