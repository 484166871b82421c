"""Sweeps as data: iteration variables, substitution, validation words, and the running counts."""

from __future__ import annotations

import itertools

import pytest

from fsqueue import model
from fsqueue.errors import InvalidJob
from fsqueue.model import JobState
from fsqueue.sweep import (
    Sweep,
    iteration_document,
    problems,
    substitute,
    values_from_lines,
)
from fsqueue.sweep_run import SweepRun

IDS = (f"0000000000000{n:03d}" for n in itertools.count())


def parse(job, read_text=None):
    return model.parse_jobs(job, iter(IDS), read_text)


@pytest.mark.parametrize("bounds", [
    {"stop": 5}, {"start": 2, "stop": 11, "step": 3}, {"start": 10, "stop": -3, "step": -4}, {"start": -2, "stop": 2},
])
def test_a_range_iterates_like_python_range(bounds):
    sweep = Sweep.parse({"range": bounds})
    expected = list(range(bounds.get("start", 0), bounds["stop"], bounds.get("step", 1)))
    assert len(sweep) == len(expected)
    assert [sweep.variables(i)["it"] for i in range(len(sweep))] == [str(v) for v in expected]
    assert [sweep.variables(i)["index"] for i in range(len(sweep))] == [str(i) for i in range(len(expected))]


def test_scalar_values_are_it_and_named_values_are_parameters():
    scalars = Sweep.parse({"values": ["a b", 7, 2.5, True]})
    assert [scalars.variables(i)["it"] for i in range(4)] == ["a b", "7", "2.5", "true"]
    named = Sweep.parse({"values": [{"alpha": 0.1, "mesh": "fine"}, {"alpha": 0.2, "mesh": "coarse"}]})
    assert named.variables(1) == {"it": "1", "index": "1", "alpha": "0.2", "mesh": "coarse"}


def test_a_product_is_every_combination_with_the_last_axis_fastest():
    axes = {"a": [1, 2, 3], "b": ["x", "y"], "c": [0.5, 1.5]}
    sweep = Sweep.parse({"product": axes})
    made = [{k: v for k, v in sweep.variables(i).items() if k not in ("it", "index")} for i in range(len(sweep))]
    combos = itertools.product(*axes.values())
    assert made == [{name: str(value) for name, value in zip(axes, combo, strict=True)} for combo in combos]
    assert len(sweep) == 12


def test_variables_refuse_an_index_outside_the_sweep():
    with pytest.raises(IndexError):
        Sweep.parse({"range": {"stop": 3}}).variables(3)


def test_substitution_replaces_only_sweep_variables():
    variables = {"it": "4", "index": "0", "alpha": "0.1"}
    assert substitute("run ${it} ${alpha} $it ${HOME} ${index}${it}", variables) == "run 4 0.1 $it ${HOME} 04"
    assert substitute("no variables", variables) == "no variables"


def test_an_iteration_document_substitutes_every_field_but_the_name():
    template = {
        "id": "s", "name": "sim", "exec": "./sim-${it}", "args": ["--a", "${alpha}"], "env": {"A": "${alpha}"},
        "wd": "/w/${it}", "stdin": "in.${it}", "stdout": "o.${it}", "stderr": "e.${it}",
        "after": ["prep:${it}", {"job": "mesh:${alpha}", "when": "afterany"}], "sweep": {"values": [1]},
        "resources": {"cores": 2}, "priority": 3,
    }
    document = iteration_document(template, "s.0", {"it": "7", "index": "0", "alpha": "0.5"})
    assert document == {
        "id": "s.0", "name": "sim:7", "exec": "./sim-7", "args": ["--a", "0.5"], "env": {"A": "0.5"},
        "wd": "/w/7", "stdin": "in.7", "stdout": "o.7", "stderr": "e.7",
        "after": ["prep:7", {"job": "mesh:0.5", "when": "afterany"}], "resources": {"cores": 2}, "priority": 3,
    }


