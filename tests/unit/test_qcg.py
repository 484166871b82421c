"""QCG-PilotJob request files as fsqueue jobs: every mapping, every refusal, the substitution variables.

The expected values come from QCG-PilotJob 0.14.2 itself: its source and its file mode
(`qcg-pm-service --file-path`), where the same requests printed what is asserted here.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime
from typing import Any

import pytest

from fsqueue import qcg, sweep
from fsqueue.errors import InvalidJob
from tests.conftest import REPO

NOW = datetime(2026, 3, 4, 5, 6, 7, 890)


def context() -> qcg.Context:
    counter = itertools.count(1)
    return qcg.Context(root_wd="/r", now=NOW, uniq=lambda: f"uniq-{next(counter)}")


def translate(document: Any) -> qcg.Translation:
    return qcg.translate(document, context())


def job(**fields: Any) -> dict[str, Any]:
    """A QCG job description; execution defaults to /bin/true."""
    return {"name": "j", "execution": {"exec": "/bin/true"}, **fields}


def one(description: dict[str, Any]) -> dict[str, Any]:
    (translated,) = translate([{"request": "submit", "jobs": [description]}]).jobs
    return translated


def refused(description: dict[str, Any] | None = None, *, document: Any = None) -> str:
    with pytest.raises(InvalidJob) as error:
        translate(document if document is not None else [{"request": "submit", "jobs": [description]}])
    return str(error.value)


def iterations(translated: dict[str, Any]) -> list[dict[str, Any]]:
    """The iteration jobs fsqueue's sweep makes of a translated job."""
    parsed = sweep.Sweep.parse(translated["sweep"])
    return [sweep.iteration_document(translated, f"id{i}", parsed.variables(i)) for i in range(len(parsed))]


# -- execution ---------------------------------------------------------------------------------------


def test_exec_and_args_with_the_default_wd() -> None:
    assert one(job(execution={"exec": "echo", "args": ["a", "b c"]})) == {
        "name": "j", "exec": "echo", "args": ["a", "b c"], "wd": "/r"}


def test_numbers_in_args_become_text_as_qcg_makes_them() -> None:
    assert one(job(execution={"exec": "echo", "args": [5, 2.5, True]}))["args"] == ["5", "2.5", "True"]


def test_script_env_wd_and_streams() -> None:
    translated = one(job(execution={"script": "echo $X", "env": {"X": "1"}, "wd": "sub/dir", "stdin": "in.txt",
                                    "stdout": "o.txt", "stderr": "/abs/e.txt"}))
    assert translated == {"name": "j", "script": "echo $X", "env": {"X": "1"}, "wd": "/r/sub/dir", "stdin": "in.txt",
                          "stdout": "o.txt", "stderr": "/abs/e.txt"}


def test_absolute_wd_is_kept() -> None:
    assert one(job(execution={"exec": "true", "wd": "/scratch/x"}))["wd"] == "/scratch/x"


def test_one_file_for_both_streams_becomes_one_stream() -> None:
    translated = one(job(execution={"exec": "prog", "args": ["a b"], "stdout": "all.log", "stderr": "all.log"}))
    assert translated["script"] == "exec 2>&1\nexec prog 'a b'"
    assert translated["stdout"] == "all.log" and "stderr" not in translated and "exec" not in translated


def test_modules_and_venv_load_before_the_program() -> None:
    translated = one(job(execution={"exec": "solver", "args": ["-n", "4"], "modules": ["gcc/12", "openmpi"],
                                    "venv": "/opt/venv"}))
    assert translated["script"] == ("source /etc/profile && module load gcc/12 openmpi\n"
                                    "source /opt/venv/bin/activate\nexec solver -n 4")
    script = one(job(execution={"script": "run.sh", "modules": "python"}))["script"]
    assert script == "source /etc/profile && module load python\nrun.sh"


