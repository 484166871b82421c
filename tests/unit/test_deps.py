"""Dependencies between jobs (fsqueue.deps): pure, so every case runs in memory."""

from __future__ import annotations

import pytest

from fsqueue.deps import After, Dependencies, met
from fsqueue.spool import IdMaker, is_job_id

IDS = IdMaker()


def new() -> Dependencies:
    return Dependencies(is_job_id)


@pytest.mark.parametrize(
    ("when", "state", "expected"),
    [("afterok", "SUCCEEDED", True), ("afterok", "FAILED", False), ("afterok", "SKIPPED", False),
     ("afternotok", "FAILED", True), ("afternotok", "TIMEOUT", True), ("afternotok", "SUCCEEDED", False),
     ("afterany", "SUCCEEDED", True), ("afterany", "CANCELED", True)],
)
def test_conditions(when, state, expected):
    assert met(when, state) is expected


def test_a_job_without_dependencies_is_ready_at_once():
    deps = new()
    assert deps.add("a", "a", []).ready == ("a",)


def test_chain_of_a_thousand_runs_link_by_link():
    deps = new()
    ids = [IDS() for _ in range(1000)]
    assert deps.add(ids[0], None, []).ready == (ids[0],)
    for previous, job in zip(ids, ids[1:]):
        assert deps.add(job, None, [After(previous)]).ready == ()
    for previous, job in zip(ids, ids[1:]):
        assert deps.ended(previous, "SUCCEEDED").ready == (job,)


def test_diamond_waits_for_both_branches():
    deps = new()
    deps.add("top", "top", [])
    deps.add("left", "left", [After("top")])
    deps.add("right", "right", [After("top")])
    assert deps.add("bottom", "bottom", [After("left"), After("right")]).ready == ()
    assert sorted(deps.ended("top", "SUCCEEDED").ready) == ["left", "right"]
    assert deps.ended("left", "SUCCEEDED").ready == ()
    assert deps.waiting_for("bottom") == "waiting for right (right), afterok"
    assert deps.ended("right", "SUCCEEDED").ready == ("bottom",)


def test_fan_out_and_fan_in_of_a_thousand_by_name():
    deps = new()
    deps.add("root", "root", [])
    workers = [f"w{i}" for i in range(1000)]
    for worker in workers:
        deps.add(worker, "worker", [After("root")])
    deps.add("gather", "gather", [After("worker")])  # a name: every job named worker
    assert sorted(deps.ended("root", "SUCCEEDED").ready) == sorted(workers)
    for worker in workers[:-1]:
        assert deps.ended(worker, "SUCCEEDED").ready == ()
    assert deps.ended(workers[-1], "SUCCEEDED").ready == ("gather",)


def test_failure_dooms_everything_downstream_with_reasons():
    deps = new()
    deps.add("a", "a", [])
    deps.add("b", "b", [After("a")])
    deps.add("c", "c", [After("b")])
    deps.add("cleanup", "cleanup", [After("a", "afterany")])
    deps.add("handler", "handler", [After("a", "afternotok")])
    outcome = deps.ended("a", "FAILED")
    assert sorted(outcome.ready) == ["cleanup", "handler"]
    doomed = dict(outcome.doomed)
    assert doomed["b"] == "dependency a (a) ended FAILED; this job needed afterok"
    assert doomed["c"] == "dependency b (b) was skipped; first cause: dependency a (a) ended FAILED; this job needed afterok"


def test_afterany_on_a_skipped_job_runs_and_a_long_chain_fails_without_recursion():
    deps = new()
    deps.add("root", "root", [])
    deps.add("skipped", "skipped", [After("root")])
    deps.add("cleanup", "cleanup", [After("skipped", "afterany")])
    ids = [IDS() for _ in range(20_000)]
    deps.add(ids[0], None, [After("root")])
    for previous, job in zip(ids, ids[1:]):
        deps.add(job, None, [After(previous)])
    outcome = deps.ended("root", "FAILED")
    assert outcome.ready == ("cleanup",)
    assert len(outcome.doomed) == 20_001  # skipped, and the whole chain
    reasons = dict(outcome.doomed)
    assert reasons[ids[0]] == "dependency root (root) ended FAILED; this job needed afterok"
    assert all(reasons[job].endswith("first cause: dependency root (root) ended FAILED; this job needed afterok")
               for job in ids[1:])


def test_a_success_dooms_an_afternotok_handler():
    deps = new()
    deps.add("a", "a", [])
    deps.add("handler", "handler", [After("a", "afternotok")])
    assert [job for job, _ in deps.ended("a", "SUCCEEDED").doomed] == ["handler"]


def test_a_dependency_on_a_job_that_already_ended_is_judged_at_once():
    deps = new()
    deps.known("old", "old", ended="SUCCEEDED")
    deps.known("bad", "bad", ended="FAILED")
    assert deps.add("x", "x", [After("old")]).ready == ("x",)
    assert [job for job, _ in deps.add("y", "y", [After("bad")]).doomed] == ["y"]


def test_forward_reference_by_name_binds_when_the_job_arrives():
    deps = new()
    assert deps.add("later", "later", [After("prep")]).ready == ()
    assert deps.waiting_for("later") == "waiting for a job named 'prep' to be submitted"
    outcome = deps.add("prep", "prep", [])
    assert outcome.ready == ("prep",)
    assert deps.waiting_for("later") == "waiting for prep (prep), afterok"
    assert deps.ended("prep", "SUCCEEDED").ready == ("later",)


def test_forward_reference_by_id():
    deps = new()
    future = IDS()
    deps.add("x", "x", [After(future)])
    assert deps.waiting_for("x") == f"waiting for {future}, afterok"
    deps.add(future, None, [])
    assert deps.ended(future, "SUCCEEDED").ready == ("x",)


def test_a_cycle_is_skipped_with_the_path():
    deps = new()
    deps.add("a", "a", [After("c")])
    deps.add("b", "b", [After("a")])
    outcome = deps.add("c", "c", [After("b")])
    doomed = dict(outcome.doomed)
    assert set(doomed) == {"a", "b", "c"}
    assert any("dependency cycle: " in reason for reason in doomed.values())


def test_a_job_depending_on_its_own_name_is_not_a_cycle():
    deps = new()
    assert deps.add("a", "same", []).ready == ("a",)
    assert deps.add("b", "same", [After("same")]).ready == ()  # waits for a, not for itself
    assert deps.ended("a", "SUCCEEDED").ready == ("b",)


def test_forget_removes_a_canceled_waiter():
    deps = new()
    deps.add("a", "a", [])
    deps.add("b", "b", [After("a")])
    deps.forget("b")
    outcome = deps.ended("a", "SUCCEEDED")
    assert outcome.ready == () and outcome.doomed == ()
