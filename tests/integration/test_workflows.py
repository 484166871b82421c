"""Workflows with a real manager and real processes: dependencies, walltime, retries, priority."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tests.conftest import run_fsq, wait_until
from tests.integration.test_manager import submit


def submit_jobs(manager, jobs) -> list[str]:
    return submit(manager, "-", input=json.dumps(jobs).encode())


def test_dependencies_across_files_and_forward_references(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    out = tmp_path / "order.txt"
    [last] = submit_jobs(manager, [{"name": "last", "script": f"echo last >> {out}", "after": ["middle"]}])
    assert manager.wait_state(last, "QUEUED")["reason"] == "waiting for a job named 'middle' to be submitted"
    [first] = submit_jobs(manager, [{"name": "first", "script": f"sleep 0.3; echo first >> {out}"}])
    [middle] = submit_jobs(manager, [{"name": "middle", "script": f"echo middle >> {out}", "after": [first]}])
    assert manager.wait_final(last)["state"] == "SUCCEEDED"
    assert out.read_text().split() == ["first", "middle", "last"]
    assert manager.status(middle)["start_time"] >= manager.status(first)["end_time"]


def test_failure_skips_dependents_transitively_and_runs_handlers(start_manager):
    manager = start_manager("--cores", "2")
    ids = submit_jobs(manager, [
        {"name": "a", "script": "exit 3"},
        {"name": "b", "exec": "true", "after": ["a"]},
        {"name": "c", "exec": "true", "after": ["b"]},
        {"name": "on-failure", "exec": "true", "after": [{"job": "a", "when": "afternotok"}]},
        {"name": "always", "exec": "true", "after": [{"job": "a", "when": "afterany"}]},
    ])
    states = {doc["name"]: doc for doc in map(manager.wait_final, ids)}
    assert {name: doc["state"] for name, doc in states.items()} == {
        "a": "FAILED", "b": "SKIPPED", "c": "SKIPPED", "on-failure": "SUCCEEDED", "always": "SUCCEEDED"}
    assert states["b"]["reason"] == f"dependency a ({ids[0]}) ended FAILED; this job needed afterok"
    assert states["c"]["reason"].startswith(f"dependency b ({ids[1]}) was skipped")


def test_walltime_stops_a_job_with_term_then_kill(start_manager, tmp_path):
    manager = start_manager("--cores", "2", "--grace", "0.5")
    marker = tmp_path / "got-term"
    [polite, stubborn] = submit_jobs(manager, [
        {"script": f"trap 'touch {marker}; exit 0' TERM; sleep 30 & wait", "walltime": 0.5},
        {"script": "trap '' TERM; while :; do sleep 0.1; done", "walltime": "0:01"},
    ])
    first, second = manager.wait_final(polite), manager.wait_final(stubborn)
    assert first["state"] == "TIMEOUT" and marker.exists() and first["reason"] == "ran past its walltime of 0.5 s"
    assert second["state"] == "TIMEOUT" and second["signal"] == 9


def test_a_cancel_while_a_walltime_kill_is_under_way_ends_the_job_canceled_not_retried(start_manager, tmp_path):
    manager = start_manager("--cores", "1", "--grace", "600")
    termed, release = tmp_path / "termed", tmp_path / "release"
    script = f"trap 'touch {termed}' TERM; until [ -e {release} ]; do sleep 0.05; done"
    [job] = submit_jobs(manager, [{"script": script, "walltime": 0.5, "retries": 1}])
    wait_until(termed.exists, 30, lambda: str(manager.status(job)))  # its walltime ran out: TERM, then a grace
    run_fsq("cancel", job, spool=manager.spool, check=True)
    wait_until(lambda: not os.listdir(manager.spool / "control"), 30)  # read, and acted on in the same step
    release.touch()
    final = manager.wait_final(job)
    assert (final["state"], final["attempt"], final["reason"]) == ("CANCELED", 1, "canceled by request"), final


def test_retries_run_again_with_the_attempt_number(start_manager, tmp_path):
    manager = start_manager("--cores", "1")
    log = tmp_path / "attempts"
    [job] = submit_jobs(manager, [{"script": f"echo $FSQ_ATTEMPT >> {log}; [ $FSQ_ATTEMPT = 3 ]", "retries": 5}])
    [hopeless] = submit_jobs(manager, [{"script": "exit 9", "retries": 1}])
    assert manager.wait_final(job)["state"] == "SUCCEEDED"
    assert log.read_text().split() == ["1", "2", "3"]
    final = manager.wait_final(hopeless)
    assert (final["state"], final["attempt"], final["exit_code"]) == ("FAILED", 2, 9)


def test_priority_orders_ready_jobs_and_fifo_within_a_priority(start_manager, tmp_path):
    manager = start_manager("--cores", "1")
    out = tmp_path / "order.txt"
    [blocker] = submit(manager, "--", "sleep", "30")
    manager.wait_state(blocker, "RUNNING")
    jobs = [{"name": name, "priority": priority, "script": f"echo {name} >> {out}"}
            for name, priority in [("low", -1), ("mid-1", 0), ("high", 5), ("mid-2", 0)]]
    ids = submit_jobs(manager, jobs)
    for job_id in ids:
        manager.wait_state(job_id, "QUEUED")
    run_fsq("cancel", blocker, spool=manager.spool, check=True)
    for job_id in ids:
        manager.wait_final(job_id)
    assert out.read_text().split() == ["high", "mid-1", "mid-2", "low"]


def test_status_says_why_a_job_waits(start_manager):
    manager = start_manager("--nodes", "n1:2")
    [blocker] = submit(manager, "--", "sleep", "30")
    manager.wait_state(blocker, "RUNNING")
    [wide] = submit(manager, "--cores", "2", "--", "true")
    doc = manager.wait_state(wide, "QUEUED")
    wait_until(lambda: manager.status(wide)["reason"] == "waiting for 2 free cores on one node", 20,
               lambda: manager.status(wide))
    text = run_fsq("status", wide, spool=manager.spool, check=True).stdout.decode()
    assert "reason:     waiting for 2 free cores on one node" in text
    run_fsq("cancel", blocker, spool=manager.spool, check=True)
    assert manager.wait_final(wide)["state"] == "SUCCEEDED" and doc["id"] == wide


def test_gpus_in_local_mode_with_virtual_nodes(start_manager, tmp_path):
    manager = start_manager("--nodes", "n1:4:2")
    hold = tmp_path / "hold"
    hold.mkdir()
    script = f'echo "$CUDA_VISIBLE_DEVICES|$FSQ_GPUS"; while [ -e {hold} ]; do sleep 0.05; done'
    first, second, third = submit_jobs(manager, [{"resources": {"gpus": 1}, "script": script}] * 3)
    [too_many] = submit_jobs(manager, [{"resources": {"gpus": 3}, "exec": "true"}])
    manager.wait_state(first, "RUNNING")
    manager.wait_state(second, "RUNNING")
    # Two cores are free, no GPU is: the third waits, and says for what.
    wait_until(lambda: manager.status(third)["reason"] == "waiting for 1 free cores and 1 free GPU(s) on one node",
               20, lambda: manager.status(third))
    assert manager.wait_final(too_many)["state"] == "REJECTED"
    hold.rmdir()
    docs = [manager.wait_final(job) for job in (first, second, third)]
    seen = [Path(doc["stdout"]).read_text().strip() for doc in docs]
    assert sorted(seen[:2]) == ["0|n1:0", "1|n1:1"] and seen[2] in ("0|n1:0", "1|n1:1")
    assert [doc["gpus"] for doc in docs[:2]] in ([{"n1": ["0"]}, {"n1": ["1"]}], [{"n1": ["1"]}, {"n1": ["0"]}])


def test_a_run_interrupted_by_its_manager_uses_up_no_retry(start_manager, tmp_path):
    manager = start_manager("--cores", "1", "--grace", "0.5")
    log = tmp_path / "attempts"
    script = f'echo $FSQ_ATTEMPT >> {log}; [ "$FSQ_ATTEMPT" = 1 ] && exec sleep 60; exit 3'
    [job] = submit_jobs(manager, [{"script": script, "retries": 1}])
    manager.wait_state(job, "RUNNING")
    run_fsq("shutdown", spool=manager.spool, check=True)  # as at the end of an allocation
    assert manager.wait_exit() == 0
    again = start_manager("--cores", "1", spool=manager.spool)
    final = again.wait_final(job)
    # attempt 1 interrupted (no retry used), attempt 2 failed (the one retry), attempt 3 failed: the end
    assert (final["state"], final["attempt"], final["failures"]) == ("FAILED", 3, 1)
    assert log.read_text().split() == ["1", "2", "3"]


def test_rerun_failed_runs_the_failures_and_what_they_skipped_again_as_new_jobs(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    fixed = tmp_path / "fixed"  # absent on the first run: the jobs that look for it fail
    jobs = [
        {"name": "prep", "script": f"[ -e {fixed} ]"},
        {"name": "sim", "exec": "true", "after": ["prep"]},
        {"name": "report", "exec": "true", "after": [{"job": "sim", "when": "afterok"}]},
        {"name": "fine", "exec": "true"},
        {"name": "sweep", "script": f"[ ${{it}} != 2 ] || [ -e {fixed} ]", "sweep": {"range": {"stop": 4}}},
    ]
    ids = submit_jobs(manager, jobs)
    waited = run_fsq("wait", "--all", "--timeout", "60", spool=manager.spool)
    assert waited.stdout.decode() == "FAILED 2, SKIPPED 2, SUCCEEDED 4\n", waited

    fixed.touch()
    rerun = run_fsq("rerun", "--failed", spool=manager.spool)
    assert rerun.returncode == 0, rerun.stderr
    new = rerun.stdout.decode().split()
    assert len(new) == 4 and not set(new) & set(ids)
    assert "running 4 job(s) again as new jobs" in rerun.stderr.decode()
    finals = [manager.wait_final(job_id) for job_id in new]
    assert sorted(doc["name"] for doc in finals) == ["prep", "report", "sim", "sweep:2"]
    assert all(doc["state"] == "SUCCEEDED" for doc in finals), finals
    # The new sim waited for the new prep, not for the name (which the failed prep also carries).
    [sim] = [doc for doc in finals if doc["name"] == "sim"]
    [prep] = [doc for doc in finals if doc["name"] == "prep"]
    assert sim["start_time"] >= prep["end_time"]
    assert sorted(doc["rerun_of"] for doc in finals) == sorted([ids[0], ids[1], ids[2], f"{ids[4]}.2"])
    again = run_fsq("rerun", "--failed", spool=manager.spool)
    assert again.returncode == 2 and "nothing to run again" in again.stderr.decode(), again  # each failure ran again once
    busy = run_fsq("rerun", "fine", "nosuch", spool=manager.spool)
    assert busy.returncode == 2 and "nosuch: no job with this id or name" in busy.stderr.decode()


def test_rerun_by_name_takes_its_skipped_dependents_and_refuses_what_has_not_ended(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    fixed = tmp_path / "fixed"
    jobs = [{"name": "prep", "script": f"[ -e {fixed} ]"},
            {"name": "sim", "exec": "true", "after": ["prep"]},
            {"name": "later", "exec": "sleep", "args": ["60"]},
            {"name": "grid", "exec": "true", "sweep": {"values": [1, 2]}}]
    submit_jobs(manager, jobs)
    manager_wait = run_fsq("wait", "prep", "sim", "grid:1", "grid:2", "--timeout", "60", spool=manager.spool)
    assert manager_wait.returncode == 1, manager_wait
    fixed.touch()
    running = run_fsq("rerun", "later", spool=manager.spool)
    assert running.returncode == 2 and "later: " in running.stderr.decode() and "only ended jobs" in running.stderr.decode()
    sweep = run_fsq("rerun", "grid", spool=manager.spool)
    assert sweep.returncode == 2 and "grid: a sweep; name its iterations" in sweep.stderr.decode()
    rerun = run_fsq("rerun", "prep", spool=manager.spool)
    assert rerun.returncode == 0, rerun.stderr
    new = rerun.stdout.decode().split()
    finals = [manager.wait_final(job_id) for job_id in new]
    assert sorted(doc["name"] for doc in finals) == ["prep", "sim"]
    assert all(doc["state"] == "SUCCEEDED" for doc in finals)
    run_fsq("cancel", "later", spool=manager.spool, check=True)