def test_iteration_spec_is_a_job_with_a_derived_id():
    [spec] = parse({"name": "b", "script": "echo ${it}", "after": ["a:${it}"], "sweep": {"range": {"start": 5, "stop": 9}}})
    assert spec.sweep is not None and len(spec.sweep) == 4
    third = model.iteration_spec(spec, 2)
    assert third.id == f"{spec.id}.2" and third.name == "b:7" and third.iteration == (spec.id, 2)
    assert third.argv == ("bash", "-c", "echo 7", "b:7") and third.after == (("a:7", "afterok"),)
    assert third.sweep is None


@pytest.mark.parametrize("sweep, message", [
    ({}, "sweep: needs exactly one of range, values, product, file"),
    ({"range": {"stop": 3}, "values": [1]}, "sweep: needs exactly one of range, values, product, file"),
    ({"range": {"stop": 3}, "header": True}, "sweep.header: goes with file"),
    ({"range": {"start": 1, "stop": 4, "step": 0}}, "sweep.range.step: must not be 0"),
    ({"range": {"start": 5, "stop": 5}}, "sweep.range: has no iterations"),
    ({"range": {"stop": 2_000_000}}, "sweep.range: has 2000000 iterations; at most 1000000 per sweep"),
    ({"values": []}, "sweep.values: must not be empty"),
    ({"values": [1, {"a": 1}]}, "sweep.values: all scalars or all objects of named parameters, not a mix"),
    ({"values": [{"1a": 1}]}, "sweep.values[0].1a: a parameter name is letters, digits and _, not starting with a digit"),
    ({"values": [{"it": 1}]}, "sweep.values[0].it: ${it} is set by fsqueue; choose another name"),
    ({"values": ["a\x00b"]}, "sweep.values[0]: contains a NUL byte"),
    ({"product": {"index": [1]}}, "sweep.product.index: ${index} is set by fsqueue; choose another name"),
    ({"product": {"a": [1] * 1001, "b": [1] * 1000}}, "sweep.product: has 1001000 iterations; at most 1000000 per sweep"),
    ({"values": [[1]]}, "sweep.values[0]: must be a string or a number or an object, got array"),
    ({"range": {"start": 1}}, "sweep.range: needs 'stop'"),
    ({"steps": 3}, "sweep.steps: unknown field (known: file, header, product, range, values)"),
])
def test_bad_sweeps_are_rejected_naming_the_field(sweep, message):
    with pytest.raises(InvalidJob) as caught:
        parse({"exec": "true", "sweep": sweep})
    assert str(caught.value) == message


def test_a_parameter_file_becomes_values_in_the_accepted_job(tmp_path):
    params = tmp_path / "params.txt"
    params.write_text("# comment\n0.1\n\n 0.2 \n")
    [spec] = parse({"exec": "true", "wd": str(tmp_path), "sweep": {"file": "params.txt"}}, read_text=_read)
    assert spec.document["sweep"] == {"values": ["0.1", "0.2"]}
    assert [spec.sweep.variables(i)["it"] for i in range(2)] == ["0.1", "0.2"]


def test_a_parameter_file_with_a_header_gives_named_parameters(tmp_path):
    params = tmp_path / "p.tsv"
    params.write_text("alpha\tmesh\n0.1\tfine\n0.2 coarse\n")
    [spec] = parse({"exec": "true", "sweep": {"file": str(params), "header": True}}, read_text=_read)
    assert spec.document["sweep"] == {"values": [{"alpha": "0.1", "mesh": "fine"}, {"alpha": "0.2", "mesh": "coarse"}]}


@pytest.mark.parametrize("text, header, message", [
    ("", False, "has no iterations (blank lines and # comments are skipped)"),
    ("a b\n1\n", True, "line 2 has 1 columns; the header names 2"),
    ("it\n1\n", True, "header column 'it': ${it} is set by fsqueue; choose another name"),
])
def test_bad_parameter_files_are_rejected_with_the_reason(tmp_path, text, header, message):
    params = tmp_path / "p.txt"
    params.write_text(text)
    with pytest.raises(InvalidJob) as caught:
        parse({"exec": "true", "sweep": {"file": str(params), "header": header}}, read_text=_read)
    assert str(caught.value).startswith("sweep.file: ") and message in str(caught.value)


