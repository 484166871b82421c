"""A node taken out of the pool after repeated launch failures: every job it leaves no room for fails
with the reason, wherever that job waits (ready queue, back-off, dependencies). A manager in this
process and a launcher whose every launch fails on one node: the logic under test is the manager's,
not Slurm's (tests/slurm/test_pilot.py takes a real node out)."""

from __future__ import annotations

import os

from fsqueue import client
from fsqueue.launcher import Exit, Launch
from fsqueue.manager import NODE_FAILURE_LIMIT, Manager, Settings
from fsqueue.resources import Allocation, Node
from fsqueue.spool import Spool
from tests.conftest import RecordingLauncher, now


class FailingOn(RecordingLauncher):
    """Every launch that touches `node` fails there; the others never end (they are not under test)."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def start(self, launch: Launch) -> float:
        assert launch.placement is not None
        if self.node in launch.placement.nodes:
            self.ended.append(Exit(launch.job_id, 1, None, None, failed_nodes=(self.node,),
                                   launch_failure=f"srun: error: Task launch failed on node {self.node}: boom"))
        return super().start(launch)


def test_a_job_in_back_off_when_its_node_is_taken_out_fails_instead_of_waiting_forever(tmp_path):
    spool = Spool.create(tmp_path / "spool")
    launcher = FailingOn("n2")
    manager = Manager(spool, Allocation((Node("n1", 2), Node("n2", 2)), slurm_job_id="1"),
                      Settings(watch=False, drain=True), os.environ, {"host": "test"}, launcher)
    manager.recover(now())
    [both] = client.submit(spool.root, {"exec": "true", "resources": {"nodes": 2}})
    [later] = client.submit(spool.root, {"exec": "true", "resources": {"nodes": 2}, "after": [both]})
    ahead = 0.0
    for step in range(200):  # far past every back-off (at most 2 ** (tries - 1) s, well under 200 * 5 s)
        manager.step(now(ahead), woken_by_event=step == 0)
        ahead += 5.0
        if manager.finished:
            break
    record = manager.records[both]
    assert record.state == "FAILED" and record.launch_failures == NODE_FAILURE_LIMIT, record
    assert record.reason.startswith("can no longer start") and "n2:" in record.reason
    assert manager.records[later].state == "SKIPPED", "its dependency failed"
    assert manager.finished, "a draining manager has nothing left to wait for"
