"""Which versions of a status file the manager writes: every final state, and a new job's QUEUED state or
a RUNNING state only once the job has been in it for Settings.write_delay. A manager in this process,
real jobs, its clock given."""

from __future__ import annotations

import os
import time
from typing import Any

from fsqueue import client
from fsqueue.journal import replay
from fsqueue.manager import Manager, Settings
from fsqueue.resources import Allocation, Node
from fsqueue.spool import Spool
from tests.conftest import now, stop_in_process, wait_until


def make_manager(root, delay: float, monkeypatch, **settings: Any) -> tuple[Manager, Spool, list[tuple[str, str]]]:
    spool = Spool.create(root)
    written: list[tuple[str, str]] = []
    real_write = Spool.write_status

    def write_status(self: Spool, job_id: str, document: dict[str, Any]) -> None:  # a spy: the file is written too
        written.append((job_id, document["state"]))
        real_write(self, job_id, document)

    monkeypatch.setattr(Spool, "write_status", write_status)
    manager = Manager(spool, Allocation((Node("local", 2),)), Settings(watch=False, write_delay=delay, **settings),
                      os.environ, {"host": "test"})
    manager.recover(now())
    return manager, spool, written


def states_of(written: list[tuple[str, str]], job_id: str) -> list[str]:
    return [state for written_id, state in written if written_id == job_id]


def test_a_job_that_ends_before_the_delay_goes_straight_to_its_final_state(tmp_path, monkeypatch):
    manager, spool, written = make_manager(tmp_path / "spool", 3600, monkeypatch)
    [job_id] = client.submit(spool.root, {"exec": "true"})
    manager.step(now(), woken_by_event=True)
    final = wait_until(lambda: manager.step(now()) or (spool.read_status(job_id) or {}).get("state") == "SUCCEEDED",
                       10, lambda: str(written))
    assert final and states_of(written, job_id) == ["SUCCEEDED"]
    assert spool.read_status(job_id)["seq"] == 3, "seq counts every state, written or not"
    journaled = [record["state"] for record in replay(spool.journal).records if record.get("id") == job_id]
    assert "RUNNING" in journaled and journaled[-1] == "SUCCEEDED", "the journal records every state"
    stop_in_process(manager)


def test_a_running_job_is_shown_running_once_it_has_run_for_the_delay(tmp_path, monkeypatch):
    # Scans and heartbeats far apart, so that the next deadline can only be the one for this write.
    manager, spool, written = make_manager(tmp_path / "spool", 3600, monkeypatch, poll=1e6, heartbeat=1e6)
    [job_id] = client.submit(spool.root, {"exec": "sleep", "args": ["30"]})
    launched_after = time.monotonic()
    manager.step(now(), woken_by_event=True)
    launched_before = time.monotonic()
    assert job_id in manager.records and manager.records[job_id].state == "RUNNING"
    for _ in range(3):
        manager.step(now(1.0))  # past the flush window, not past the delay
    assert "RUNNING" not in states_of(written, job_id)
    deadline = manager.next_deadline(now())
    assert launched_after + 3600 <= deadline <= launched_before + 3600, "the manager must wake to write it, not before"
    manager.step(now(3601))
    assert states_of(written, job_id)[-1] == "RUNNING"
    assert spool.read_status(job_id)["state"] == "RUNNING"
    stop_in_process(manager)


def test_without_a_delay_running_is_written_at_the_next_flush(tmp_path, monkeypatch):
    manager, spool, written = make_manager(tmp_path / "spool", 0, monkeypatch)
    [job_id] = client.submit(spool.root, {"exec": "sleep", "args": ["30"]})
    manager.step(now(), woken_by_event=True)
    manager.step(now(1.0))
    assert states_of(written, job_id)[-1] == "RUNNING"
    stop_in_process(manager)


def test_a_new_job_that_starts_within_the_delay_is_never_shown_queued(tmp_path, monkeypatch):
    manager, spool, written = make_manager(tmp_path / "spool", 3600, monkeypatch, poll=1e6, heartbeat=1e6)
    [blocker] = client.submit(spool.root, {"exec": "sleep", "args": ["30"], "resources": {"cores": 2}})
    manager.step(now(), woken_by_event=True)
    [waiting] = client.submit(spool.root, {"exec": "true"})
    manager.step(now(), woken_by_event=True)
    assert manager.records[waiting].state == "QUEUED", "both cores are taken"
    for _ in range(3):
        manager.step(now(1.0))  # past the flush window, not past the delay
    assert states_of(written, waiting) == []
    client.cancel(spool.root, [blocker])
    wait_until(lambda: manager.step(now(1.0), woken_by_event=True) or states_of(written, waiting), 10,
               lambda: str(written))
    assert states_of(written, waiting) == ["SUCCEEDED"]
    assert spool.read_status(waiting)["seq"] == 3, "seq counts every state, written or not"
    stop_in_process(manager)


def test_a_new_job_that_waits_longer_than_the_delay_is_shown_queued(tmp_path, monkeypatch):
    manager, spool, written = make_manager(tmp_path / "spool", 3600, monkeypatch, poll=1e6, heartbeat=1e6)
    [blocker] = client.submit(spool.root, {"exec": "sleep", "args": ["30"], "resources": {"cores": 2}})
    manager.step(now(), woken_by_event=True)
    manager.step(now(3601))  # its RUNNING written: its deadline is not the next one any more
    assert states_of(written, blocker) == ["RUNNING"]
    [waiting] = client.submit(spool.root, {"exec": "true"})
    admitted_after = time.monotonic()
    manager.step(now(3601), woken_by_event=True)
    admitted_before = time.monotonic()
    manager.step(now(3602))
    assert states_of(written, waiting) == []
    deadline = manager.next_deadline(now(3601))
    assert admitted_after + 7201 <= deadline <= admitted_before + 7201, "the manager must wake to write it, not before"
    manager.step(now(7202))
    assert states_of(written, waiting) == ["QUEUED"]
    assert spool.read_status(waiting)["state"] == "QUEUED"
    stop_in_process(manager)


def test_a_stopping_manager_writes_the_queued_state_it_held_back(tmp_path, monkeypatch):
    manager, spool, written = make_manager(tmp_path / "spool", 3600, monkeypatch)
    client.submit(spool.root, {"exec": "sleep", "args": ["30"], "resources": {"cores": 2}})
    [waiting] = client.submit(spool.root, {"exec": "true"})
    manager.step(now(), woken_by_event=True)
    assert states_of(written, waiting) == []
    stop_in_process(manager)
    assert spool.read_status(waiting)["state"] == "QUEUED", "the next manager, and readers meanwhile, find it"
