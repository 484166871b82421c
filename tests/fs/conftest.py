"""Fixtures for the filesystem tests: a real spool in a private temporary directory."""

from __future__ import annotations

import pwd
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
