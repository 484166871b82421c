"""Fault injection: kill the manager at random moments of a run, restart it, again and again.

Each round starts a real `fsq manager` on the same spool, lets it run for a random time (start-up and
recovery included, so kills also land there), and kills it: with SIGKILL, or as Slurm ends an
allocation, SIGTERM then SIGKILL after a random part of the grace period. More work is dropped into
the spool while no manager runs. At the end a draining manager finishes the run, and the test checks:
every accepted job reached exactly one final state (SUCCEEDED: none fails on its own), no job was
lost, and no job whose end was on disk when a manager died ran again. Each job appends one line per
run to a log, so runs are counted from what really ran, whatever the managers recorded.

CI runs a short version. The full one (2,000 jobs, 50 kills of each kind) is
    FSQ_FAULTS=full python -m pytest -s tests/integration/test_faults.py
and prints the figures quoted in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from fsqueue.joblog import read_joblog
from fsqueue.spool import Spool
from tests.conftest import FSQ, Processes, run_fsq, wait_until

FULL = os.environ.get("FSQ_FAULTS") == "full"
JOBS, KILLS, BATCHES = (2000, 50, 10) if FULL else (240, 8, 4)
GRACE = 1.0


def ended(spool: Spool) -> dict[str, str]:
    """Job id -> final state, from the status files as any reader sees them."""
    final = ("SUCCEEDED", "FAILED", "CANCELED", "TIMEOUT", "SKIPPED", "REJECTED")
    docs = spool.read_statuses(spool.status_ids())
    return {job_id: doc["state"] for job_id, doc in docs.items() if doc and doc["state"] in final}


def runs_so_far(log: Path) -> Counter[str]:
    return Counter(line.split()[0] for line in log.read_text().splitlines()) if log.exists() else Counter()


@pytest.mark.parametrize("how", ["kill", "term-then-kill"])
def test_random_kills_lose_nothing_and_rerun_nothing_finished(processes: Processes, tmp_path: Path, how: str):
    rng = random.Random(f"20261126-{how}")
    root = tmp_path / "spool"
    log = tmp_path / "runs.log"
    spool = Spool.create(root)
    jobs = [{"name": f"j{i}", "script": f"echo $FSQ_JOB_ID $FSQ_ATTEMPT >> {log}; sleep 0.0{rng.randint(0, 4)}"}
            for i in range(JOBS)]
    batches = [jobs[i::BATCHES] for i in range(BATCHES)]
    ids: list[str] = []
    checks: list[tuple[set[str], Counter[str]]] = []  # (ended on disk, runs started) when each manager died
    started = time.monotonic()
    for kill in range(KILLS):
        if batches and kill % max(1, KILLS // BATCHES) == 0:  # dropped while no manager runs
            ids += _submit(root, batches.pop())
        manager = processes.start([*FSQ, "manager", "--spool", str(root), "--cores", "2", "--grace", str(GRACE)],
                                  name=f"manager-{kill}")
        time.sleep(rng.uniform(0.05, 1.5))  # a random moment: this is the fault, not a wait for an event
        if how == "term-then-kill":
            manager.send_signal(signal.SIGTERM)
            time.sleep(rng.uniform(0, GRACE))
        checks.append((set(ended(spool)), runs_so_far(log)))
        os.kill(manager.pid, signal.SIGKILL)  # the manager only: its jobs live on until the next one stops them
        # It was still there to be killed, or after SIGTERM had stopped cleanly (or died of it, when the
        # signal came before its handler was set up): a manager that died on its own, in recovery say,
        # or refused the spool, fails the test here.
        allowed = (-signal.SIGKILL,) if how == "kill" else (-signal.SIGKILL, -signal.SIGTERM, 0)
        assert manager.wait() in allowed, processes.log_of(manager)
    for batch in batches:
        ids += _submit(root, batch)
    last = processes.start([*FSQ, "manager", "--spool", str(root), "--cores", "2", "--drain"], name="manager-last")
    wait_until(lambda: last.poll() is not None, 600, lambda: processes.log_of(last))
    assert last.returncode == 0, processes.log_of(last)
    elapsed = time.monotonic() - started

    states = ended(spool)
    assert len(ids) == JOBS and Counter(states[job_id] for job_id in ids) == Counter({"SUCCEEDED": JOBS}), \
        Counter(states.get(job_id, "missing") for job_id in ids)
    wait_until(lambda: set(runs_so_far(log)) == set(ids), 30, "every job's line in the run log")
    ran = runs_so_far(log)
    for on_disk, runs_then in checks:
        rerun = {job_id for job_id in on_disk if ran[job_id] != runs_then[job_id]}
        assert not rerun, f"{len(rerun)} jobs ran again after their end was on disk: {sorted(rerun)[:5]}"
    twice = sum(count - 1 for count in ran.values())
    print(f"\nfault injection ({how}): {KILLS} kills survived, {JOBS} jobs, 0 lost, {twice} extra runs "
          f"({twice / KILLS:.2f} per kill), {elapsed:.0f} s")


def _submit(root: Path, jobs: list[dict[str, str]]) -> list[str]:
    return run_fsq("submit", "-", spool=root, input=json.dumps(jobs).encode(), check=True).stdout.decode().split()


def test_a_job_that_forges_status_files_cannot_change_what_a_restart_believes(start_manager, tmp_path: Path):
    """Jobs run as the spool's user and can write anything in it; the journal, not status/, is the truth."""
    manager = start_manager("--cores", "2")
    id_file, forged, ran = tmp_path / "victim-id", tmp_path / "forged", tmp_path / "victim-ran"
    forger_script = (
        '[ "$FSQ_ATTEMPT" = 1 ] || exit 0; '
        f'until [ -s {id_file} ]; do sleep 0.05; done; id=$(cat {id_file}); '
        """printf '{"id":"%s","state":"SUCCEEDED","seq":1000000000,"attempt":1}' "$id" > "$FSQ_SPOOL/status/$id.json"; """
        f"touch {forged}; exec sleep 60"
    )
    [forger] = _submit(manager.spool, [{"name": "forger", "script": forger_script}])
    [victim] = _submit(manager.spool, [{"exec": "touch", "args": [str(ran)],
                                        "after": [{"job": "forger", "when": "afterany"}]}])
    # Its QUEUED state written first (after Settings.write_delay): else that write could land on top
    # of the forgery, and the test would check nothing.
    manager.wait_state(victim, "QUEUED")
    id_file.write_text(victim)
    wait_until(forged.exists, 30, manager.log)
    assert manager.status(victim)["state"] == "SUCCEEDED", "the forgery is on disk"
    os.kill(manager.proc.pid, signal.SIGKILL)
    manager.proc.wait()
    again = start_manager("--cores", "2", spool=manager.spool)
    wait_until(ran.exists, 30, again.log)  # the victim really ran
    # And its status file is the manager's again, not the forgery that was already there.
    final = wait_until(lambda: (doc := again.status(victim)) and doc["seq"] < 10**9 and doc.get("end_time") and doc,
                       30, lambda: str(again.status(victim)))
    assert final["state"] == "SUCCEEDED"
    assert again.status(forger)["attempt"] == 2


