"""When a submission counts as accepted: its acceptance is in the journal, synced, before anyone is told.

Accepted files are written without an fsync; the journal holds each document until the next start
compacts it (docs/reliability.md, "The promises"). These tests build, on real files, what a crash of
the machine could leave at each point, and start a manager on it. A manager in this process, real
jobs, its clock given.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from fsqueue.errors import JournalWriteError
from fsqueue.journal import Journal, replay
from fsqueue.manager import Manager, Settings
from fsqueue.resources import Allocation, Node
from fsqueue.spool import IdMaker, Spool
from tests.conftest import now, stop_in_process, wait_until

JOB = b'{"exec": "true"}'


def start(spool: Spool, **settings: Any) -> Manager:
    manager = Manager(spool, Allocation((Node("local", 2),)), Settings(watch=False, **settings), os.environ,
                      {"host": "test"})
    manager.recover(now())
    return manager


def acceptance_records(spool: Spool) -> list[dict[str, Any]]:
    return [record for record in replay(spool.journal).records if "accepted" in record]


def run_to_the_end(manager: Manager, spool: Spool, job_id: str) -> dict[str, Any]:
    return wait_until(lambda: manager.step(now(1.0)) or ((spool.read_status(job_id) or {}).get("state") == "SUCCEEDED"
                                                        and spool.read_status(job_id)), 10,
                      lambda: str(spool.read_status(job_id)))


def submit_and_finish(manager: Manager, spool: Spool, name: str = "a.json") -> str:
    """Drop one job as `name`, step the manager until its receipt names it and it has succeeded."""
    spool.publish(spool.incoming, name, JOB)
    [job_id] = wait_until(lambda: manager.step(now(1.0), woken_by_event=True)
                          or (spool.read_receipt(name) or {}).get("ids"), 10)
    run_to_the_end(manager, spool, job_id)
    return job_id


def test_the_receipt_and_the_claimed_copy_wait_for_the_journal_sync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spool = Spool.create(tmp_path / "spool")
    manager = start(spool, write_delay=3600, poll=1e6, heartbeat=1e6)
    assert manager.journal is not None
    real_sync = Journal.sync

    def failing_sync(self: Journal) -> int:
        raise JournalWriteError("injected: the journal cannot be synced")

    monkeypatch.setattr(Journal, "sync", failing_sync)
    spool.publish(spool.incoming, "a.json", JOB)
    manager.step(now(), woken_by_event=True)
    accepted = orjson.loads((spool.accepted / "a.json").read_bytes())
    assert os.listdir(spool.claimed) == ["a.json"], "kept: the only copy a crash of the machine cannot take"
    assert spool.read_receipt("a.json") is None, "nobody is told of ids the journal does not hold yet"
    written = [record for record in replay(spool.journal).records if record.get("accepted") == "a.json"]
    assert [record["document"] for record in written] == [accepted], "written ahead of the launch, as a start is"

    monkeypatch.setattr(Journal, "sync", real_sync)
    manager.step(now(2.0))  # past the retry delay after the failed sync
    assert spool.read_receipt("a.json") == {"state": "ACCEPTED", "ids": [accepted["id"]]}
    assert os.listdir(spool.claimed) == []
    stop_in_process(manager)


def test_the_manager_wakes_for_a_receipt_though_no_status_file_is_due(tmp_path: Path):
    # A flush window of a minute: the second step surely falls inside the one the first step opened.
    spool = Spool.create(tmp_path / "spool")
    manager = start(spool, write_delay=3600, flush_window=60, poll=1e6, heartbeat=1e6)
    sleeper = b'{"exec": "sleep", "args": ["30"]}'
    spool.publish(spool.incoming, "first.json", sleeper)
    manager.step(now(), woken_by_event=True)
    assert spool.read_receipt("first.json"), "the first flush of a manager is due at once"
    spool.publish(spool.incoming, "second.json", sleeper)
    manager.step(now(), woken_by_event=True)
    assert spool.read_receipt("second.json") is None, "within the flush window"
    manager.step(now(1.0))  # manager.json rewritten after the change (INFO_MIN_GAP): not due again for long
    assert spool.read_receipt("second.json") is None, "still within the flush window"
    # Both jobs run, their RUNNING held back for an hour; scans and heartbeats are later still: no status
    # file is due, and only the receipt brings the next step closer.
    assert manager.running == 2
    assert manager.next_deadline(now()) <= now().mono + 60
    manager.step(now(61))
    assert spool.read_receipt("second.json")
    stop_in_process(manager)


@pytest.mark.parametrize("receipt_left", [None, b'{"state": "ACC', b'{"state": "REJECTED", "reason": "an earlier x"}'],
                         ids=["none", "torn", "an-earlier-rejection"])
def test_an_accepted_file_a_crash_lost_is_written_again_from_the_journal(tmp_path: Path, receipt_left: bytes | None):
    spool = Spool.create(tmp_path / "spool")
    first = start(spool)
    job_id = submit_and_finish(first, spool)
    original = (spool.accepted / "a.json").read_bytes()
    receipt = spool.read_receipt("a.json")
    (spool.accepted / "a.json").write_bytes(original[:7])  # the machine crashed before the file reached the disk
    if receipt_left is None:
        (spool.receipts / "a.json").unlink()  # the manager died before it wrote it
    else:
        (spool.receipts / "a.json").write_bytes(receipt_left)
    assert [record["accepted"] for record in acceptance_records(spool)] == ["a.json"]

    second = start(spool)  # the first one is never finished: it died with the machine
    assert (spool.accepted / "a.json").read_bytes() == original
    assert spool.read_receipt("a.json") == receipt
    assert job_id in second and second.counts["SUCCEEDED"] == 1, "its end is known: it does not run again"
    assert acceptance_records(spool) == [], "compacted once the file is durable again"
    stop_in_process(second)


def test_an_acceptance_the_journal_never_held_is_taken_back_and_read_again(tmp_path: Path):
    spool = Spool.create(tmp_path / "spool")
    stop_in_process(start(spool))  # a spool a journaling manager has served: its journal is complete
    # The machine crashed after a manager wrote accepted/ files, before it synced its journal: the
    # claimed copies are there (dropped only after the sync), and the accepted files whole or torn.
    stamped = IdMaker()()
    (spool.claimed / "whole.json").write_bytes(JOB)
    (spool.accepted / "whole.json").write_bytes(orjson.dumps({"id": stamped, "exec": "true"}) + b"\n")
    (spool.claimed / "torn.json").write_bytes(JOB)
    (spool.accepted / "torn.json").write_bytes(b'{"id": "')

    manager = start(spool)
    assert stamped not in manager, "no reader was told of it, and it does not run"
    ids = {}
    for name in ("whole.json", "torn.json"):
        ids[name] = wait_until(lambda name=name: manager.step(now(1.0)) or (spool.read_receipt(name) or {}).get("ids"), 10)
        assert orjson.loads((spool.accepted / name).read_bytes())["id"] == ids[name][0]
    for [job_id] in ids.values():
        run_to_the_end(manager, spool, job_id)
    assert stamped not in ids["whole.json"] and os.listdir(spool.claimed) == [] and os.listdir(spool.rejected) == []
    stop_in_process(manager)


def test_a_namesake_left_in_claimed_never_undoes_an_older_acceptance(tmp_path: Path):
    spool = Spool.create(tmp_path / "spool")
    first = start(spool)
    job_id = submit_and_finish(first, spool)
    stop_in_process(first)
    stop_in_process(start(spool))  # compacted: the acceptance record is gone, its job's records stay
    accepted = (spool.accepted / "a.json").read_bytes()
    # A manager died after claiming a second file of the same name, before it rejected it.
    (spool.claimed / "a.json").write_bytes(b'{"exec": "false"}')

    manager = start(spool)
    wait_until(lambda: manager.step(now(1.0)) or os.listdir(spool.rejected), 10)
    assert (spool.accepted / "a.json").read_bytes() == accepted
    assert job_id in manager and manager.counts["SUCCEEDED"] == 1
    reasons = [name for name in os.listdir(spool.rejected) if name.endswith(".reason")]
    assert len(reasons) == 1 and "duplicate" in (spool.rejected / reasons[0]).read_text()
    stop_in_process(manager)


def test_the_journal_keeps_its_acceptances_when_the_accepted_files_cannot_be_synced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    spool = Spool.create(tmp_path / "spool")
    first = start(spool)
    job_id = submit_and_finish(first, spool)

    def failing_sync(self: Spool) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(Spool, "sync_accepted", failing_sync)
    second = start(spool)
    assert [record["accepted"] for record in acceptance_records(spool)] == ["a.json"], "not compacted away"
    assert job_id in second
    monkeypatch.undo()
    stop_in_process(second)
    stop_in_process(start(spool))
    assert acceptance_records(spool) == []


def test_a_namesake_of_a_job_older_than_the_journal_never_undoes_it(tmp_path: Path):
    spool = Spool.create(tmp_path / "spool")
    # A spool served before managers kept a journal: its finished job is known by its status file only.
    old = {"id": IdMaker()(), "exec": "true"}
    (spool.accepted / "old.json").write_bytes(orjson.dumps(old) + b"\n")
    status = {"id": old["id"], "state": "SUCCEEDED", "seq": 3, "exit_code": 0}
    spool.write_status(old["id"], status)
    stop_in_process(start(spool))  # the first journaling manager: the journal is complete from here on
    (spool.claimed / "old.json").write_bytes(b'{"exec": "false"}')  # then one died between claim and reject

    manager = start(spool)
    wait_until(lambda: manager.step(now(1.0)) or os.listdir(spool.rejected), 10)
    assert orjson.loads((spool.accepted / "old.json").read_bytes()) == old
    assert old["id"] in manager and manager.counts["SUCCEEDED"] == 1
    stop_in_process(manager)


def _torn(path: Path, outside: Path) -> None:
    path.write_bytes(b'{"id": "')  # no crash makes this (the journal would hold it): a damaged disk


def _no_job(path: Path, outside: Path) -> None:
    path.write_bytes(b"{}\n")


def _directory(path: Path, outside: Path) -> None:
    path.mkdir()


def _fifo(path: Path, outside: Path) -> None:
    os.mkfifo(path)


def _link_to_another_users_job(path: Path, outside: Path) -> None:
    outside.write_bytes(orjson.dumps({"id": IdMaker()(), "exec": "touch", "args": [str(outside) + ".ran"]}))
    os.chown(outside, 65534, 65534)
    path.symlink_to(outside)


@pytest.mark.parametrize("plant", [_torn, _no_job, _directory, _fifo, _link_to_another_users_job],
                         ids=lambda plant: plant.__name__.strip("_"))
def test_what_cannot_be_an_accepted_file_is_reported_never_run_and_the_spool_served(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, plant: Any):
    spool = Spool.create(tmp_path / "spool")
    stop_in_process(start(spool))
    outside = tmp_path / "outside.json"
    plant(spool.accepted / "planted.json", outside)
    manager = start(spool)
    assert "planted.json" in caplog.text and "its jobs are not queued" in caplog.text
    submit_and_finish(manager, spool)
    assert manager.counts["SUCCEEDED"] == 1 and sum(manager.counts.values()) == 1
    stop_in_process(manager)
    assert not Path(str(outside) + ".ran").exists()