@pytest.mark.parametrize(("execution", "message"), [
    ({"exec": "a", "script": "b"}, "requests[0].jobs[0].execution: needs exec (with args) or script, not both"),
    ({"args": ["x"]}, "requests[0].jobs[0].execution: needs exec (with args) or script, not both"),
    ({"script": "b", "args": ["x"]}, "requests[0].jobs[0].execution.args: goes with exec, not with script"),
    ({"exec": "a", "args": "x"}, "requests[0].jobs[0].execution.args: must be an array, got string"),
    ({"exec": "a", "args": [None]}, "requests[0].jobs[0].execution.args[0]: must be a string or a number, got null"),
    ({"exec": "a", "env": ["X=1"]}, "requests[0].jobs[0].execution.env: must be an object of strings, got array"),
    ({"exec": "a", "stdout": 3}, "requests[0].jobs[0].execution.stdout: must be a string, got integer"),
    ({"exec": "a", "cwd": "/x"}, "requests[0].jobs[0].execution.cwd: unknown field (QCG knows exec, args, env"),
])
def test_bad_executions_are_refused(execution: dict[str, Any], message: str) -> None:
    assert refused(job(execution=execution)).startswith(message)


def test_fsqueue_rules_on_the_result_name_the_qcg_field() -> None:
    assert refused(job(execution={"exec": "a", "env": {"FSQ_X": "1"}})) == (
        "requests[0].jobs[0].execution.env.FSQ_X: names starting with FSQ_ are set by fsqueue")
    assert refused(job(execution={"exec": "a", "env": {"A": 1}})) == (
        "requests[0].jobs[0].execution.env.A: must be a string, got integer 1")
    assert refused(job(name="a/b")).startswith("requests[0].jobs[0].name: 'a/b' is not a label")


# -- models ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [None, "default", "threads", "THREADS"])
def test_one_process_models_get_cores_on_one_node(model: str | None) -> None:
    execution = {"exec": "omp-prog", **({"model": model} if model else {})}
    assert one(job(execution=execution, resources={"numCores": 8}))["resources"] == {"cores": 8}


@pytest.mark.parametrize("model", ["openmpi", "intelmpi", "srunmpi", "OpenMPI"])
def test_mpi_models_start_one_rank_per_core(model: str) -> None:
    translated = one(job(execution={"exec": "mpi-prog", "model": model},
                         resources={"numCores": {"exact": 4}, "numNodes": {"exact": 2}}))
    assert translated["resources"] == {"cores": 4, "nodes": 2, "tasks_per_node": 4}
    assert translated["exec"] == "mpi-prog"  # no mpirun: fsqueue's srun starts the ranks


def test_mpi_model_on_one_core_is_a_plain_job() -> None:
    assert "resources" not in one(job(execution={"exec": "p", "model": "srunmpi"}))


@pytest.mark.parametrize(("execution", "resources", "message"), [
    ({"exec": "p", "model": "openmp"}, None,
     ("requests[0].jobs[0].execution.model: \"openmp\" is not supported; use default, threads, openmpi, intelmpi "
     "or srunmpi")),
    ({"exec": "p", "model": "openmpi", "model_opts": {"mpirun_args": ["-x"]}}, None,
     ("requests[0].jobs[0].execution.model_opts.mpirun_args: not supported: fsqueue starts a job with its own "
     "srun line")),
    ({"exec": "p", "model": "intelmpi"}, {"numCores": {"min": 2, "max": 4}},
     ("requests[0].jobs[0].resources.numCores: a range with model 'intelmpi': fsqueue starts a fixed number of "
     "ranks on each node; give exact")),
    ({"exec": "p", "model": "srunmpi"}, {"numNodes": 2},
     "requests[0].jobs[0].resources.numNodes: whole nodes with model 'srunmpi': fsqueue needs the number of ranks"),
    ({"exec": "p"}, {"numCores": 2, "numNodes": 2},
     ("requests[0].jobs[0].resources.numNodes: model 'default' runs one process, but under Slurm fsqueue starts "
     "a job's program on each of its nodes")),
    ({"exec": "p", "model": "threads"}, {"numNodes": {"min": 1, "max": 2}},
     "requests[0].jobs[0].resources.numNodes: model 'threads' runs one process"),
])
def test_what_a_model_cannot_do_in_fsqueue_is_refused(execution: dict[str, Any], resources: Any,
                                                      message: str) -> None:
    description = job(execution=execution, **({"resources": resources} if resources else {}))
    assert refused(description).startswith(message)


