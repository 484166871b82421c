"""What the benchmarks beside this file share: scratch directories removed only when the whole run ends,
and polling for a condition against a deadline.

Not a package: the scripts are run as files, so Python puts their directory first on sys.path and
`from _common import ...` finds this file.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Spools are removed when the whole run ends, not after each scenario: removing a spool frees thousands
# of inodes at once, and on ext4 without a journal (this machine's /tmp) every file created in the next
# 30 s then walks past them (ext4's recently_deleted check), which slowed the next scenario's file
# creations tenfold. Deleting is the cleanup's cost, not the next scenario's.
_SCRATCH: list[Path] = []


@contextlib.contextmanager
def scratch(prefix: str, *, parent: str | Path = "/tmp", keep: bool = False) -> Iterator[Path]:
    """A new directory in `parent`, its name starting with `prefix`; unless `keep`, removed when the
    whole run ends (remove_scratch), not sooner. A kept one is named on stderr."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}", file=sys.stderr, flush=True)
        else:
            _SCRATCH.append(path)


def remove_scratch() -> None:
    while _SCRATCH:
        shutil.rmtree(_SCRATCH.pop(), ignore_errors=True)


def wait_for(predicate: Callable[[], Any], timeout: float = 600.0, step: float = 0.005) -> Any:
    """Call `predicate` every `step` seconds until it returns something truthy, and return that;
    exit the benchmark if `timeout` seconds pass first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise SystemExit(f"timed out waiting for {predicate}")
