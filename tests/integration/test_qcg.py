"""QCG-PilotJob request files run for real with `fsq run --format qcg` and submitted with `fsq submit --format qcg`.

test_the_example_runs_with_its_iterations needs fsqueue's sweeps (QCG's `iteration` becomes a sweep).
test_the_example_gives_what_qcg_gives runs QCG-PilotJob itself from /tmp/qcg-venv when it is there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from fsqueue import client
from tests.conftest import REPO, run_fsq

EXAMPLE = REPO / "examples" / "qcg" / "pipeline.json"
QCG_SERVICE = Path("/tmp/qcg-venv/bin/qcg-pm-service")

CHAIN = [
    {"request": "submit", "jobs": [
        {"name": "first",
         "execution": {"exec": "sh", "args": ["-c", "printf '%s\\n' \"$GREETING\" > greeting.txt"],
                       "env": {"GREETING": "hello from ${jname}"}, "wd": "chain", "stdout": "first.out",
                       "stderr": "first.err"}},
        {"name": "second",
         "execution": {"script": "tr a-z A-Z < greeting.txt; echo \"cores ${ncores} nodes ${nnodes} in "
                                 "$(basename \"$PWD\")\"; echo to-stderr >&2",
                       "wd": "chain", "stdout": "second.log", "stderr": "second.log"},
         "resources": {"numCores": {"exact": 2}},
         "dependencies": {"after": ["first"]}},
        {"name": "third",
         "execution": {"exec": "sh", "args": ["-c", "cat; echo threads=$OMP_NUM_THREADS"], "model": "threads",
                       "wd": "chain", "stdin": "greeting.txt", "stdout": "third.out", "stderr": "third.err"},
         "resources": {"numCores": 2},
         "dependencies": {"after": ["second"]}},
    ]},
    {"request": "control", "command": "finishAfterAllTasksDone"},
]


def statuses(spool: Path) -> dict[str, dict[str, Any]]:
    return {doc["name"]: doc for doc in client.list_jobs(spool)}


def assert_after(jobs: dict[str, dict[str, Any]], later: str, earlier: str) -> None:
    assert jobs[later]["start_time"] >= jobs[earlier]["end_time"], (later, jobs[later], earlier, jobs[earlier])


def test_a_qcg_file_without_iterations_runs(tmp_path: Path) -> None:
    requests = tmp_path / "reqs.json"
    requests.write_text(json.dumps(CHAIN))
    result = run_fsq("run", "--format", "qcg", "--cores", "2", "reqs.json", spool=tmp_path / "spool", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    chain = tmp_path / "chain"  # made by fsq, as QCG makes a job's wd
    assert (chain / "greeting.txt").read_text() == "hello from first\n"
    assert (chain / "second.log").read_text() == "HELLO FROM FIRST\ncores 2 nodes 1 in chain\nto-stderr\n"
    assert (chain / "third.out").read_text() == "hello from first\nthreads=2\n"
    jobs = statuses(tmp_path / "spool")
    assert {name: doc["state"] for name, doc in jobs.items()} == {
        "first": "SUCCEEDED", "second": "SUCCEEDED", "third": "SUCCEEDED"}
    assert jobs["second"]["stdout"] == str(chain / "second.log")
    assert_after(jobs, "second", "first")
    assert_after(jobs, "third", "second")


def test_the_example_runs_with_its_iterations(tmp_path: Path) -> None:
    """Needs fsqueue's sweeps: `iteration` becomes a sweep, `simulate:${it}` a per-iteration dependency."""
    result = run_fsq("run", "--format", "qcg", "--cores", "2", str(EXAMPLE), spool=tmp_path / "spool", cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    results = tmp_path / "work" / "results"
    sums = [sum(range(1, (i + 1) * 10 + 1)) for i in range(4)]
    for i, total in enumerate(sums):
        assert (results / f"simulate-{i}.out").read_text() == f"sample {i}: sum {total}\n"
        assert (results / f"analyse-{i}.out").read_text() == f"analyse {i}: sample {i}: sum {total} (1 core)\n"
    assert (results / "report.txt").read_text() == "".join(
        f"analyse {i}: sample {i}: sum {total} (1 core)\n" for i, total in enumerate(sums))
    assert (tmp_path / "work" / "report.out").read_text() == "4\n"
    jobs = statuses(tmp_path / "spool")
    iterations = [f"{name}:{i}" for name in ("simulate", "analyse") for i in range(4)]
    assert all(jobs[name]["state"] == "SUCCEEDED" for name in ["prepare", "report", *iterations])
    for i in range(4):
        assert_after(jobs, f"simulate:{i}", "prepare")
        assert_after(jobs, f"analyse:{i}", f"simulate:{i}")
        assert_after(jobs, "report", f"analyse:{i}")


def test_submit_translates_and_says_what_it_does_not_pass_on(tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    result = run_fsq("submit", "--format", "qcg", str(EXAMPLE), spool=spool, cwd=tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    assert len(result.stdout.split()) == 4  # prepare, the two sweeps, report
    assert "finishAfterAllTasksDone is not passed on" in result.stderr.decode()
    (published,) = (spool / "incoming").glob("*.json")
    jobs = json.loads(published.read_text())
    assert [(job["name"], job.get("sweep"), job.get("after")) for job in jobs] == [
        ("prepare", None, None),
        ("simulate", {"range": {"start": 0, "stop": 4}}, ["prepare"]),
        ("analyse", {"range": {"start": 0, "stop": 4}}, ["simulate:${it}"]),
        ("report", None, ["analyse"]),
    ]
    assert all(job["wd"] == str(tmp_path / "work") for job in jobs) and (tmp_path / "work").is_dir()


def test_what_cannot_be_translated_is_refused_naming_the_qcg_field(tmp_path: Path) -> None:
    requests = tmp_path / "reqs.json"
    requests.write_text(json.dumps([{"request": "submit", "jobs": [
        {"name": "ok", "execution": {"exec": "true"}},
        {"name": "omp", "execution": {"exec": "prog", "model": "openmp"}}]}]))
    spool = tmp_path / "spool"
    result = run_fsq("submit", "--format", "qcg", "reqs.json", spool=spool, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.decode() == (
        "fsq: reqs.json: requests[0].jobs[1].execution.model: \"openmp\" is not supported; use default, threads, "
        "openmpi, intelmpi or srunmpi\n")
    assert not spool.exists() or not list((spool / "incoming").glob("*.json"))
    result = run_fsq("submit", "--format", "qcg", "--", "true", spool=spool, cwd=tmp_path)
    assert result.returncode == 2
    assert "--format goes with a job file" in result.stderr.decode()


@pytest.mark.skipif(not QCG_SERVICE.exists(), reason="QCG-PilotJob is not installed in /tmp/qcg-venv")
def test_the_example_gives_what_qcg_gives(tmp_path: Path) -> None:
    qcg_dir, fsq_dir = tmp_path / "qcg", tmp_path / "fsq"
    qcg_dir.mkdir()
    fsq_dir.mkdir()
    argv = [str(QCG_SERVICE), "--file-path", str(EXAMPLE), "--nodes", "2", "--wd", str(qcg_dir)]
    qcg = subprocess.run(argv, cwd=qcg_dir, capture_output=True, timeout=300, check=False)
    assert qcg.returncode == 0, qcg.stderr.decode()[-2000:]
    result = run_fsq("run", "--format", "qcg", "--cores", "2", str(EXAMPLE), spool=tmp_path / "spool", cwd=fsq_dir)
    assert result.returncode == 0, result.stderr.decode()

    def files(root: Path) -> dict[str, str]:
        return {str(path.relative_to(root)): path.read_text() for path in sorted((root / "work").rglob("*"))
                if path.is_file()}

    assert files(fsq_dir) == files(qcg_dir) and files(fsq_dir)