# -- resources ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("resources", "expected"), [
    ({"numCores": 1}, None),
    ({"numCores": 3}, {"cores": 3}),
    ({"numCores": {"exact": 3}}, {"cores": 3}),
    ({"numCores": {"min": 2, "max": 6}}, {"cores": {"min": 2, "max": 6}}),
    # numCores with numNodes is per node (scheduleralgo._allocate_cores_on_nodes): 2 x 2 = 4 cores.
    ({"numCores": 2, "numNodes": 1}, {"cores": 2, "nodes": 1}),
    # numNodes alone: whole nodes (scheduleralgo._allocate_entire_nodes).
    ({"numNodes": 1}, {"exclusive": True, "nodes": 1}),
    ({"numCores": 1, "nodeCrs": {"gpu": 2}}, {"cores": 1, "gpus": 2}),
    ({"numCores": 1, "nodeCrs": {"GPU": 1}}, {"cores": 1, "gpus": 1}),
])
def test_resources(resources: dict[str, Any], expected: dict[str, Any] | None) -> None:
    assert one(job(resources=resources)).get("resources") == expected


def test_no_resources_means_one_core() -> None:
    assert "resources" not in one(job())


def test_wall_time_becomes_walltime_in_seconds() -> None:
    assert one(job(resources={"numCores": 1, "wt": "1h30m10s"}))["walltime"] == 5410
    assert one(job(resources={"numCores": 1, "wt": "45s"}))["walltime"] == 45


@pytest.mark.parametrize(("resources", "message"), [
    ({}, "requests[0].jobs[0].resources: needs numCores, numNodes or both"),
    ({"numCores": 0}, "requests[0].jobs[0].resources.numCores: must be at least 1, got 0"),
    ({"numCores": "4"}, ("requests[0].jobs[0].resources.numCores: must be an integer or an object like "
                        "{\"exact\": 4}, got string \"4\"")),
    ({"numCores": True}, "requests[0].jobs[0].resources.numCores: must be an integer or an object"),
    ({"numCores": {"exact": 2, "max": 4}}, ("requests[0].jobs[0].resources.numCores: exact goes alone, not with "
                                           "min or max")),
    ({"numCores": {"min": 2}}, "requests[0].jobs[0].resources.numCores: needs exact, or both min and max"),
    ({"numCores": {"min": 4, "max": 2}}, "requests[0].jobs[0].resources.numCores: min (4) is greater than max (2)"),
    ({"numCores": {"exact": 2, "split": 1}}, "requests[0].jobs[0].resources.numCores.split: unknown field"),
    ({"numCores": {"min": 1, "max": 8, "scheduler": {"name": "split-into", "params": {"parts": 4}}}},
     ("requests[0].jobs[0].resources.numCores.scheduler: QCG's iteration resource scheduler \"split-into\" is not "
     "supported; give exact, or min and max")),
    ({"numCores": 1, "nodeCrs": {"mem": 100}}, ("requests[0].jobs[0].resources.nodeCrs.mem: fsqueue has no memory "
                                               "resource")),
    ({"numCores": 1, "nodeCrs": {"fpga": 1}}, ("requests[0].jobs[0].resources.nodeCrs.fpga: unknown consumable "
                                              "resource (QCG knows gpu and mem)")),
    ({"numCores": 1, "nodeCrs": {"gpu": 0}}, ("requests[0].jobs[0].resources.nodeCrs.gpu: must be an integer of "
                                             "at least 1, got 0")),
    ({"numCores": 1, "wt": "90"}, ("requests[0].jobs[0].resources.wt: \"90\" is not a QCG wall time such as "
                                  "\"2h30m\", \"90m\" or \"45s\"")),
    ({"numCores": 1, "wt": "1h foo"}, "requests[0].jobs[0].resources.wt: \"1h foo\" is not a QCG wall time"),
    ({"numCores": 1, "memory": 4}, ("requests[0].jobs[0].resources.memory: unknown field (QCG knows numCores, "
                                   "numNodes, wt, nodeCrs)")),
])
def test_bad_resources_are_refused(resources: dict[str, Any], message: str) -> None:
    assert refused(job(resources=resources)).startswith(message)


