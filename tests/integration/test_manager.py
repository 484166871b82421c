"""A real `fsq manager` process, driven with the fsq CLI and with plain bash, in inotify and polling mode."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from fsqueue.spool import is_job_id, read_json
from tests.conftest import RunningManager, run_fsq, wait_until


def submit(manager: RunningManager, *args: str, input: bytes | None = None) -> list[str]:
    # From the test's own directory: fsq submit gives jobs the submitter's working directory.
    result = run_fsq("submit", *args, spool=manager.spool, input=input, check=True, cwd=manager.spool.parent)
    ids = result.stdout.decode().split()
    assert ids and all(is_job_id(i) for i in ids), result.stdout
    return ids


def bash(script: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["timeout", "30", "bash", "-euo", "pipefail", "-c", script], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **env})


def test_command_job_runs_and_records_everything(start_manager):
    manager = start_manager("--cores", "2")
    [job_id] = submit(manager, "--name", "hello", "--", "sh", "-c", "echo out $FSQ_JOB_NAME; echo err >&2")
    status = manager.wait_final(job_id)
    assert status["state"] == "SUCCEEDED" and status["exit_code"] == 0 and status["signal"] is None
    assert Path(status["stdout"]).read_text() == "out hello\n"
    assert Path(status["stderr"]).read_text() == "err\n"
    assert status["nodes"] == ["local"] and sum(map(len, status["cores"].values())) == 1
    assert status["submit_time"] <= status["start_time"] <= status["end_time"]
    assert status["usage"]["cpu_user"] >= 0 and status["usage"]["cpu_system"] >= 0
    assert status["seq"] >= 3  # QUEUED, RUNNING, SUCCEEDED


def test_peak_memory_is_the_jobs_own_or_null_below_the_managers(start_manager):
    manager = start_manager("--cores", "2")
    # 400 MiB written page by page, far above the manager's own peak; `true` far below it.
    big = {"name": "big", "exec": sys.executable, "args": ["-c", "b = bytearray(400 << 20); b[::4096] = b'x' * (100 << 10)"]}
    [big_id, small_id] = submit(manager, "-", input=json.dumps([big, {"name": "small", "exec": "true"}]).encode())
    big_status = manager.wait_final(big_id)
    assert big_status["state"] == "SUCCEEDED", Path(big_status["stderr"]).read_text()
    big_usage = big_status["usage"]
    assert 400 << 10 < big_usage["max_rss_kib"] < 600 << 10  # KiB
    assert manager.wait_final(small_id)["usage"]["max_rss_kib"] is None
    shown = run_fsq("status", big_id, spool=manager.spool, check=True).stdout.decode()
    assert f"peak RSS {big_usage['max_rss_kib']} KiB" in shown


# 300 MiB touched and freed, then exec: the manager's getrusage(RUSAGE_SELF) keeps that peak, its own
# VmHWM does not, and only the latter reaches its jobs.
BIG_PARENT = """import os, sys
b = bytearray(300 << 20); b[::4096] = b'x' * (75 << 10); del b
os.execv(sys.executable, [sys.executable, "-m", "fsqueue", *sys.argv[1:]])
"""


def test_peak_memory_of_a_job_below_the_peak_of_whatever_started_the_manager(start_manager):
    manager = start_manager("--cores", "2", command=[sys.executable, "-c", BIG_PARENT])
    job = {"exec": sys.executable, "args": ["-c", "b = bytearray(150 << 20); b[::4096] = b'x' * (150 << 8)"]}
    [job_id] = submit(manager, "-", input=json.dumps(job).encode())
    status = manager.wait_final(job_id)
    assert status["state"] == "SUCCEEDED", Path(status["stderr"]).read_text()
    assert 150 << 10 < status["usage"]["max_rss_kib"] < 300 << 10  # KiB


def test_status_json_and_wait_exit_codes(start_manager):
    manager = start_manager("--cores", "2")
    [good] = submit(manager, "--", "true")
    [bad] = submit(manager, "--", "sh", "-c", "exit 3")
    [killed] = submit(manager, "--", "sh", "-c", "kill -9 $$")
    assert run_fsq("wait", good, spool=manager.spool).returncode == 0
    waited = run_fsq("wait", good, bad, killed, spool=manager.spool)
    assert waited.returncode == 1, waited.stderr
    detail = json.loads(run_fsq("status", bad, "--json", spool=manager.spool, check=True).stdout)
    assert {"id", "name", "state", "exit_code", "stdout", "stderr"} <= set(detail)
    assert (detail["state"], detail["exit_code"]) == ("FAILED", 3)
    detail = json.loads(run_fsq("status", killed, "--json", spool=manager.spool, check=True).stdout)
    assert (detail["state"], detail["exit_code"], detail["signal"]) == ("FAILED", None, 9)


def test_status_of_several_names_and_ids_keeps_their_order(start_manager):
    manager = start_manager("--cores", "2")
    ids = submit(manager, "-", input=json.dumps([{"name": "x", "exec": "true"}, {"name": "y", "exec": "true"},
                                                 {"name": "x", "exec": "true"}]).encode())
    assert run_fsq("wait", *ids, spool=manager.spool).returncode == 0
    shown = json.loads(run_fsq("status", "--json", "y", ids[0], "x", "nobody", spool=manager.spool).stdout)
    assert [(doc["id"], doc["name"]) for doc in shown] == [(ids[1], "y"), (ids[0], "x"), (ids[0], "x"), (ids[2], "x")]
    missing = run_fsq("status", "y", "nobody", spool=manager.spool)
    assert missing.returncode != 0 and "no job 'nobody'" in missing.stderr.decode()


def test_bulk_file_prints_one_id_per_line_and_nothing_else(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    jobs = [{"name": f"n{i}", "exec": "/bin/echo", "args": [str(i)]} for i in range(5)]
    result = run_fsq("submit", "-", spool=manager.spool, input=json.dumps(jobs).encode(), check=True)
    lines = result.stdout.decode().splitlines()
    assert len(lines) == 5 and all(is_job_id(line) for line in lines) and lines == sorted(lines)
    assert run_fsq("wait", *lines, spool=manager.spool).returncode == 0
    outputs = [Path(manager.status(i)["stdout"]).read_text() for i in lines]
    assert outputs == [f"{i}\n" for i in range(5)]


def test_bash_recipe_and_receipt_without_fsq(start_manager):
    """A bash-only client: publish with printf+mv, learn the id from the receipt, wait with jq."""
    manager = start_manager("--cores", "2")
    script = r"""
        printf '{"name": "from-bash", "script": "echo $((6 * 7))"}' > "$SPOOL/incoming/.t1"
        mv "$SPOOL/incoming/.t1" "$SPOOL/incoming/t1.json"
        until [ -s "$SPOOL/receipts/t1.json" ]; do sleep 0.05; done
        id=$(jq -r '.ids[0]' "$SPOOL/receipts/t1.json")
        until jq -e '.state | test("SUCCEEDED|FAILED|CANCELED|REJECTED")' "$SPOOL/status/$id.json" >/dev/null 2>&1
        do sleep 0.05; done
        jq -r .state "$SPOOL/status/$id.json"
        cat "$(jq -r .stdout "$SPOOL/status/$id.json")"
    """
    result = bash(script, SPOOL=str(manager.spool))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["SUCCEEDED", "42"]


def test_bad_files_are_moved_aside_and_valid_ones_around_them_run(start_manager):
    manager = start_manager("--cores", "2")
    incoming = manager.spool / "incoming"
    (incoming / ".a").write_text('{"name": "before", "exec": "true"}')
    os.rename(incoming / ".a", incoming / "a.json")
    (incoming / ".b").write_text('{"name": "bad", "exec": "true", "resources": {"cores": {"min": 0}}}')
    os.rename(incoming / ".b", incoming / "b.json")
    (incoming / ".c").write_text("this is not json")
    os.rename(incoming / ".c", incoming / "c.json")
    os.symlink("/etc/passwd", incoming / "d.json")
    (incoming / ".e").write_text('{"name": "after", "exec": "true"}')
    os.rename(incoming / ".e", incoming / "e.json")
    receipts = manager.spool / "receipts"
    wait_until(lambda: all((receipts / f"{n}.json").exists() for n in "abcde"), 20, lambda: os.listdir(receipts))
    reasons = {p.name.split("-", 1)[1]: p.read_text() for p in (manager.spool / "rejected").glob("*.reason")}
    assert "resources.cores.min: must be >= 1, got 0" in reasons["b.json.reason"]
    assert "not valid JSON" in reasons["c.json.reason"]
    assert "symbolic link" in reasons["d.json.reason"]
    for name in "ae":
        [job_id] = read_json(receipts / f"{name}.json")["ids"]
        assert manager.wait_final(job_id)["state"] == "SUCCEEDED"
    assert manager.proc.poll() is None


def test_cancel_queued_and_running_jobs(start_manager, tmp_path):
    manager = start_manager("--cores", "1", "--grace", "30")
    marker = tmp_path / "got-term"
    [running] = submit(manager, "--", "bash", "-c", f"trap 'touch {marker}; exit 0' TERM; sleep 60 & wait")
    [queued] = submit(manager, "--", "true")
    manager.wait_state(running, "RUNNING")
    assert run_fsq("cancel", queued, running, spool=manager.spool).returncode == 0
    assert manager.wait_final(queued)["state"] == "CANCELED"
    status = manager.wait_final(running)
    assert status["state"] == "CANCELED" and marker.exists()


def test_shutdown_terms_then_kills_and_leaves_the_jobs_for_the_next_manager(start_manager, tmp_path):
    manager = start_manager("--cores", "2", "--grace", "0.5")
    [stubborn] = submit(manager, "--", "bash", "-c", "trap '' TERM; echo $$ > pid; while :; do sleep 0.1; done")
    [queued_later] = submit(manager, "--cores", "2", "--", "true")
    manager.wait_state(stubborn, "RUNNING")
    wait_until(lambda: manager.status(queued_later), 20, "the second job taken in")
    assert run_fsq("shutdown", spool=manager.spool).returncode == 0
    assert manager.wait_exit() == 0
    status = manager.status(stubborn)
    # Interrupted, not canceled: it runs again, as attempt 2, under the next manager.
    assert (status["state"], status["signal"], status["attempt"]) == ("QUEUED", signal.SIGKILL, 2)
    assert status["reason"] == "interrupted when its manager stopped (fsq shutdown)"
    assert not _alive(int((manager.spool.parent / "pid").read_text()))
    assert manager.status(queued_later)["state"] == "QUEUED"  # left in the spool for the next manager
    assert read_json(manager.spool / "manager.json")["phase"] == "stopped"
    assert "manager not running since" in run_fsq("status", spool=manager.spool).stdout.decode()


def test_sigterm_stops_cleanly_and_queued_work_survives_a_restart(start_manager):
    manager = start_manager("--cores", "1")
    [long] = submit(manager, "--", "sleep", "60")
    [waiting] = submit(manager, "--", "true")
    manager.wait_state(long, "RUNNING")
    wait_until(lambda: manager.status(waiting), 20, "the second job taken in")
    manager.proc.send_signal(signal.SIGTERM)
    assert manager.wait_exit() == 0
    assert (manager.status(long)["state"], manager.status(long)["attempt"]) == ("QUEUED", 2)
    assert manager.status(waiting)["state"] == "QUEUED"
    again = start_manager("--cores", "2", wait=True)  # room for both: the interrupted job runs again first
    assert again.wait_final(waiting)["state"] == "SUCCEEDED"
    assert again.wait_state(long, "RUNNING")["attempt"] == 2
    run_fsq("cancel", long, spool=manager.spool, check=True)
    assert again.wait_final(long)["state"] == "CANCELED"


def test_jobs_submitted_while_no_manager_runs_wait_in_the_spool(start_manager, tmp_path):
    spool = tmp_path / "spool"
    result = run_fsq("submit", "--", "true", spool=spool, check=True)
    [job_id] = result.stdout.decode().split()
    assert not (spool / "status" / f"{job_id}.json").exists()
    manager = start_manager("--cores", "1", "--drain", spool=spool, wait=False)
    assert manager.wait_exit() == 0
    assert manager.status(job_id)["state"] == "SUCCEEDED"


def test_manager_killed_hard_restarts_and_loses_no_job(start_manager, tmp_path):
    manager = start_manager("--cores", "1")
    pid_file = tmp_path / "first-attempt.pid"
    # The first attempt blocks the only core; the rerun after the restart ends at once.
    [blocker] = submit(manager, "--", "bash", "-c", f'[ "$FSQ_ATTEMPT" = 1 ] || exit 0; echo $$ > {pid_file}; exec sleep 60')
    queued = submit(manager, "-", input=json.dumps([{"exec": "true"}] * 3).encode())
    manager.wait_state(blocker, "RUNNING")
    os.kill(manager.proc.pid, signal.SIGKILL)  # the manager alone: its job lives on, an orphan
    manager.proc.wait()
    orphan = int(pid_file.read_text())
    assert _alive(orphan)
    again = start_manager("--cores", "1", "--drain", wait=False)
    assert again.wait_exit(60) == 0
    assert not _alive(orphan), "the new manager stops what its predecessor left running before it runs it again"
    assert "stopped 1 job processes left running by the previous manager" in again.log()
    assert all(again.status(i)["state"] == "SUCCEEDED" for i in queued)
    rerun = again.status(blocker)
    assert rerun["attempt"] == 2 and rerun["state"] == "SUCCEEDED"


def test_a_second_manager_refuses_and_names_the_first(start_manager):
    first = start_manager("--cores", "1")
    second = start_manager("--cores", "1", wait=False)
    assert second.wait_exit() == 2
    assert f"pid {first.proc.pid}" in second.log() and "another manager serves" in second.log()
    assert first.proc.poll() is None


def test_backfill_lets_a_small_job_pass_a_blocked_big_one(start_manager):
    manager = start_manager("--nodes", "n1:2")
    [holder] = submit(manager, "--", "sleep", "60")
    manager.wait_state(holder, "RUNNING")
    [big] = submit(manager, "--cores", "2", "--", "true")
    [small] = submit(manager, "--", "true")
    assert manager.wait_final(small)["state"] == "SUCCEEDED"
    assert manager.status(big)["state"] == "QUEUED"
    run_fsq("cancel", holder, spool=manager.spool, check=True)
    assert manager.wait_final(big)["state"] == "SUCCEEDED"


def test_first_come_first_served_holds_after_older_jobs_have_finished(start_manager):
    # Admission numbers once came from the count of live jobs, so after two older jobs ended a new job
    # could be numbered ahead of one that had waited longer, and started first.
    manager = start_manager("--nodes", "n1:2")
    holders = [submit(manager, "--", "sleep", "60")[0] for _ in range(2)]
    for holder in holders:
        manager.wait_state(holder, "RUNNING")
    both_cores = {"exec": "true", "resources": {"cores": 2}, "after": ["gate"]}
    [first] = submit(manager, "-", input=json.dumps({**both_cores, "name": "first"}).encode())
    manager.wait_state(first, "QUEUED")
    run_fsq("cancel", *holders, spool=manager.spool, check=True)
    for holder in holders:
        manager.wait_final(holder)
    [second] = submit(manager, "-", input=json.dumps({**both_cores, "name": "second"}).encode())
    manager.wait_state(second, "QUEUED")
    submit(manager, "-", input=json.dumps({"name": "gate", "exec": "true"}).encode())
    started = [manager.wait_final(job_id)["start_time"] for job_id in (first, second)]
    assert started[0] < started[1], "the job that waited longer starts first"


def test_a_job_that_can_never_fit_is_rejected_at_once(start_manager):
    manager = start_manager("--nodes", "n1:2,n2:2")
    [job_id] = submit(manager, "--cores", "3", "--", "true")
    status = manager.wait_final(job_id)
    assert status["state"] == "REJECTED"
    assert status["reason"] == "needs 3 cores on one node; the largest node here has 2"


def test_virtual_nodes_and_job_variables(start_manager):
    manager = start_manager("--nodes", "n1:2,n2:2")
    [job_id] = submit(manager, "--nodes", "2", "--cores", "2", "--", "sh", "-c",
                      'echo "$FSQ_NODES|$FSQ_CORES|$FSQ_NUM_CORES|$OMP_NUM_THREADS"')
    status = manager.wait_final(job_id)
    assert status["nodes"] == ["n1", "n2"] and status["cores"] == {"n1": [0, 1], "n2": [0, 1]}
    assert Path(status["stdout"]).read_text() == "n1,n2|n1:0,1 n2:0,1|4|2\n"


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs to tell them apart")
def test_local_jobs_are_pinned_to_their_cores(start_manager):
    manager = start_manager("--cores", "2")
    script = "sleep 0.5; grep Cpus_allowed_list /proc/self/status | cut -f2; echo $FSQ_CORES"
    ids = submit(manager, "-", input=json.dumps([{"script": script}] * 2).encode())
    seen = []
    for job_id in ids:
        status = manager.wait_final(job_id)
        allowed, cores = Path(status["stdout"]).read_text().split()
        [core] = status["cores"]["local"]
        assert allowed == str(core) and cores == f"local:{core}"
        seen.append(core)
    assert sorted(seen) == [0, 1]  # both ran at once, one per core


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="pinning needs two CPUs to tell them apart")
def test_no_pin_leaves_jobs_on_every_cpu_of_the_manager(start_manager):
    manager = start_manager("--cores", "2", "--no-pin")
    script = "grep Cpus_allowed_list /proc/self/status | cut -f2; echo $FSQ_CORES $OMP_NUM_THREADS"
    [job_id] = submit(manager, "-", input=json.dumps({"script": script}).encode())
    status = manager.wait_final(job_id)
    allowed, cores, threads = Path(status["stdout"]).read_text().split()
    want = next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith("Cpus_allowed_list:"))
    assert allowed == want and cores == "local:0" and threads == "1"


def test_drain_mode_exits_when_idle(start_manager):
    manager = start_manager("--cores", "2", "--drain", wait=False)
    assert manager.wait_exit() == 0
    assert read_json(manager.spool / "manager.json")["phase"] == "stopped"


def test_wait_all_and_list(start_manager):
    manager = start_manager("--cores", "2")
    ids = submit(manager, "-", input=json.dumps([{"name": f"w{i}", "script": f"exit {i % 2}"} for i in range(6)]).encode())
    waited = run_fsq("wait", "--all", "--timeout", "60", spool=manager.spool)
    assert waited.returncode == 1  # three of them exit 1
    assert waited.stdout.decode().split(", ") == ["FAILED 3", "SUCCEEDED 3\n"]
    listed = json.loads(run_fsq("list", "--json", spool=manager.spool, check=True).stdout)
    assert sorted(doc["id"] for doc in listed) == sorted(ids)
    failed = json.loads(run_fsq("list", "--state", "failed", "--json", spool=manager.spool, check=True).stdout)
    assert sorted(doc["name"] for doc in failed) == ["w1", "w3", "w5"]
    table = run_fsq("list", spool=manager.spool, check=True).stdout.decode().splitlines()
    assert table[0].split() == ["ID", "STATE", "EXIT", "CORES", "NAME"] and len(table) == 7
    summary = json.loads(run_fsq("status", "--json", spool=manager.spool, check=True).stdout)
    assert summary["counts"] == {"FAILED": 3, "SUCCEEDED": 3} and summary["manager"]["alive"]
    assert summary["cores"] == {"total": 2, "busy": 0}


def test_wait_all_stops_when_the_queued_jobs_wait_for_a_name_never_submitted(start_manager):
    manager = start_manager("--cores", "2")
    submit(manager, "-", input=json.dumps([{"name": "a", "exec": "true", "after": ["never"]},
                                           {"name": "b", "exec": "true"},
                                           {"name": "c", "exec": "true", "after": ["a"]},
                                           # more iterations than its window: most are still unmade
                                           {"name": "s", "exec": "true", "after": ["never"],
                                            "sweep": {"range": {"stop": 200}}}]).encode())
    waited = run_fsq("wait", "--all", "--timeout", "60", spool=manager.spool)
    assert waited.returncode == 1, waited
    assert waited.stdout.decode() == "QUEUED 202, SUCCEEDED 1\n"
    assert "202 queued job(s) cannot start: they wait for dependencies" in waited.stderr.decode()
    # fsq wait on such a job stops too, and says which.
    [c_id] = [doc["id"] for doc in json.loads(run_fsq("list", "--json", spool=manager.spool, check=True).stdout)
              if doc["name"] == "c"]
    waited = run_fsq("wait", c_id, "--timeout", "60", spool=manager.spool)
    assert (waited.returncode, waited.stdout.decode()) == (1, f"{c_id} QUEUED\n"), waited
    assert f"{c_id}: cannot start; the manager is stalled" in waited.stderr.decode()
    summary = run_fsq("status", spool=manager.spool, check=True).stdout.decode()
    assert "\nstalled: no queued job can start" in summary
    assert json.loads(run_fsq("status", "--json", spool=manager.spool, check=True).stdout)["manager"]["stalled"]
    # A new submission can still meet them; wait --all then waits for them again.
    submit(manager, "-", input=json.dumps({"name": "never", "exec": "true"}).encode())
    waited = run_fsq("wait", "--all", "--timeout", "60", spool=manager.spool)
    assert (waited.returncode, waited.stdout.decode()) == (0, "SUCCEEDED 204\n"), waited
    summary = json.loads(run_fsq("status", "--json", spool=manager.spool, check=True).stdout)
    assert summary["manager"]["stalled"] is False


def test_wait_by_name_and_timeout(start_manager):
    manager = start_manager("--cores", "1")
    submit(manager, "--name", "slow", "--", "sleep", "30")
    timed_out = run_fsq("wait", "slow", "--timeout", "0.5", spool=manager.spool)
    assert timed_out.returncode == 3 and "timed out" in timed_out.stderr.decode()
    run_fsq("cancel", "slow", spool=manager.spool, check=True)
    waited = run_fsq("wait", "slow", "--timeout", "30", spool=manager.spool)
    assert waited.returncode == 1 and waited.stdout.decode().split()[1] == "CANCELED"


def test_submit_refuses_what_the_manager_would_reject_and_wait_a_spool_that_is_not_there(tmp_path):
    spool = tmp_path / "spool"
    # Valid jobs, but over 16 MiB once stamped: refused before any id is printed, nothing published.
    jobs = [{"exec": "true", "args": ["x" * 1000]}] * 17_000
    big = run_fsq("submit", "-", spool=spool, input=json.dumps(jobs).encode())
    assert big.returncode == 2 and big.stdout == b"", big
    assert "a file holds at most 16777216" in big.stderr.decode()
    assert os.listdir(spool / "incoming") == []
    # A mistyped spool is an error at once, not a new spool to wait on forever.
    missing = run_fsq("wait", "--all", spool=tmp_path / "nospool")
    assert missing.returncode == 2 and "no spool at" in missing.stderr.decode(), missing
    assert not (tmp_path / "nospool").exists()
    # Options that only go with a command are refused with a file, even when zero or empty.
    (tmp_path / "one.json").write_text('{"exec": "true"}')
    for option in (["--cores", "0"], ["--name", ""]):
        mixed = run_fsq("submit", *option, str(tmp_path / "one.json"), spool=spool)
        assert mixed.returncode == 2 and "go with a command" in mixed.stderr.decode(), (option, mixed)


def test_fifo_streams_never_hold_up_the_manager(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    fed, unread = tmp_path / "fed", tmp_path / "unread"
    os.mkfifo(fed)
    os.mkfifo(unread)
    [writer] = submit(manager, "-", input=json.dumps({"exec": "true", "stdout": str(unread)}).encode())
    refused = manager.wait_final(writer)
    assert refused["state"] == "FAILED" and "a FIFO with no reader" in refused["reason"], refused
    [after] = submit(manager, "--", "true")
    assert manager.wait_final(after)["state"] == "SUCCEEDED", "the manager went on serving"
    feed = os.open(fed, os.O_RDWR)  # the other end open first (O_RDWR: Linux opens it without waiting)
    [reader] = submit(manager, "-", input=json.dumps({"exec": "cat", "stdin": str(fed)}).encode())
    manager.wait_state(reader, "RUNNING")
    os.write(feed, b"through the pipe\n")  # the job's read waits for it, the manager does not
    os.close(feed)
    done = manager.wait_final(reader)
    assert done["state"] == "SUCCEEDED" and Path(done["stdout"]).read_text() == "through the pipe\n"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
