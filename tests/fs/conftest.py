"""Fixtures for the filesystem tests: a real spool in a private temporary directory, and other users
(`nobody`, a directory they may pass through, a child process that runs as one of them)."""

from __future__ import annotations

import os
import pwd
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from fsqueue.spool import Spool


@pytest.fixture
def spool(tmp_path: Path) -> Spool:
    return Spool.create(tmp_path / "spool")


@pytest.fixture
def nobody() -> int:
    """The uid of `nobody`: a foreign owner that root can give files to (CI runs as root)."""
    return pwd.getpwnam("nobody").pw_uid


def needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: chown to another user or group")


@pytest.fixture
def open_top() -> Iterator[Path]:
    """A directory under /tmp that other users may pass through (pytest's tmp_path is private to root)."""
    top = Path(tempfile.mkdtemp(prefix="fsq-open-"))
    top.chmod(0o711)
    yield top
    subprocess.run(["rm", "-rf", "--", str(top)], check=True)


def as_user(uid: int, groups: list[int], action: Callable[[], str]) -> str:
    """Run `action` in a forked child as `uid` with `groups` (and gid `uid`): what it returned, or the
    name of the OSError it raised. The child never returns into pytest."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.setgroups(groups)
            os.setgid(uid)
            os.setuid(uid)
            try:
                answer = action()
            except OSError as error:
                answer = type(error).__name__
            os.write(write_end, answer.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        answer = pipe.read().decode()
    os.waitpid(pid, 0)
    return answer