FLOOD = 100_000 if FULL else 2_000


def test_a_flood_of_files_is_taken_in_and_the_manager_keeps_serving(start_manager, tmp_path: Path):
    """FLOOD files dropped at once, one in ten broken: every broken one is rejected with its reason,
    every valid one runs, and a job submitted in the middle of the flood is not starved by it."""
    manager = start_manager("--cores", "2")
    spool = Spool(manager.spool)
    staging = spool.incoming / ".flood"
    staging.mkdir()
    for n in range(FLOOD):  # staged under a dot-name, then moved in one rename each: a flood, not a trickle
        body = b'{"exec": 1}' if n % 10 == 0 else b'{"exec": "true", "name": "flood"}'
        (staging / f"f{n:06d}.json").write_bytes(body)
    started = time.monotonic()
    for name in sorted(os.listdir(staging)):
        os.rename(staging / name, spool.incoming / name)
    staging.rmdir()
    [urgent] = _submit(manager.spool, [{"name": "urgent", "exec": "true", "priority": 10}])
    receipts = wait_until(lambda: len(os.listdir(spool.receipts)) >= FLOOD + 1 and os.listdir(spool.receipts),
                          60 + FLOOD / 100, lambda: f"{len(os.listdir(spool.receipts))} receipts")
    assert manager.wait_final(urgent)["state"] == "SUCCEEDED"
    states = Counter(json.loads((spool.receipts / name).read_bytes())["state"] for name in receipts
                     if name.startswith("f"))
    assert states == Counter({"ACCEPTED": FLOOD - FLOOD // 10, "REJECTED": FLOOD // 10})
    reasons = {path.read_text() for path in spool.rejected.glob("*.reason")}
    assert len(list(spool.rejected.glob("*.reason"))) == FLOOD // 10
    assert all(reason.endswith("exec: must be a string, got integer 1\n") for reason in reasons), reasons
    done = wait_until(lambda: (info := manager.info()) and info["counts"].get("SUCCEEDED", 0) == FLOOD - FLOOD // 10 + 1
                      and info["counts"], 60 + FLOOD / 50, lambda: str(manager.info()))
    assert manager.proc.poll() is None and not done.get("QUEUED") and not done.get("RUNNING")
    # Not starved: the urgent job started before the flood's last jobs did (an order, not a time).
    starts = {row["id"]: row["start_time"] for row in read_joblog(spool.joblog)}
    assert sum(start > starts[urgent] for start in starts.values()) >= FLOOD // 10
    print(f"\nflood: {FLOOD} files ({FLOOD // 10} broken) taken in and run in {time.monotonic() - started:.1f} s; "
          "the manager kept serving")
