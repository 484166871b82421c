"""The examples in examples/ run as their README says."""

from __future__ import annotations

import os
import subprocess

from tests.conftest import REPO, run_fsq


def test_sweep_runs_in_batch_mode(tmp_path):
    result = run_fsq("run", str(REPO / "examples" / "sweep.json"), spool=tmp_path / "spool", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert "10 jobs in" in result.stderr.decode() and "SUCCEEDED 10" in result.stderr.decode()  # 9 iterations + 1
    outputs = sorted((tmp_path / "spool" / "output").glob("*.out"))
    pis = [float(line.split("pi=")[1]) for path in outputs for line in path.read_text().splitlines() if "pi=" in line]
    assert len(pis) == 9 and all(3.0 < pi < 3.3 for pi in pis)
    runs = sorted(line.split(" pi=")[0] for path in outputs for line in path.read_text().splitlines() if "pi=" in line)
    assert runs == sorted(f"n={n} seed={seed}" for n in (100000, 200000, 400000) for seed in (1, 2, 3))


def test_bash_workflow_against_a_running_manager(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    env = {**os.environ, "FSQ_SPOOL": str(manager.spool), "OUT_DIR": str(tmp_path / "out")}
    result = subprocess.run(["timeout", "120", "bash", str(REPO / "examples" / "bash-workflow.sh")],
                            capture_output=True, text=True, env=env, timeout=150)
    assert result.returncode == 0, result.stderr + manager.log()
    assert "sum of squares 1..20 = 2870 (0 failed)" in result.stdout


def test_batch_mode_exits_nonzero_when_a_job_fails(tmp_path):
    jobs = tmp_path / "jobs.json"
    jobs.write_text('[{"name": "ok", "exec": "true"}, {"name": "broken", "script": "exit 4"}]')
    result = run_fsq("run", str(jobs), "--cores", "2", spool=tmp_path / "spool", cwd=tmp_path)
    assert result.returncode == 1
    stderr = result.stderr.decode()
    assert "FAILED 1" in stderr and "SUCCEEDED 1" in stderr and "broken: exit code 4" in stderr
