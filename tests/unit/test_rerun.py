"""fsqueue.rerun: which ended jobs run again, and how their dependencies are pointed at each other."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from fsqueue import model
from fsqueue.rerun import Ended, plan, select
from fsqueue.spool import is_job_id


def job(job_id: str, state: str, name: str | None = None, after: list[Any] | None = None) -> Ended:
    document: dict[str, Any] = {"id": job_id, "exec": "true"}
    if name:
        document["name"] = name
    if after is not None:
        document["after"] = after
    return Ended(job_id, name, state, document)


def universe(*jobs: Ended) -> dict[str, Ended]:
    return {job.id: job for job in jobs}


def names_of(*jobs: Ended) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for one in jobs:
        if one.name:
            found.setdefault(one.name, []).append(one.id)
    return found


def new_ids() -> Any:
    return iter(f"new{n}" for n in range(100))


@pytest.mark.parametrize(("chosen", "expected"), [
    (["a"], ["a", "b", "c"]),        # skipped by id, and skipped after a skipped one, by name
    (["b"], ["b", "c"]),             # not upstream
    (["c"], ["c"]),
    (["x"], ["x"]),                  # an unrelated failure takes nothing along
    (["a", "x"], ["a", "b", "c", "x"]),
])
def test_select_takes_along_what_was_skipped_because_of_the_chosen_jobs(chosen: list[str], expected: list[str]) -> None:
    jobs = universe(job("a", "FAILED", "prep"),
                    job("b", "SKIPPED", "sim", after=["a"]),
                    job("c", "SKIPPED", "post", after=[{"job": "sim", "when": "afterok"}]),
                    job("d", "SUCCEEDED", "cleanup", after=[{"job": "a", "when": "afternotok"}]),
                    job("x", "TIMEOUT", "other"))
    assert select(jobs, chosen) == expected


def test_plan_gives_new_ids_and_points_references_by_id_at_the_new_jobs() -> None:
    jobs = universe(job("a", "FAILED"), job("b", "SKIPPED", after=["a", {"job": "z", "when": "afterany"}]))
    documents = plan(jobs, ["a", "b"], new_ids(), {})
    assert documents == [{"id": "new0", "exec": "true", "rerun_of": "a"},
                         {"id": "new1", "exec": "true", "after": ["new0", {"job": "z", "when": "afterany"}],
                          "rerun_of": "b"}]


def test_a_name_carried_by_a_job_run_again_becomes_every_job_of_that_name() -> None:
    # Two jobs named "prep": one succeeded, one failed. The name would bind to both old ones, the
    # failed one included; it now names the one that succeeded and the new one.
    ok, failed = job("p1", "SUCCEEDED", "prep"), job("p2", "FAILED", "prep")
    waiting = job("w", "SKIPPED", "sim", after=[{"job": "prep", "when": "afterany"}, "setup"])
    jobs = universe(failed, waiting)  # what the client reads documents for: chosen jobs and skipped ones
    documents = plan(jobs, select(jobs, ["p2"]), new_ids(), names_of(ok, failed, waiting))
    assert [doc["id"] for doc in documents] == ["new0", "new1"]
    assert documents[0]["name"] == "prep"
    # "setup" is carried by no job run again: kept as a name, free to bind to a later job.
    assert documents[1]["after"] == [{"job": "p1", "when": "afterany"}, {"job": "new0", "when": "afterany"}, "setup"]


def test_a_job_with_no_after_gets_none_and_the_documents_are_new_objects() -> None:
    original = job("a", "FAILED", "solo")
    [document] = plan(universe(original), ["a"], new_ids(), names_of(original))
    assert document == {"id": "new0", "exec": "true", "name": "solo", "rerun_of": "a"}
    assert original.document["id"] == "a", "the accepted document is not changed"


def test_an_iteration_runs_again_as_a_plain_job_under_its_iteration_name() -> None:
    iteration = Ended("s1.3", "sim:3", "FAILED",
                      {"id": "s1.3", "name": "sim:3", "exec": "./sim", "args": ["--seed", "3"], "after": ["prep:3"]})
    [document] = plan(universe(iteration), ["s1.3"], new_ids(), {"sim:3": ["s1.3"]})
    assert document == {"id": "new0", "name": "sim:3", "exec": "./sim", "args": ["--seed", "3"], "after": ["prep:3"],
                        "rerun_of": "s1.3"}


def test_references_read_both_forms_of_after() -> None:
    waiting = job("w", "SKIPPED", after=["a", {"job": "prep", "when": "afterok"}, {"job": "b"}])
    assert waiting.references() == ["a", "prep", "b"]


REFERENCE = "0123456789abcdef"


@pytest.mark.parametrize("suffix", ["", ".0", ".7", ".10", ".1234567", ".007", ".00", ".12345678", ".", ".-1", "\n",
                                    ".1\n", "x"])
def test_the_schema_takes_as_rerun_of_exactly_what_the_spool_calls_a_job_id(suffix: str) -> None:
    candidate = REFERENCE + suffix
    in_schema = jsonschema.Draft202012Validator(model.job_schema()).is_valid({"exec": "a", "rerun_of": candidate})
    assert in_schema == is_job_id(candidate)
