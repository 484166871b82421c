"""`fsq report` on a real run (jobs that succeed, fail, die by a signal, span nodes, never fit), and at scale."""

from __future__ import annotations

import heapq
import json
import random
import re
import time
from pathlib import Path
from typing import Any

import pytest

from fsqueue import client, report, report_html
from fsqueue.joblog import read_joblog
from fsqueue.launcher import LocalLauncher
from fsqueue.manager import Manager, Settings
from fsqueue.resources import parse_nodes_option
from fsqueue.serve import run
from fsqueue.spool import Spool
from tests.conftest import run_fsq

ESCAPED_NAME = '<b>"x" & y<b>'


def run_jobs(root: Path, jobs: list[dict[str, Any]], nodes: str = "n1:2,n2:2") -> Spool:
    """Submit `jobs` and run them to the end with an in-process manager in drain mode."""
    spool = Spool.create(root)
    client.submit(spool.root, jobs, wd=str(root.parent))
    manager = Manager(spool, parse_nodes_option(nodes), Settings(poll=0.05, drain=True, watch=False),
                      {"PATH": "/usr/bin:/bin"}, {"host": "test", "pid": 0}, LocalLauncher())
    run(manager, stop_signals=())
    return spool


MIXED: list[dict[str, Any]] = [
    {"name": "quick", "exec": "true"},
    {"name": "slow", "script": "sleep 0.3"},
    {"name": "exit3", "script": "echo oops >&2; exit 3"},
    {"name": "killed", "script": "kill -9 $$"},
    {"name": "pair", "script": "sleep 0.1", "resources": {"nodes": 2, "cores": 1}},
    {"name": "wide", "script": "sleep 0.1", "resources": {"cores": 2}},
    {"name": ESCAPED_NAME, "exec": "true"},
    {"name": "too-big", "exec": "true", "resources": {"cores": 3}},
]


@pytest.fixture(scope="module")
def mixed_run(tmp_path_factory: pytest.TempPathFactory) -> Spool:
    return run_jobs(tmp_path_factory.mktemp("mixed") / "spool", MIXED)


def report_json(spool: Spool) -> dict[str, Any]:
    result = run_fsq("report", "--format", "json", spool=spool.root, check=True)
    return json.loads(result.stdout)


def test_json_report_of_a_mixed_run(mixed_run):
    doc = report_json(mixed_run)
    assert doc["version"] == 1 and doc["spool"] == str(mixed_run.root)
    assert doc["jobs"] == {"total": 8, "finished": 8, "counts": {"FAILED": 2, "REJECTED": 1, "SUCCEEDED": 5}}
    assert doc["nodes"] == [{"name": "n1", "cores": 2}, {"name": "n2", "cores": 2}]
    assert doc["manager"]["alive"] is False and doc["manager"]["phase"] == "stopped"
    bars = doc["timeline"]["bars"]
    assert doc["timeline"]["mode"] == "bars" and len(bars) == 7 == doc["attempts"]["total"]
    by_name = {bar["name"]: bar for bar in bars}
    assert "too-big" not in by_name and set(by_name["pair"]["cores"]) == {"n1", "n2"}
    assert sum(map(len, by_name["wide"]["cores"].values())) == 2
    assert all(bar["start"] <= bar["end"] and not bar["running"] for bar in bars)
    assert doc["span"]["start"] <= min(bar["start"] for bar in bars) <= max(bar["end"] for bar in bars) <= doc["span"]["end"]
    assert doc["run_time"]["count"] == 7 and doc["queue_wait"]["count"] == 7
    # The run's own record, not a duration the test expects: the longest attempt of the joblog.
    assert doc["run_time"]["max"] == pytest.approx(max(_run_times(mixed_run).values()))
    assert sum(doc["run_time"]["histogram"]["counts"]) == 7


def test_the_failed_jobs_come_with_exit_codes_and_log_paths(mixed_run):
    failed = report_json(mixed_run)["failed"]
    assert failed["total"] == 2
    by_name = {job["name"]: job for job in failed["jobs"]}
    assert (by_name["exit3"]["exit_code"], by_name["exit3"]["signal"], by_name["exit3"]["reason"]) == (3, None, "exit code 3")
    assert (by_name["killed"]["exit_code"], by_name["killed"]["signal"]) == (None, 9)
    assert Path(by_name["exit3"]["stderr"]).read_text() == "oops\n"
    assert all(Path(job["stdout"]).is_file() for job in failed["jobs"])


def test_the_slowest_jobs_are_in_order(mixed_run):
    slowest = report_json(mixed_run)["slowest"]
    times = [job["run_time"] for job in slowest]
    run_times = _run_times(mixed_run)
    assert slowest[0]["id"] == max(run_times, key=run_times.__getitem__)
    assert times == sorted(times, reverse=True) and len(slowest) == 7


def _run_times(spool: Spool) -> dict[str, float]:
    """Each attempt's run time, from the joblog: job id -> end - start."""
    return {row["id"]: row["end_time"] - row["start_time"] for row in read_joblog(spool.joblog)
            if row["start_time"] is not None}


