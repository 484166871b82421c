"""Sweeps with a real manager and real processes: substitution, per-iteration dependencies, counts,
cancel, a 100,000-iteration sweep held in a window, and recovery after kill -9."""

from __future__ import annotations

import json
import os
import signal

from fsqueue.launcher import job_process_groups
from fsqueue.spool import Spool, read_json
from tests.conftest import run_fsq, wait_until
from tests.integration.test_workflows import submit_jobs


def test_a_range_sweep_substitutes_it_everywhere_and_reports_one_item(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    out = tmp_path / "out"
    out.mkdir()
    [sweep] = submit_jobs(manager, [{
        "name": "sq", "exec": "bash", "args": ["-c", "echo $((${it} * ${it})) $FSQ_JOB_NAME $P $FSQ_ITERATION", "${index}"],
        "env": {"P": "p${it}"}, "wd": str(out), "stdout": "sq.${it}.out",
        "sweep": {"range": {"start": 3, "stop": 9, "step": 2}},
    }])
    status = manager.wait_final(sweep)
    assert status["state"] == "SUCCEEDED" and status["sweep"] == {"total": 3, "counts": {"SUCCEEDED": 3}}
    assert {p.name: p.read_text() for p in out.iterdir()} == {
        "sq.3.out": "9 sq:3 p3 0\n", "sq.5.out": "25 sq:5 p5 1\n", "sq.7.out": "49 sq:7 p7 2\n"}
    for index, value in enumerate((3, 5, 7)):
        iteration = manager.status(f"{sweep}.{index}")
        assert iteration["state"] == "SUCCEEDED" and iteration["name"] == f"sq:{value}"
        assert iteration["iteration"] == {"sweep": sweep, "index": index}
    listed = json.loads(run_fsq("status", "--json", sweep, spool=manager.spool, check=True).stdout)
    assert listed["sweep"]["total"] == 3


def test_per_iteration_dependencies_pair_iterations(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    [a, b, after_all] = submit_jobs(manager, [
        {"name": "A", "script": f"sleep 0.0${{it}}; echo a > {tmp_path}/a.${{it}}",
         "sweep": {"values": [4, 1, 3, 2]}},
        {"name": "B", "script": f"cat {tmp_path}/a.${{it}} > {tmp_path}/b.${{it}}", "after": ["A:${it}"],
         "sweep": {"values": [4, 1, 3, 2]}},
        {"name": "end", "script": f"ls {tmp_path} | grep -c '^b' > {tmp_path}/count", "after": ["B"]},
    ])
    assert manager.wait_final(after_all)["state"] == "SUCCEEDED"
    assert (tmp_path / "count").read_text() == "4\n"
    for index in range(4):
        first, second = manager.status(f"{a}.{index}"), manager.status(f"{b}.{index}")
        assert second["start_time"] >= first["end_time"]
    assert manager.status(b)["state"] == "SUCCEEDED"


def test_a_failed_iteration_skips_its_partner_and_fails_the_sweep(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    [a, b] = submit_jobs(manager, [
        {"name": "A", "script": "[ ${it} != 2 ]", "sweep": {"range": {"stop": 4}}},
        {"name": "B", "exec": "true", "after": ["A:${it}"], "sweep": {"range": {"stop": 4}}},
    ])
    first, second = manager.wait_final(a), manager.wait_final(b)
    assert first["state"] == "FAILED" and first["reason"] == "1 of 4 iterations did not succeed (1 FAILED)"
    assert second["state"] == "FAILED" and second["sweep"]["counts"] == {"SKIPPED": 1, "SUCCEEDED": 3}
    skipped = manager.status(f"{b}.2")
    assert skipped["state"] == "SKIPPED" and skipped["reason"] == f"dependency A:2 ({a}.2) ended FAILED; this job needed afterok"


def test_named_parameters_from_a_product_and_from_a_file(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    params = tmp_path / "params.tsv"
    params.write_text("alpha beta\n1 x\n2 y\n")
    params.chmod(0o600)
    [product, from_file] = submit_jobs(manager, [
        {"script": f"echo ${{a}}${{b}} >> {tmp_path}/product", "sweep": {"product": {"a": [1, 2], "b": ["u", "v"]}}},
        {"script": f"echo ${{alpha}}${{beta}} >> {tmp_path}/file", "sweep": {"file": str(params), "header": True}},
    ])
    assert manager.wait_final(product)["state"] == manager.wait_final(from_file)["state"] == "SUCCEEDED"
    assert sorted((tmp_path / "product").read_text().split()) == ["1u", "1v", "2u", "2v"]
    assert sorted((tmp_path / "file").read_text().split()) == ["1x", "2y"]


def test_a_parameter_file_others_could_write_is_refused_by_the_manager(start_manager, tmp_path):
    """Dropped by a bash client, so that the manager (not fsq submit) reads the file."""
    manager = start_manager("--cores", "1")
    params = tmp_path / "params.txt"
    params.write_text("1\n")
    params.chmod(0o666)
    job = {"exec": "true", "sweep": {"file": str(params)}}
    Spool(manager.spool).publish(Spool(manager.spool).incoming, "p.json", json.dumps(job).encode())
    receipt = wait_until(lambda: read_json(manager.spool / "receipts" / "p.json"))
    assert receipt["state"] == "REJECTED"
    assert "sweep.file: cannot use" in receipt["reason"] and "other users could have written it" in receipt["reason"]


def test_a_huge_sweep_is_made_lazily_and_cancel_ends_it_whole(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    [sweep] = submit_jobs(manager, [{"name": "big", "script": "sleep 30", "sweep": {"range": {"stop": 100_000}}}])
    wait_until(lambda: manager.status(sweep) and manager.status(sweep)["state"] == "RUNNING")
    info = wait_until(lambda: (info := manager.info() or {}).get("counts", {}).get("RUNNING")
                      == 2 and info)
    assert info["counts"] == {"QUEUED": 99_998, "RUNNING": 2}
    status_files = os.listdir(manager.spool / "status")
    assert len(status_files) < 100, "only the sweep and the iterations that started have status files"
    run_fsq("cancel", sweep, spool=manager.spool, check=True)
    final = manager.wait_final(sweep)
    assert final["state"] == "CANCELED" and final["sweep"] == {"total": 100_000, "counts": {"CANCELED": 100_000}}
    counts = wait_until(lambda: (info := manager.info() or {}).get("counts", {}).get(
                        "CANCELED") == 100_000 and info["counts"])
    assert counts == {"CANCELED": 100_000}
    # An iteration that never started has no file of its own; fsq status answers for it from the sweep.
    never = json.loads(run_fsq("status", "--json", f"{sweep}.99999", spool=manager.spool, check=True).stdout)
    assert never["state"] == "CANCELED" and never["iteration"] == {"sweep": sweep, "index": 99_999}


def test_a_restarted_manager_runs_only_the_iterations_that_had_not_ended(start_manager, tmp_path):
    manager = start_manager("--cores", "2")
    log = tmp_path / "runs"
    [sweep] = submit_jobs(manager, [{
        "script": f"echo ${{it}} >> {log}; [ ${{it}} -lt 4 ] || sleep 60", "sweep": {"range": {"stop": 6}},
    }])
    wait_until(lambda: log.exists() and len(log.read_text().split()) == 6, describe=lambda: log.read_text())
    wait_until(lambda: (manager.status(sweep) or {}).get("sweep", {}).get("counts") == {"RUNNING": 2, "SUCCEEDED": 4},
               describe=lambda: str(manager.status(sweep)))
    os.kill(manager.proc.pid, signal.SIGKILL)
    manager.proc.wait(timeout=10)
    # The orphans of the killed manager, found as the next manager would find them: by their environment.
    for group in job_process_groups(os.path.abspath(manager.spool), {f"{sweep}.4", f"{sweep}.5"}):
        os.killpg(group, signal.SIGKILL)
    log.write_text("")
    restarted = start_manager("--cores", "2", spool=manager.spool)
    wait_until(lambda: len(log.read_text().split()) == 2, describe=lambda: log.read_text())
    assert sorted(log.read_text().split()) == ["4", "5"]
    # A RUNNING iteration's file appears once it has run a moment (Settings.write_delay).
    wait_until(lambda: (restarted.status(f"{sweep}.4") or {}).get("attempt") == 2,
               describe=lambda: str(restarted.status(f"{sweep}.4")))
    run_fsq("cancel", sweep, spool=manager.spool, check=True)
    final = restarted.wait_final(sweep)
    assert final["sweep"]["counts"] == {"CANCELED": 2, "SUCCEEDED": 4}


def test_a_sweep_accepted_just_before_a_crash_runs_under_the_next_manager(start_manager, tmp_path):
    """Its accepted file is on disk, and nothing else: no status file, no journal record."""
    from fsqueue import model
    from fsqueue.spool import IdMaker, Spool

    spool = Spool.create(tmp_path / "spool")
    [spec] = model.parse_jobs({"name": "s", "script": f"echo ${{it}} >> {tmp_path}/out",
                               "sweep": {"range": {"stop": 3}}}, IdMaker().many())
    (spool.accepted / "a.json").write_bytes(json.dumps(spec.document).encode())
    manager = start_manager("--cores", "2", spool=spool.root)
    assert manager.wait_final(spec.id)["state"] == "SUCCEEDED"
    assert sorted((tmp_path / "out").read_text().split()) == ["0", "1", "2"]


def test_fsq_submit_refuses_a_parameter_file_others_could_write(tmp_path):
    """The same rule as the manager's: fsq submit reads the file, and the manager never sees it."""
    params = tmp_path / "params.txt"
    params.write_text("1\n")
    params.chmod(0o664)
    job = {"exec": "true", "sweep": {"file": str(params)}}
    result = run_fsq("submit", "-", spool=tmp_path / "spool", input=json.dumps(job).encode())
    assert result.returncode == 2
    assert "sweep.file: cannot use" in result.stderr.decode() and "run `chmod go-w`" in result.stderr.decode()
    assert not list((tmp_path / "spool" / "incoming").iterdir())
