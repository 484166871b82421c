"""Paths the manager hands to its launcher: absolute, joined to the job's wd, so that a launcher that
opens them elsewhere (srun opens --input on the manager's node, in its own directory) finds the
job's files. A manager in this process and a launcher that records what it is given."""

from __future__ import annotations

import os
import time

from fsqueue import client
from fsqueue.launcher import Exit, Launch
from fsqueue.manager import Manager, Settings
from fsqueue.resources import Allocation, Node
from fsqueue.spool import Spool
from tests.conftest import now


class Recording:
    """A launcher that starts nothing: it records each launch; its jobs never end unless told to."""

    def __init__(self) -> None:
        self.launches: list[Launch] = []
        self.ended: list[Exit] = []

    def start(self, launch: Launch) -> float:
        self.launches.append(launch)
        return time.time()

    def reap(self) -> list[Exit]:
        ended, self.ended = self.ended, []
        return ended

    def signal(self, job_id: str, signum: int) -> None:
        pass

    def pid_of(self, job_id: str) -> int | None:
        return None


def test_stdin_stdout_and_stderr_reach_the_launcher_joined_to_wd(tmp_path):
    spool = Spool.create(tmp_path / "spool")
    launcher = Recording()
    manager = Manager(spool, Allocation((Node("n1", 1),), slurm_job_id="1"), Settings(watch=False), os.environ,
                      {"host": "test"}, launcher)
    manager.recover(now())
    work = tmp_path / "work"
    client.submit(spool.root, {"exec": "cat", "wd": str(work), "stdin": "in.txt", "stdout": "o/out.txt",
                               "stderr": "err.txt"})
    manager.step(now(), woken_by_event=True)
    [launch] = launcher.launches
    assert (launch.stdin, launch.stdout, launch.stderr) == (f"{work}/in.txt", f"{work}/o/out.txt", f"{work}/err.txt")
