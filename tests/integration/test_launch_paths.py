"""Paths the manager hands to its launcher: absolute, joined to the job's wd, so that a launcher that
opens them elsewhere (srun opens --input on the manager's node, in its own directory) finds the
job's files. A manager in this process and a launcher that records what it is given."""

from __future__ import annotations

import os

from fsqueue import client
from fsqueue.manager import Manager, Settings
from fsqueue.resources import Allocation, Node
from fsqueue.spool import Spool
from tests.conftest import RecordingLauncher, now


def test_stdin_stdout_and_stderr_reach_the_launcher_joined_to_wd(tmp_path):
    spool = Spool.create(tmp_path / "spool")
    launcher = RecordingLauncher()
    manager = Manager(spool, Allocation((Node("n1", 1),), slurm_job_id="1"), Settings(watch=False), os.environ,
                      {"host": "test"}, launcher)
    manager.recover(now())
    work = tmp_path / "work"
    client.submit(spool.root, {"exec": "cat", "wd": str(work), "stdin": "in.txt", "stdout": "o/out.txt",
                               "stderr": "err.txt"})
    manager.step(now(), woken_by_event=True)
    [launch] = launcher.launches
    assert (launch.stdin, launch.stdout, launch.stderr) == (f"{work}/in.txt", f"{work}/o/out.txt", f"{work}/err.txt")
