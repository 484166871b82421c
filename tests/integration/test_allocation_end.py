"""Near the end of an allocation: the manager, stepped in-process with the clock passed in."""

from __future__ import annotations

import os
import time

from fsqueue import client
from fsqueue.manager import Manager, Settings
from fsqueue.resources import Allocation, Node
from fsqueue.spool import Spool
from tests.conftest import now, stop_in_process, wait_until


def make_manager(root, end_in: float) -> tuple[Manager, Spool]:
    spool = Spool.create(root)
    allocation = Allocation((Node("n1", 2),), slurm_job_id="1", end_time=time.time() + end_in)
    manager = Manager(spool, allocation, Settings(watch=False, end_margin=120.0), os.environ, {"host": "test"})
    return manager, spool


def test_near_the_end_new_work_stays_in_the_spool(tmp_path):
    manager, spool = make_manager(tmp_path / "spool", end_in=60)
    manager.recover(now())
    [job_id] = client.submit(spool.root, {"exec": "true"})
    manager.step(now(), woken_by_event=True)
    assert spool.scan(spool.incoming).candidates == (f"{job_id}.json",)  # left for the next allocation
    assert spool.read_status(job_id) is None


def test_a_job_longer_than_the_time_left_waits_and_says_why(tmp_path):
    manager, spool = make_manager(tmp_path / "spool", end_in=600)
    manager.recover(now())
    [long, short] = client.submit(spool.root, [{"exec": "sleep", "args": ["5"], "walltime": 3600},
                                               {"exec": "true", "walltime": 60}])
    manager.step(now(), woken_by_event=True)
    # The short job starts at once; its file says so once it has run a moment, or once it has ended.
    wait_until(lambda: manager.step(now()) or (spool.read_status(short) or {}).get("state") in ("RUNNING", "SUCCEEDED"),
               10, "the short job to start")
    status = spool.read_status(long)
    assert status["state"] == "QUEUED"
    assert status["reason"].startswith("needs 3600 s of walltime; the allocation ends in ")
    stop_in_process(manager)