def test_utilization_adds_up_to_the_core_seconds_used(mixed_run):
    doc = report_json(mixed_run)
    utilization = doc["utilization"]
    assert len(utilization["busy"]) == report.BINS and max(utilization["busy"]) <= doc["cores"]["total"] + 1e-6
    used = sum(utilization["busy"]) * utilization["bin_seconds"]
    assert used == pytest.approx(doc["cores"]["busy_core_seconds"], rel=1e-2, abs=1e-3)


def test_html_report_is_one_self_contained_file(mixed_run, tmp_path):
    out = tmp_path / "report.html"
    result = run_fsq("report", "-o", str(out), spool=mixed_run.root, check=True)
    assert f"wrote {out}" in result.stderr.decode() and not result.stdout
    page = out.read_text()
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"https?://", page), "nothing may be fetched: the page opens offline"
    assert not re.search(r"""(?:src|href)=["'](?!data:)""", page) and "<script src" not in page
    assert page.count('<g class="bar"') == 7
    assert ESCAPED_NAME not in page and "&lt;b&gt;&quot;x&quot; &amp; y&lt;b&gt;" in page
    embedded = re.search(r'<script type="application/json" id="fsq-report">(.*?)</script>', page, re.DOTALL)
    assert embedded, "the report document is embedded for the numbers behind the page"
    inline = json.loads(embedded.group(1))
    assert inline["jobs"] == report_json(mixed_run)["jobs"] and inline["timeline"]["mode"] == "bars"


def test_without_a_joblog_the_status_files_suffice(mixed_run, tmp_path):
    with_log = report_json(mixed_run)
    copy = Spool.create(tmp_path / "copy")
    for job_id in mixed_run.status_ids():
        copy.write_status(job_id, mixed_run.read_status(job_id) or {})
    without = report_json(copy)
    assert not copy.joblog.exists() and without["jobs"] == with_log["jobs"]
    def key(bar: dict[str, Any]) -> tuple[Any, ...]:
        return bar["id"], bar["state"], bar["exit_code"], bar["signal"], bar["cores"]

    assert sorted(map(key, without["timeline"]["bars"])) == sorted(map(key, with_log["timeline"]["bars"]))


def test_the_joblog_of_the_run_has_a_line_per_job(mixed_run):
    rows = read_joblog(mixed_run.joblog)
    assert sorted(row["name"] for row in rows) == sorted(job["name"] for job in MIXED)
    rejected = next(row for row in rows if row["name"] == "too-big")
    assert rejected["state"] == "REJECTED" and rejected["start_time"] is None and rejected["cores"] == 0


def test_report_errors(tmp_path):
    missing = run_fsq("report", "--format", "json", spool=tmp_path / "nowhere")
    assert missing.returncode == 2 and "no spool at" in missing.stderr.decode()
    Spool.create(tmp_path / "empty")
    empty = run_fsq("report", "--format", "json", spool=tmp_path / "empty", check=True)
    doc = json.loads(empty.stdout)
    assert doc["jobs"]["total"] == 0 and doc["span"]["start"] is None and doc["timeline"]["bars"] == []
    unwritable = run_fsq("report", "-o", str(tmp_path / "no" / "dir" / "r.html"), spool=tmp_path / "empty")
    assert unwritable.returncode == 2 and "cannot write the report" in unwritable.stderr.decode()
    assert "no job in this spool yet" in report_html.render(doc)


# -- data without a manager: running jobs, requeues, scale ---------------------------------------------


def status(job_id: str, state: str, start: float | None, end: float | None, **extra: Any) -> dict[str, Any]:
    return {"id": job_id, "name": extra.pop("name", None), "state": state, "attempt": extra.pop("attempt", 1),
            "exit_code": extra.pop("exit_code", 0 if state == "SUCCEEDED" else None), "signal": None,
            "reason": None, "submit_time": 0.0, "start_time": start, "end_time": end,
            "nodes": ["n1"] if start is not None else [], "cores": {"n1": [0]} if start is not None else {},
            "stdout": f"/o/{job_id}.out", "stderr": f"/o/{job_id}.err", **extra}


def row(job_id: str, state: str, start: float | None, end: float | None, attempt: int = 1) -> dict[str, Any]:
    return {"id": job_id, "name": None, "attempt": attempt, "state": state, "exit_code": None, "signal": None,
            "submit_time": 0.0, "start_time": start, "end_time": end,
            "run_time": end - start if start is not None and end is not None else None,
            "nodes": ["n1"], "cores": 1, "placement": {"n1": [0]}, "reason": None}


def inputs(statuses: list[dict[str, Any]], rows: list[dict[str, Any]], now: float,
           nodes: list[dict[str, Any]] | None = None) -> report.Inputs:
    view = client.ManagerView({"phase": "serving"}, True, "manager serving")
    return report.Inputs("/spool", statuses, rows, view, now, nodes or [{"name": "n1", "cores": 2, "busy": 1}])