# -- iteration ---------------------------------------------------------------------------------------


def test_start_stop_is_a_range_with_stop_excluded() -> None:
    translated = one(job(iteration={"start": 2, "stop": 5}, execution={"exec": "echo", "args": ["${it}"]}))
    assert translated["sweep"] == {"range": {"start": 2, "stop": 5}}
    assert [(i["name"], i["args"]) for i in iterations(translated)] == [("j:2", ["2"]), ("j:3", ["3"]),
                                                                        ("j:4", ["4"])]


def test_stop_alone_starts_at_zero() -> None:
    assert one(job(iteration={"stop": 2}))["sweep"] == {"range": {"start": 0, "stop": 2}}


def test_values_iterate_by_index_with_the_value_in_itval() -> None:
    # QCG: ${it} is the index, ${itval} the value, and iterations are named NAME:INDEX.
    translated = one(job(iteration={"values": ["x", 7]},
                         execution={"exec": "echo", "args": ["${it}", "${itval}"], "stdout": "out-${itval}"}))
    assert translated["sweep"] == {"values": [{"itval": "x"}, {"itval": "7"}]}
    assert [(i["name"], i["args"], i["stdout"]) for i in iterations(translated)] == [
        ("j:0", ["0", "x"], "out-x"), ("j:1", ["1", "7"], "out-7")]


def test_itval_of_a_range_is_the_index() -> None:
    translated = one(job(iteration={"start": 1, "stop": 2}, execution={"exec": "echo", "args": ["${itval}"]}))
    assert iterations(translated)[0]["args"] == ["1"]


def test_start_with_values_is_ignored_as_in_qcg() -> None:
    translation = translate([{"request": "submit", "jobs": [job(iteration={"start": 3, "values": ["a"]})]}])
    assert translation.jobs[0]["sweep"] == {"values": [{"itval": "a"}]}
    assert translation.notes == ["requests[0].jobs[0].iteration.start: ignored with values, as QCG does"]


@pytest.mark.parametrize(("iteration", "message"), [
    ({"start": 3, "stop": 3}, ("requests[0].jobs[0].iteration: start (3) must be less than stop (3); stop is not "
                              "included")),
    ({"stop": 2, "values": ["a"]}, "requests[0].jobs[0].iteration: stop and values exclude each other"),
    ({"start": 1}, "requests[0].jobs[0].iteration: needs stop (with an optional start) or values"),
    ({"values": []}, "requests[0].jobs[0].iteration.values: must be a non-empty list"),
    ({"values": [{"a": 1}]}, "requests[0].jobs[0].iteration.values[0]: must be a string or a number, got object"),
    ({"stop": "4"}, "requests[0].jobs[0].iteration.stop: must be an integer, got string"),
    ({"stop": 2, "step": 1}, "requests[0].jobs[0].iteration.step: unknown field (QCG knows start, stop, values)"),
    (4, "requests[0].jobs[0].iteration: must be an object, got integer"),
])
def test_bad_iterations_are_refused(iteration: Any, message: str) -> None:
    assert refused(job(iteration=iteration)) == message


def test_working_directories_are_listed_per_iteration() -> None:
    translation = translate([{"request": "submit", "jobs": [
        job(name="a", iteration={"values": ["p", "q"]}, execution={"exec": "true", "wd": "w/${itval}"}),
        job(name="b", iteration={"stop": 2}, execution={"exec": "true", "wd": "v"}),
        job(name="c")]}])
    assert translation.directories == ["/r/w/p", "/r/w/q", "/r/v", "/r"]


