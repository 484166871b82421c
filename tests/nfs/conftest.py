"""Two NFS clients as two nodes, inside the guest of ../shared/nfs (docs/filesystems.md).

Every process a test starts runs "on" one node: in its own mount and UTS namespaces, where that
node's NFS mount is bound to one shared path and the host name is the node's. So, as on a cluster,
the spool has the same path on both nodes, status files name paths that are valid on both, and each
process reaches the file server through its own node's NFS client (its own caches, its own NFSv4
client identity) under its own host name. The test process itself reads through either mount
(`Node.local`), as one more client on that node.

Nothing here runs at import time: on the host, where $FSQ_NFS_REAL is not set, the tests skip
before any fixture touches a mount.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from fsqueue.spool import Spool, read_json
from tests.conftest import Processes, wait_until

SHARED = Path("/tmp/fsq-shared")  # where every node sees the export, like /scratch on a cluster
FINAL = {"SUCCEEDED", "FAILED", "CANCELED", "REJECTED"}
# unshare(1) without --fork and sh's exec keep the pid, so the manager's pid is the Popen's pid.
_ENTER = 'mount --bind "$1" "$2" && hostname "$3" && cd "$2" && shift 3 && exec "$@"'
_FIGURES: list[str] = []


@dataclass(frozen=True)
class Node:
    name: str  # the host name of every process started on this node
    mount: Path  # this node's NFS mount of the export, as the guest sees it

    def local(self, path: str | os.PathLike[str]) -> Path:
        """A shared path (as fsqueue writes it in status files) through this node's client."""
        return self.mount / Path(path).relative_to(SHARED)

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["unshare", "--mount", "--uts", "sh", "-c", _ENTER, "sh", str(self.mount), str(SHARED), self.name,
                *argv]


@dataclass
class Cluster:
    """One spool on the shared export, two nodes, and every process the test starts on them."""

    node1: Node
    node2: Node
    spool: Path  # the shared path, the same on both nodes
    processes: Processes

    def fsq_argv(self, *args: str) -> list[str]:
        # --spool goes right after the command, before any `-- CMD ARGS`.
        return [sys.executable, "-m", "fsqueue", args[0], "--spool", str(self.spool), *args[1:]]

    def fsq(self, node: Node, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one fsq command on `node` to the end."""
        return subprocess.run(node.argv(self.fsq_argv(*args)), capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, check=False)

    def start(self, node: Node, argv: Sequence[str], name: str) -> subprocess.Popen[bytes]:
        """Start a process on `node`, owned by the test (own session, log file, killed at teardown)."""
        return self.processes.start(node.argv(argv), name=name)

    def start_manager(self, node: Node, *extra: str, wait: bool = True) -> subprocess.Popen[bytes]:
        proc = self.start(node, self.fsq_argv("manager", *extra), name=f"manager-{node.name}")
        if wait:
            wait_until(lambda: self.serving(node) == proc.pid and proc.poll() is None, 60,
                       lambda: f"no heartbeat from pid {proc.pid}; exit {proc.poll()}\n{self.log(proc)}")
        return proc

    def serving(self, node: Node) -> int | None:
        """The pid in manager.json as `node` reads it, if that manager says it serves."""
        info = read_json(node.local(self.spool) / "manager.json") or {}
        return info.get("pid") if info.get("phase") in ("serving", "draining") else None

    def log(self, proc: subprocess.Popen[bytes]) -> str:
        return self.processes.log_of(proc)

    def status(self, node: Node, job_id: str) -> dict[str, Any]:
        return Spool(node.local(self.spool)).read_status(job_id) or {}

    def wait_final(self, node: Node, job_id: str, *procs: subprocess.Popen[bytes], timeout: float = 60) -> dict[str, Any]:
        """The job's final status as `node` reads it; on timeout, show the logs of `procs`."""
        def final() -> dict[str, Any] | None:
            doc = self.status(node, job_id)
            return doc if doc.get("state") in FINAL else None

        return wait_until(final, timeout, lambda: f"{self.status(node, job_id)}\n" + "\n".join(map(self.log, procs)))


HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: Any, items: list[Any]) -> None:
    """Every test here is marked nfs, and runs only inside the guest, where FSQ_NFS_REAL=1."""
    skip = pytest.mark.skipif(os.environ.get("FSQ_NFS_REAL") != "1",
                              reason="$FSQ_NFS_REAL is not set: these run in the two-client NFS guest, "
                                     "`bash ../shared/nfs/up.sh && bash ../shared/nfs/vm.sh "
                                     "'.venv/bin/python -m pytest tests/nfs'` (docs/filesystems.md)")
    for item in items:
        if Path(str(item.path)).resolve().parent == HERE:
            item.add_marker(pytest.mark.nfs)
            item.add_marker(skip)


def record_figure(line: str) -> None:
    """An observation to print after the run (never asserted: timings under emulation mean little)."""
    _FIGURES.append(line)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES:
        terminalreporter.section("observed on NFS (printed, not asserted)")
        for line in _FIGURES:
            terminalreporter.write_line(line)


@pytest.fixture
def figure() -> Callable[[str], None]:
    return record_figure


@pytest.fixture(scope="session")
def nodes() -> tuple[Node, Node]:
    SHARED.mkdir(exist_ok=True)
    return (Node("fsq-node1", Path(os.environ["FSQ_NFS_NODE1"])), Node("fsq-node2", Path(os.environ["FSQ_NFS_NODE2"])))


@pytest.fixture
def cluster(nodes: tuple[Node, Node], processes: Processes, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    """A fresh directory on the export for this test, with `spool` (not created: fsqueue creates it)."""
    node1, node2 = nodes
    top = SHARED / f"{re.sub(r'[^A-Za-z0-9_-]', '_', request.node.name)[:40]}-{uuid.uuid4().hex[:6]}"
    node1.local(top).mkdir()
    (node1.local(top) / "runs").mkdir()  # jobs append a line here each time they run
    yield Cluster(node1, node2, top / "spool", processes)