def test_running_jobs_reach_now_and_requeued_attempts_are_counted():
    statuses = [status("a", "RUNNING", 10.0, None, attempt=2), status("b", "SUCCEEDED", 2.0, 4.0),
                status("c", "SUCCEEDED", 1.0, 3.0), status("q", "QUEUED", None, None)]
    rows = [row("a", "QUEUED", 1.0, None), row("c", "SUCCEEDED", 1.0, 3.0)]
    doc = report.assemble(inputs(statuses, rows, now=20.0))
    bars = {bar["id"]: bar for bar in doc["timeline"]["bars"]}
    assert set(bars) == {"a", "b", "c"}  # b from its status file, c once, q never ran
    assert bars["a"]["running"] and bars["a"]["end"] == 20.0 and bars["a"]["attempt"] == 2
    assert doc["attempts"] == {"total": 3, "requeued": 1} and doc["span"]["end"] == 20.0
    assert doc["run_time"]["count"] == 2  # a running job has no run time yet
    assert "running now" in report_html.render(doc)


def synthetic(count: int, nodes: int = 16, cores: int = 32, seed: int = 1) -> report.Inputs:
    """`count` jobs of log-normal length packed onto nodes x cores, 1% failed, as status files and joblog."""
    rng = random.Random(seed)
    start = 1_800_000_000.0
    free = [(start, node, core) for node in range(nodes) for core in range(cores)]
    statuses, rows = [], []
    for n in range(count):
        at, node, core = heapq.heappop(free)
        end = at + rng.lognormvariate(1.0, 0.8)
        state = "FAILED" if rng.random() < 0.01 else "SUCCEEDED"
        name, job_id = f"node{node:02d}", f"{n:016d}"
        doc = status(job_id, state, at, end, exit_code=1 if state == "FAILED" else 0, nodes=[name],
                     cores={name: [core]}, submit_time=start)
        statuses.append(doc)
        rows.append({**row(job_id, state, at, end), "exit_code": doc["exit_code"], "nodes": [name],
                     "placement": {name: [core]}, "submit_time": start})
        heapq.heappush(free, (end, node, core))
    heartbeat = [{"name": f"node{node:02d}", "cores": cores, "busy": 0} for node in range(nodes)]
    return report.Inputs("/spool", statuses, rows, client.ManagerView({"phase": "stopped"}, False, "stopped"),
                         start + 100_000, heartbeat)


def test_a_hundred_thousand_jobs_are_aggregated_and_stay_small():
    data = synthetic(100_000)
    started = time.monotonic()
    doc = report.assemble(data)
    page = report_html.render(doc)
    elapsed = time.monotonic() - started
    timeline = doc["timeline"]
    assert timeline["mode"] == "density" and "bars" not in timeline
    assert len(timeline["nodes"]) == 16 and all(len(bins) == report.BINS for bins in timeline["nodes"].values())
    assert len(timeline["failures"]) == min(doc["jobs"]["counts"]["FAILED"], report.MARK_LIMIT)
    assert doc["failed"]["total"] == doc["jobs"]["counts"]["FAILED"] and len(doc["failed"]["jobs"]) == report.TABLE_LIMIT
    per_node = sum(sum(bins) for bins in timeline["nodes"].values())
    assert per_node == pytest.approx(sum(doc["utilization"]["busy"]), rel=1e-3)
    assert max(max(bins) for bins in timeline["nodes"].values()) <= 32 + 1e-6
    assert len(page) < 2_000_000 and page.count('<g class="bar"') == 0
    assert f"the first {report.TABLE_LIMIT} of" in page.lower()
    print(f"\nassembling and rendering 100,000 jobs took {elapsed:.1f} s")  # a figure, not a test


def test_the_timeline_switches_to_aggregate_exactly_above_the_limit():
    assert report.assemble(synthetic(report.BAR_LIMIT, nodes=2, cores=4))["timeline"]["mode"] == "bars"
    assert report.assemble(synthetic(report.BAR_LIMIT + 1, nodes=2, cores=4))["timeline"]["mode"] == "density"
    many_cores = synthetic(10, nodes=1, cores=report.ROW_LIMIT + 1)
    assert report.assemble(many_cores)["timeline"]["mode"] == "density"


@pytest.mark.parametrize(("values", "log"), [([1.0] * 5, False), ([0.0, 1.0, 2.0, 3.0], False),
                                             ([0.01, 0.1, 1.0, 10.0, 100.0], True)])
def test_distributions(values, log):
    dist = report.distribution(values)
    assert dist["count"] == len(values) and dist["min"] == min(values) and dist["max"] == max(values)
    assert dist["p50"] == pytest.approx(sorted(values)[len(values) // 2] if len(values) % 2 else
                                        sum(sorted(values)[len(values) // 2 - 1:len(values) // 2 + 1]) / 2)
    assert sum(dist["histogram"]["counts"]) == len(values) and dist["histogram"]["log"] is log
    assert report.distribution([])["count"] == 0