# -- substitution variables --------------------------------------------------------------------------


def test_request_variables() -> None:
    translation = translate([
        {"request": "submit", "jobs": [job(name="a${rcnt}", execution={
            "exec": "echo", "args": ["${jname}", "${rcnt}", "${uniq}", "${sname}", "${date}", "${dateTime}",
                                     "${time}"]})]},
        {"request": "submit", "jobs": [job(name="b", execution={"exec": "echo", "args": ["${rcnt}", "${uniq}"]})]},
    ])
    first, second = translation.jobs
    assert first["name"] == "a1"
    assert first["args"] == ["a1", "1", "uniq-1", "local", str(NOW), str(NOW), "00:00:00"]
    assert second["args"] == ["2", "uniq-2"]


def test_start_variables_known_from_the_request() -> None:
    translated = one(job(execution={"exec": "echo", "args": ["${ncores}", "${nnodes}", "${root_wd}"],
                                    "model": "srunmpi"}, resources={"numCores": 3, "numNodes": 2}))
    assert translated["args"] == ["6", "2", "/r"]


def test_qcg_template_forms_dollar_name_and_escapes() -> None:
    translated = one(job(iteration={"stop": 1}, execution={
        "script": "echo $it ${it} $$HOME $$$$ ${HOME} $1 $(date) $items"}))
    # $$ is $; QCG substitutes twice (the request, then the start), so $$$$ is $ as well. Unknown names,
    # $1 and $( stay for bash.
    assert translated["script"] == "echo ${it} ${it} $HOME $ ${HOME} $1 $(date) $items"


def test_it_outside_an_iteration_job_stays_as_written() -> None:
    assert one(job(execution={"exec": "echo", "args": ["${it}"]}))["args"] == ["${it}"]


@pytest.mark.parametrize(("resources", "variable", "message"), [
    ({"numCores": {"min": 1, "max": 4}}, "ncores", "${ncores} depends on what the job gets"),
    ({"numNodes": 1}, "ncores", "${ncores} depends on what the job gets"),
    ({"numCores": 1, "numNodes": {"min": 1, "max": 1}}, "nnodes", None),
    ({"numCores": 1}, "nlist", ("${nlist} is the job's node list, known only when it starts; in a script use "
                               "$FSQ_NODES")),
])
def test_start_variables_that_are_only_known_at_start_are_refused(resources: dict[str, Any], variable: str,
                                                                  message: str | None) -> None:
    description = job(execution={"script": f"echo ${{{variable}}}"}, resources=resources)
    if message is None:
        assert one(description)["script"] == "echo 1"
    else:
        assert refused(description).startswith(f"requests[0].jobs[0].execution.script: {message}")


def test_text_fsqueue_would_fill_in_but_qcg_leaves_is_refused() -> None:
    assert refused(job(iteration={"stop": 2}, execution={"script": "for index in 1; do echo ${index}; done"})) == (
        "requests[0].jobs[0].execution.script: ${index} is plain text to QCG here, but fsqueue's sweep would fill "
        "it in; rename it (a shell variable, say)")
    assert "${it} is plain text to QCG here" in refused(job(iteration={"stop": 2},
                                                          execution={"exec": "echo", "args": ["$$${it}", "$${it}"]}))
    # Outside a sweep nothing is filled in, so the text is safe.
    assert one(job(execution={"script": "echo ${index}"}))["script"] == "echo ${index}"


def test_env_names_cannot_change_per_iteration() -> None:
    assert refused(job(iteration={"stop": 2}, execution={"exec": "a", "env": {"X_${it}": "1"}})) == (
        "requests[0].jobs[0].execution.env.X_${it}: the name changes with the iteration; fsqueue fills in values, "
        "not names")