def test_a_parameter_file_is_held_to_the_limits_of_values_written_in_the_job(tmp_path):
    params = tmp_path / "wide.tsv"
    columns = [f"p{n}" for n in range(33)]  # one parameter more than a job may name
    params.write_text("\t".join(columns) + "\n" + "\t".join("1" for _ in columns) + "\n")
    with pytest.raises(InvalidJob, match=r"sweep\.values\[0\]"):
        parse({"exec": "true", "sweep": {"file": str(params), "header": True}}, read_text=_read)


def test_a_missing_parameter_file_says_so(tmp_path):
    with pytest.raises(InvalidJob, match=r"sweep.file: cannot use .*/nope.txt: No such file or directory"):
        parse({"exec": "true", "wd": str(tmp_path), "sweep": {"file": "nope.txt"}}, read_text=_read)


def test_values_from_lines_without_header_keeps_whole_lines():
    assert values_from_lines("a b\n\n#x\nc\n", header=False) == ["a b", "c"]


def test_problems_is_empty_for_good_sweeps():
    assert problems({"range": {"stop": 3}}) == [] and problems({"product": {"a": [1, 2]}}) == []


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as handle:
        return handle.read()


# -- SweepRun -------------------------------------------------------------------------------------


def test_take_keeps_a_window_of_iterations_queued():
    run = SweepRun.start("s", total=10)
    made = list(run.take(4))
    assert made == [0, 1, 2, 3]
    for index in made:
        run.changed(f"s.{index}", None, JobState.QUEUED)
    assert list(run.take(4)) == [] and run.unmade == 6
    run.changed("s.0", JobState.QUEUED, JobState.RUNNING)
    assert list(run.take(4)) == [4]
    assert run.view() == {"total": 10, "counts": {"QUEUED": 9, "RUNNING": 1}}


def test_done_iterations_are_never_made_again_and_count_as_ended():
    run = SweepRun.start("s", total=5, ended={1: "SUCCEEDED", 3: "FAILED"})
    assert list(run.take(10)) == [0, 2, 4]
    assert run.view()["counts"] == {"FAILED": 1, "QUEUED": 3, "SUCCEEDED": 1}


def test_a_sweep_ends_when_every_iteration_ended_with_a_state_that_sums_them_up():
    run = SweepRun.start("s", total=3)
    for index in run.take(3):
        run.changed(f"s.{index}", None, JobState.QUEUED)
        run.changed(f"s.{index}", JobState.QUEUED, JobState.RUNNING)
    run.changed("s.0", JobState.RUNNING, JobState.SUCCEEDED)
    run.changed("s.1", JobState.RUNNING, JobState.SUCCEEDED)
    assert not run.finished
    run.changed("s.2", JobState.RUNNING, JobState.FAILED)
    assert run.finished and run.live == set()
    assert run.outcome() == (JobState.FAILED, "1 of 3 iterations did not succeed (1 FAILED)")


def test_cancel_ends_the_iterations_never_made():
    run = SweepRun.start("s", total=100)
    for index in run.take(2):
        run.changed(f"s.{index}", None, JobState.QUEUED)
    assert run.cancel() == 98 and list(run.take(10)) == []
    run.changed("s.0", JobState.QUEUED, JobState.CANCELED)
    run.changed("s.1", JobState.QUEUED, JobState.CANCELED)
    assert run.finished
    assert run.outcome() == (JobState.CANCELED, "canceled by request; 100 of 100 iterations did not succeed (100 CANCELED)")


def test_all_skipped_is_skipped_and_all_succeeded_is_succeeded():
    skipped, succeeded = SweepRun.start("s", total=2), SweepRun.start("t", total=1)
    for index in skipped.take(2):
        skipped.changed(f"s.{index}", None, JobState.QUEUED)
        skipped.changed(f"s.{index}", JobState.QUEUED, JobState.SKIPPED)
    assert skipped.outcome()[0] == JobState.SKIPPED
    for index in succeeded.take(1):
        succeeded.changed("t.0", None, JobState.QUEUED)
        succeeded.changed("t.0", JobState.QUEUED, JobState.RUNNING)
        succeeded.changed("t.0", JobState.RUNNING, JobState.SUCCEEDED)
    assert succeeded.outcome() == (JobState.SUCCEEDED, None)
