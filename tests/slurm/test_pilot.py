"""A real pilot: `fsq manager` as the batch script of an sbatch job on the local Slurm cluster.

Clients submit from outside the allocation, as from a login node; every job becomes an srun step.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fsqueue import client
from fsqueue.spool import Spool, read_json
from tests.conftest import wait_until

pytestmark = pytest.mark.slurm

SLURM_CONF = "/tmp/fsq-slurm/etc/slurm.conf"


@pytest.fixture(scope="module", autouse=True)
def slurm_conf() -> Iterator[None]:
    if shutil.which("sbatch") is None:
        pytest.fail("sbatch not found: start the cluster with `bash ../shared/slurm/up.sh` (CI does)")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = os.environ.get("SLURM_CONF", SLURM_CONF)
    yield
    if previous is None:
        os.environ.pop("SLURM_CONF", None)


class Pilot:
    def __init__(self, spool: Path, job_id: str, log: Path) -> None:
        self.spool, self.job_id, self.log = spool, job_id, log

    def submit(self, jobs: Any) -> list[str]:
        return client.submit(self.spool, jobs, wd=str(self.spool.parent))

    def status(self, job_id: str) -> dict[str, Any]:
        return Spool(self.spool).read_status(job_id) or {}

    def wait(self, ids: list[str], timeout: float = 120) -> list[dict[str, Any]]:
        return client.wait(self.spool, ids, timeout=timeout, poll_max=0.2)

    def state(self) -> str:
        result = subprocess.run(["squeue", "-h", "-j", self.job_id, "-o", "%T"], capture_output=True, text=True)
        return result.stdout.strip()

    def running(self) -> bool:
        return self.state() in ("RUNNING", "PENDING", "CONFIGURING", "COMPLETING")

    def steps(self) -> list[str]:
        result = subprocess.run(["squeue", "-h", "-s", "-j", self.job_id, "-o", "%j"], capture_output=True, text=True)
        return result.stdout.split()

    def describe(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else "(no log yet)"


def start_pilot(tmp_path: Path, *sbatch_args: str) -> Pilot:
    spool, log = tmp_path / "spool", tmp_path / "pilot.log"
    command = f"exec {sys.executable} -m fsqueue manager --spool {spool} --poll 0.5"
    result = subprocess.run(["sbatch", "--parsable", "-N4", "-n16", "-o", str(log), *sbatch_args, "--wrap", command],
                            capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    pilot = Pilot(spool, result.stdout.strip().split(";")[0], log)
    try:
        # Pending is fine (the cluster may be busy); the manager must serve soon after the job starts.
        wait_until(lambda: pilot.state() not in ("PENDING", "CONFIGURING"), 300, lambda: f"job {pilot.job_id} pending")
        wait_until(lambda: (read_json(spool / "manager.json") or {}).get("phase") == "serving", 60, pilot.describe)
    except BaseException:
        subprocess.run(["scancel", pilot.job_id], capture_output=True)  # a fixture that fails has no teardown
        raise
    return pilot


@pytest.fixture
def pilot(tmp_path: Path) -> Iterator[Pilot]:
    pilot = start_pilot(tmp_path)
    yield pilot
    client.shutdown(pilot.spool)
    try:
        wait_until(lambda: not pilot.running(), 30, pilot.describe)
    finally:
        subprocess.run(["scancel", pilot.job_id], capture_output=True)


REPORT = 'echo "$SLURMD_NODENAME|$SLURM_STEP_NODELIST|$SLURM_CPUS_ON_NODE|$SLURM_NTASKS|$OMP_NUM_THREADS"'


def test_mixed_workload_lands_where_the_records_say(pilot: Pilot):
    jobs = [{"name": f"one-{i}", "script": f"{REPORT}; sleep 1"} for i in range(12)]
    jobs += [{"name": f"four-{i}", "resources": {"cores": 4}, "script": f"{REPORT}; sleep 1"} for i in range(3)]
    jobs += [{"name": "mpi", "resources": {"nodes": 2, "cores": 2, "tasks_per_node": 2}, "script": REPORT}]
    ids = pilot.submit(jobs)
    finals = pilot.wait(ids)
    assert [doc["state"] for doc in finals] == ["SUCCEEDED"] * len(ids), finals
    for doc in finals:
        lines = Path(doc["stdout"]).read_text().splitlines()
        cores = doc["cores"]
        if doc["name"] == "mpi":
            assert len(lines) == 4 and len(doc["nodes"]) == 2
            assert sorted({line.split("|")[0] for line in lines}) == sorted(doc["nodes"])
            assert all(line.split("|")[3] == "4" for line in lines)  # 4 ranks in the step
            continue
        [line] = lines
        node, step_nodes, cpus_on_node, _, threads = line.split("|")
        assert [node] == doc["nodes"] == [step_nodes]
        assert int(cpus_on_node) == len(cores[node]) == int(threads)
    assert max_concurrent(finals) <= 16
    assert all(load <= 4 for load in per_node_peaks(finals).values())


def max_concurrent(docs: list[dict[str, Any]]) -> int:
    events = sorted((t, delta) for doc in docs for t, delta in (
        (doc["start_time"], sum(map(len, doc["cores"].values()))), (doc["end_time"], -sum(map(len, doc["cores"].values())))))
    peak = load = 0
    for _, delta in events:
        load += delta
        peak = max(peak, load)
    return peak


def per_node_peaks(docs: list[dict[str, Any]]) -> dict[str, int]:
    nodes = {node for doc in docs for node in doc["nodes"]}
    return {node: max_concurrent([{**doc, "cores": {node: doc["cores"][node]}} for doc in docs if node in doc["cores"]])
            for node in nodes}


def test_exit_codes_and_signals_come_back(pilot: Pilot):
    ids = pilot.submit([{"name": "ok", "exec": "true"}, {"name": "seven", "script": "exit 7"},
                        {"name": "killed", "script": "kill -9 $$"}, {"name": "no-such", "exec": "/nonexistent/x"}])
    ok, seven, killed, missing = pilot.wait(ids)
    assert (ok["state"], ok["exit_code"]) == ("SUCCEEDED", 0)
    assert (seven["state"], seven["exit_code"], seven["launch_failures"]) == ("FAILED", 7, 0)
    assert (killed["state"], killed["signal"]) == ("FAILED", 9)
    assert missing["state"] == "FAILED" and missing["launch_failures"] == 0  # the job's fault, not a launch failure


def test_cancel_kills_the_step(pilot: Pilot, tmp_path: Path):
    marker = f"fsq-cancel-marker-{os.getpid()}"
    [job_id] = pilot.submit([{"name": "long", "script": f"exec -a {marker} sleep 300"}])
    wait_until(lambda: pilot.status(job_id).get("state") == "RUNNING", 60, lambda: pilot.status(job_id))
    wait_until(lambda: f"fsq-{job_id}" in pilot.steps(), 30, lambda: pilot.steps())
    client.cancel(pilot.spool, [job_id])
    [final] = pilot.wait([job_id], timeout=60)
    assert final["state"] == "CANCELED"
    wait_until(lambda: f"fsq-{job_id}" not in pilot.steps(), 30, lambda: pilot.steps())
    wait_until(lambda: subprocess.run(["pgrep", "-f", marker]).returncode == 1, 30, f"a process named {marker}")


def test_a_job_larger_than_the_allocation_is_rejected_at_once(pilot: Pilot):
    [too_wide, too_many] = pilot.submit([{"resources": {"cores": 8}, "exec": "true"},
                                         {"resources": {"nodes": 5}, "exec": "true"}])
    first, second = pilot.wait([too_wide, too_many], timeout=30)
    assert (first["state"], first["reason"]) == ("REJECTED", "needs 8 cores on one node; the largest node here has 4")
    assert second["state"] == "REJECTED" and "needs 5 nodes" in second["reason"]


def test_a_node_that_cannot_launch_is_taken_out_and_no_job_is_blamed(tmp_path: Path):
    """slurmd of n4 stops answering: launches there fail, are retried elsewhere, and n4 leaves the pool."""
    pid_file = Path("/tmp/fsq-slurm/run/slurmd-n4.pid")
    pilot = start_pilot(tmp_path)
    try:
        blockers = pilot.submit([{"name": f"block-{i}", "resources": {"cores": 4}, "exec": "sleep", "args": ["20"]}
                                 for i in range(3)])
        wait_until(lambda: all(pilot.status(i).get("state") == "RUNNING" for i in blockers), 60,
                   lambda: [pilot.status(i) for i in blockers])
        os.kill(int(pid_file.read_text()), 19)  # SIGSTOP: the node stays allocated but never answers
        try:
            victims = pilot.submit([{"name": f"victim-{i}", "exec": "true"} for i in range(4)])
            info = wait_until(lambda: _excluded(pilot), 120, pilot.describe)
            assert "n4" in info and "launches failed in a row" in info["n4"]
        finally:
            os.kill(int(pid_file.read_text()), 18)  # SIGCONT
        finals = pilot.wait(victims, timeout=120)
        assert [doc["state"] for doc in finals] == ["SUCCEEDED"] * 4
        assert all(doc["attempt"] == 1 for doc in finals) and any(doc["launch_failures"] for doc in finals)
        assert all("n4" not in doc["nodes"] for doc in finals)
        summary = subprocess.run([sys.executable, "-m", "fsqueue", "status", "--spool", str(pilot.spool)],
                                 capture_output=True, text=True).stdout
        assert "n4: out of the pool" in summary
    finally:
        client.shutdown(pilot.spool)
        wait_until(lambda: not pilot.running(), 60, pilot.describe)
        subprocess.run(["scancel", pilot.job_id], capture_output=True)


def _excluded(pilot: Pilot) -> dict[str, str]:
    info = read_json(pilot.spool / "manager.json") or {}
    return {node["name"]: node["excluded"] for node in info.get("nodes", []) if node.get("excluded")}


def test_the_pilot_example_runs_a_bash_workflow(tmp_path: Path):
    script = Path(__file__).resolve().parents[2] / "examples" / "slurm" / "pilot.sbatch"
    env = {**os.environ, "FSQ_PYTHON": sys.executable}
    result = subprocess.run(["sbatch", "--parsable", "--wait", str(script)], capture_output=True, text=True,
                            cwd=tmp_path, env=env, timeout=300)
    job_id = result.stdout.strip().split(";")[0]
    log = (tmp_path / f"fsq-pilot-{job_id}.out").read_text()
    assert result.returncode == 0, log
    assert "pilot done: 0 failed" in log and "threads=4" in log
    assert sorted(line.split()[-1] for line in log.splitlines() if line.startswith("rank ")) in (
        [f"n{a}", f"n{a}", f"n{b}", f"n{b}"] for a in range(1, 5) for b in range(a + 1, 5))
