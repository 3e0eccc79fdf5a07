"""secure_files: which directories and files another user could control, for every permission bit pattern."""

from __future__ import annotations

import os
import stat
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doow_track_agent import config, identity
from doow_track_agent.secure_files import UnsafePath, check_directory, ensure_directory, open_private
from doow_track_agent.sources import SourceError, tcp


@settings(max_examples=60, deadline=None)
@given(mode=st.integers(0, 0o1777), gid=st.sampled_from([0, 4242]))
def test_a_directory_is_refused_exactly_when_others_can_write_without_the_sticky_bit(mode, gid):
    with tempfile.TemporaryDirectory() as parent:
        os.chmod(parent, 0o700)
        path = os.path.join(parent, "state")
        os.mkdir(path)
        os.chown(path, -1, gid)
        os.chmod(path, mode | stat.S_IRWXU)
        sticky = mode & stat.S_ISVTX
        others_write = mode & stat.S_IWOTH or (mode & stat.S_IWGRP and gid not in (0, os.getegid()))
        if others_write and not sticky:
            with pytest.raises(UnsafePath, match="writable by other users"):
                check_directory(path, "spool.dir")
        else:
            check_directory(path, "spool.dir")


def test_a_foreign_symlink_on_the_way_is_refused(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "link"
    link.symlink_to(target)
    os.lchown(link, 4242, 4242)
    with pytest.raises(UnsafePath, match="is a symlink owned by uid 4242"):
        ensure_directory(str(link / "below"), "socket dir")
    assert not (target / "below").exists()


def test_files_are_opened_only_when_ours_regular_and_not_symlinks(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "link").symlink_to(victim)
    foreign = tmp_path / "foreign"
    foreign.write_text("")
    os.chown(foreign, 4242, 4242)
    os.mkfifo(tmp_path / "fifo")
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
    for name, words in (("link", "symlink"), ("foreign", "belongs to uid 4242"), ("fifo", "not a regular file")):
        with pytest.raises(UnsafePath, match=words):
            open_private(str(tmp_path / name), flags, "log.file")
    assert victim.read_text() == "precious\n"
    os.close(open_private(str(tmp_path / "fresh"), flags, "log.file"))
    assert stat.S_IMODE(os.stat(tmp_path / "fresh").st_mode) & 0o077 == 0


@settings(max_examples=50, deadline=None)
@given(host=st.ip_addresses())
def test_a_tcp_listener_needs_a_token_exactly_when_its_address_is_not_loopback(host):
    mapped = getattr(host, "ipv4_mapped", None)
    loopback = host.is_loopback or bool(mapped and mapped.is_loopback)
    listen = config.Listen(str(host), 80)
    assert tcp.require_token(listen, "t" * 16)
    if loopback:
        assert tcp.require_token(listen, None)
    else:
        with pytest.raises(SourceError, match="not a loopback address"):
            tcp.require_token(listen, None)


def test_proc_tables_are_read_for_the_pidfile_lock_and_the_listener(tmp_path):
    import fcntl
    import socket

    path = tmp_path / "agent.pid"
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert identity.lock_holders(str(path)) == {os.getpid()}
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        assert identity.listener_uids(listener.getsockname()[1]) == {os.geteuid()}
    with pytest.raises(identity.Untrusted, match="not a doow-track process"):
        identity.check_listener(os.getpid(), 1)