# -- names and dependencies --------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "message"), [
    (None, "requests[0].jobs[0].name: QCG requires a name (a string) for every job"),
    ("a:1", "requests[0].jobs[0].name: 'a:1' is not a QCG job name"),
    ("a b", "requests[0].jobs[0].name: 'a b' is not a QCG job name"),
    ("a${x}", "requests[0].jobs[0].name: 'a${x}' is not a QCG job name"),
])
def test_bad_names_are_refused(name: str | None, message: str) -> None:
    description = job()
    description.pop("name") if name is None else description.update(name=name)
    assert refused(description).startswith(message)


def test_names_are_unique() -> None:
    assert refused(document=[{"request": "submit", "jobs": [job(name="a")]},
                             {"request": "submit", "jobs": [job(name="a")]}]) == (
        "requests[1].jobs[0].name: 'a' is already the name of requests[0].jobs[0]; QCG requires unique names")


def test_dependencies() -> None:
    translation = translate([{"request": "submit", "jobs": [
        job(name="a", iteration={"stop": 3}),
        job(name="b", iteration={"stop": 3}, dependencies={"after": ["a:${it}", "c"]}),
        job(name="c", dependencies={"after": ["a", "a:2"]}),
    ]}])
    b, c = translation.jobs[1], translation.jobs[2]
    assert b["after"] == ["a:${it}", "c"] and c["after"] == ["a", "a:2"]
    assert [i["after"] for i in iterations(b)] == [["a:0", "c"], ["a:1", "c"], ["a:2", "c"]]
    assert translation.notes == []


def test_dependencies_qcg_would_never_meet_are_noted() -> None:
    translation = translate([
        {"request": "submit", "jobs": [job(name="a", dependencies={"after": ["b", "zz"]})]},
        {"request": "submit", "jobs": [job(name="b")]},
    ])
    assert translation.notes == [
        ("requests[0].jobs[0].dependencies.after[0]: 'b' comes in a later request; QCG would skip this job, "
        "fsqueue waits for it"),
        ("requests[0].jobs[0].dependencies.after[1]: no job named 'zz' in this file; fsqueue waits until one is "
        "submitted (QCG would skip this job)"),
    ]


@pytest.mark.parametrize(("dependencies", "message"), [
    ({"after": ["a:${it}"]}, ("requests[0].jobs[0].dependencies.after[0]: ${it} in a dependency needs an iteration "
                             "job (QCG fails the submit)")),
    ({"after": ["a:x"]}, ("requests[0].jobs[0].dependencies.after[0]: 'a:x' names no QCG job: NAME, NAME:INDEX or "
                         "NAME:${it} (only ${it} is filled in here)")),
    ({"after": ["a:${itval}"]}, "requests[0].jobs[0].dependencies.after[0]: 'a:${itval}' names no QCG job"),
    ({"after": "a"}, "requests[0].jobs[0].dependencies.after: must be an array, got string"),
    ({"after": [1]}, "requests[0].jobs[0].dependencies.after[0]: must be a job name, got integer"),
    ({"before": ["a"]}, "requests[0].jobs[0].dependencies.before: unknown field (QCG knows after)"),
])
def test_bad_dependencies_are_refused(dependencies: dict[str, Any], message: str) -> None:
    assert refused(job(dependencies=dependencies)).startswith(message)


# -- requests ----------------------------------------------------------------------------------------


def test_control_finish_after_all_tasks_done_is_reported() -> None:
    translation = translate([{"request": "submit", "jobs": [job()]},
                             {"request": "control", "command": "finishAfterAllTasksDone"}])
    assert translation.finish_after_all and len(translation.jobs) == 1
    assert not translate([{"request": "submit", "jobs": [job()]}]).finish_after_all


def test_origins_name_the_qcg_job() -> None:
    translation = translate([{"request": "control", "command": "finishAfterAllTasksDone"},
                             {"request": "submit", "jobs": [job(name="a"), job(name="b")]}])
    assert translation.origins == ["requests[1].jobs[0]", "requests[1].jobs[1]"]


def test_a_list_of_job_descriptions_is_one_submit() -> None:
    # What QCG's Python API writes with Jobs.save_to_file.
    translation = translate([job(name="a", execution={"exec": "echo", "args": ["${rcnt}"]}), job(name="b")])
    assert [j["name"] for j in translation.jobs] == ["a", "b"] and translation.jobs[0]["args"] == ["1"]
    assert refused(document=[job(name="a", resources={})]) == "jobs[0].resources: needs numCores, numNodes or both"


