"""A full filesystem under a running manager: it keeps serving, says why it waits, loses nothing,
and leaves no torn journal record or status file. The spool lives on a small tmpfs (root only)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from fsqueue.journal import replay
from fsqueue.spool import Spool
from tests.conftest import fill_up, small_tmpfs, wait_until


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_tmpfs(tmp_path / "fs", "4m") as mount:
        yield mount


def test_a_full_disk_stops_progress_not_the_manager(start_manager, small_fs: Path, tmp_path: Path):
    root = small_fs / "spool"
    manager = start_manager("--cores", "2", spool=root)
    spool = Spool(root)
    hold = tmp_path / "hold"  # outside the small filesystem: the jobs run until the test lets them end
    hold.touch()
    # Staged before the disk fills: a rename needs no free block, so it can be published into a full disk.
    jobs = [{"name": f"j{i}", "script": f"while [ -e {hold} ]; do sleep 0.05; done"} for i in range(6)]
    (spool.incoming / ".late.json").write_bytes(json.dumps(jobs).encode())
    filler = fill_up(small_fs / "filler")  # tmpfs has inodes to spare: the rename below still works
    os.rename(spool.incoming / ".late.json", spool.incoming / "late.json")
    wait_until(lambda: "cannot accept late.json" in manager.log(), 30, manager.log)
    assert manager.proc.poll() is None, "the manager keeps serving"
    assert (spool.claimed / "late.json").exists(), "the file waits in claimed/, neither accepted nor rejected"

    filler.unlink()  # space again: the file is taken in at its next try
    receipt = wait_until(lambda: spool.read_receipt("late.json"), 30, manager.log)
    assert receipt["state"] == "ACCEPTED"
    for job_id in receipt["ids"][:2]:
        manager.wait_state(job_id, "RUNNING")

    filler = fill_up(small_fs / "filler")
    hold.unlink()  # now jobs end while the disk is full: their ends cannot all be written
    wait_until(lambda: "cannot write the journal" in manager.log() or "cannot write to the spool" in manager.log(),
               30, manager.log)
    assert manager.proc.poll() is None
    filler.unlink()
    finals = [manager.wait_final(job_id, timeout=60) for job_id in receipt["ids"]]
    assert [doc["state"] for doc in finals] == ["SUCCEEDED"] * len(jobs)

    # Nothing torn: every status file parses, and the journal replays with no damage at all.
    for job_id in spool.status_ids():
        orjson.loads((spool.status_dir / f"{job_id}.json").read_bytes())
    replayed = replay(spool.journal)
    assert replayed.torn_bytes == 0 and replayed.corrupt_lines == ()
    ended = {record["id"] for record in replayed.records if record.get("state") == "SUCCEEDED"}
    assert ended == set(receipt["ids"])


def test_a_bad_control_request_on_a_full_disk_waits_and_the_manager_serves_on(start_manager, small_fs: Path):
    root = small_fs / "spool"
    manager = start_manager("--cores", "1", spool=root)
    spool = Spool(root)
    (spool.control / ".reboot.json").write_bytes(b'{"action": "reboot"}')
    filler = fill_up(small_fs / "filler")
    os.rename(spool.control / ".reboot.json", spool.control / "reboot.json")  # a rename needs no free block
    wait_until(lambda: "cannot reject" in manager.log(), 30, manager.log)
    assert manager.proc.poll() is None, "a full disk stops progress, not the manager"
    assert (spool.control / "reboot.json").exists(), "kept, to be rejected with its reason when it can be"
    filler.unlink()
    wait_until(lambda: any(name.endswith("reboot.json.reason") for name in os.listdir(spool.rejected)), 30,
               manager.log)
    assert manager.proc.poll() is None