@pytest.mark.parametrize(("document", "message"), [
    ({"request": "submit", "jobs": [job()]}, ("a QCG request file is a JSON array of requests (QCG's file mode reads "
                                             "nothing else), got object")),
    ([], "the file submits no jobs"),
    ([{"request": "control", "command": "finishAfterAllTasksDone"}], "the file submits no jobs"),
    ([{"request": "submit", "jobs": []}], "requests[0].jobs: a submit request needs a non-empty list of jobs"),
    ([{"request": "control", "command": "stop"}], ("requests[0].command: \"stop\" is not a QCG control command (the "
                                                  "only one is finishAfterAllTasksDone)")),
    ([{"request": "listJobs"}], ("requests[0].request: 'listJobs' is a question or an order for a running QCG "
                                "manager, with no place in a job file: use `fsq list`")),
    ([{"request": "cancelJob", "jobNames": ["a"]}], ("requests[0].request: 'cancelJob' is a question or an order for "
                                                    "a running QCG manager, with no place in a job file: use "
                                                    "`fsq cancel NAME`")),
    ([{"request": "finish"}], "requests[0].request: 'finish' is a question or an order for a running QCG manager"),
    ([{"request": "launch"}], ("requests[0].request: unknown request 'launch' (QCG knows submit, control and "
                              "listJobs")),
    (["submit"], "requests[0]: a request is an object with a 'request' name"),
    ([{"request": "submit", "jobs": [job()]}, {"jobs": []}], ("requests[1]: a request is an object with a 'request' "
                                                              "name")),
])
def test_bad_requests_are_refused(document: Any, message: str) -> None:
    assert refused(document=document).startswith(message)


@pytest.mark.parametrize(("description", "message"), [
    ({"name": "a"}, "requests[0].jobs[0].execution: QCG requires it"),
    (job(execution="true"), "requests[0].jobs[0].execution: must be an object, got string"),
    (job(attributes={"x": 1}), ("requests[0].jobs[0].attributes: attributes steer QCG's partition managers; "
                               "fsqueue has none")),
    (job(subjobs=[]), ("requests[0].jobs[0].subjobs: unknown field (QCG knows name, execution, resources, iteration, "
                      "dependencies, attributes)")),
    ("a", "requests[0].jobs[0]: must be an object, got string"),
])
def test_bad_jobs_are_refused(description: Any, message: str) -> None:
    assert refused(description).startswith(message)


def test_every_bad_job_is_told_up_to_five() -> None:
    message = refused(document=[{"request": "submit", "jobs": [job(name=f"j{i}", resources={}) for i in range(7)]}])
    assert message.startswith("requests[0].jobs[0].resources: needs numCores, numNodes or both; "
                              "requests[0].jobs[1].resources")
    assert message.count("needs numCores") == 5 and message.endswith(" (and more; first 5 shown)")


# -- the example -------------------------------------------------------------------------------------


def test_the_example_translates_to_a_pipeline_of_sweeps() -> None:
    document = json.loads((REPO / "examples" / "qcg" / "pipeline.json").read_text())
    translation = translate(document)
    assert [(j["name"], j.get("sweep"), j.get("after")) for j in translation.jobs] == [
        ("prepare", None, None),
        ("simulate", {"range": {"start": 0, "stop": 4}}, ["prepare"]),
        ("analyse", {"range": {"start": 0, "stop": 4}}, ["simulate:${it}"]),
        ("report", None, ["analyse"]),
    ]
    assert translation.finish_after_all and translation.notes == [] and translation.directories == ["/r/work"]
    analyse = iterations(translation.jobs[2])[3]
    assert analyse["name"] == "analyse:3" and analyse["after"] == ["simulate:3"]
    assert 'echo "analyse 3: $line (1 core)"' in analyse["script"]
