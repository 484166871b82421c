"""fsqueue.model: what a person sees for each kind of bad job, the state machine, status documents,
and the JSON Schema that the files are checked against."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from typing import Any

import jsonschema
import orjson
import pytest

from fsqueue import model, spool
from fsqueue.errors import InvalidJob
from fsqueue.model import (
    FINAL_STATES,
    IllegalTransition,
    JobRecord,
    JobState,
    Placement,
    Range,
    Usage,
    advance,
    parse_jobs,
    status_document,
)

KNOWN = "after, args, env, exec, id, name, priority, rerun_of, resources, retries, script, stderr, stdin, stdout, sweep, version, walltime, wd"
NOT_A_LABEL = ": no '/', '\\', '..', control characters or leading '.'"
LEAVE_IT_OUT = "; leave id out and the manager makes one"


def fake_ids() -> Iterator[str]:
    return (f"{n:016d}" for n in itertools.count())


def rejection(document: Any) -> str:
    with pytest.raises(InvalidJob) as caught:
        parse_jobs(document, fake_ids())
    return str(caught.value)


# --- validation messages -------------------------------------------------------------------------


def case(case_id: str, job: Any, message: str) -> Any:
    return pytest.param(job, message, id=case_id)


def run(**fields: Any) -> dict[str, Any]:
    """A job that runs `a`, with these fields."""
    return {"exec": "a", **fields}


def asking(**resources: Any) -> dict[str, Any]:
    return run(resources=resources)


ONE_OF = "job: needs exactly one of exec (with args) or script"
TYPE = "must be an integer or an object, got"


@pytest.mark.parametrize(
    ("job", "message"),
    [
        # resources
        case("cores-min-zero", asking(cores={"min": 0}), "resources.cores.min: must be >= 1, got 0"),
        case("cores-zero", asking(cores=0), "resources.cores: must be >= 1, got 0"),
        case("nodes-negative", asking(nodes=-3), "resources.nodes: must be >= 1, got -3"),
        case("cores-max-zero", asking(cores={"min": 1, "max": 0}), "resources.cores.max: must be >= 1, got 0"),
        case("cores-huge", asking(cores=2_000_000), "resources.cores: must be <= 1000000, got 2000000"),
        case("cores-min>max", asking(cores={"min": 3, "max": 2}), "resources.cores: min (3) is greater than max (2)"),
        case("nodes-min>max", asking(nodes={"min": 5, "max": 4}), "resources.nodes: min (5) is greater than max (4)"),
        case("range-without-min", asking(cores={"max": 2}), "resources.cores: needs 'min'"),
        case("cores-string", asking(cores="2"), f'resources.cores: {TYPE} string "2"'),
        case("cores-float", asking(cores=1.5), f"resources.cores: {TYPE} number 1.5"),
        case("cores-bool", asking(cores=True), f"resources.cores: {TYPE} boolean true"),
        case("cores-array", asking(cores=[2]), f"resources.cores: {TYPE} array"),
        case("unknown-resource", asking(memory=1), "resources.memory: unknown field (known: cores, exclusive, gpus, nodes, tasks_per_node)"),
        case("range-typo", asking(cores={"min": 1, "mx": 2}), "resources.cores.mx: unknown field (known: max, min)"),
        case("resources-array", run(resources=[]), "resources: must be an object, got array"),
        # unknown fields and wrong types
        case("unknown-field", run(cpus=4), f"cpus: unknown field (known: {KNOWN})"),
        case("exec-int", {"exec": 1}, "exec: must be a string, got integer 1"),
        case("exec-null", {"exec": None}, "exec: must be a string, got null"),
        case("args-string", run(args="-v"), 'args: must be an array, got string "-v"'),
        case("args-item-int", run(args=["-v", 2]), "args[1]: must be a string, got integer 2"),
        case("env-array", run(env=["A=1"]), "env: must be an object, got array"),
        case("env-value-int", run(env={"A": 1}), "env.A: must be a string, got integer 1"),
        case("wd-empty", run(wd=""), "wd: must not be empty"),
        case("too-many-args", run(args=["x"] * 10_001), "args: has 10001 items; at most 10000"),
        case("path-too-long", run(stdout="x" * 4097), "stdout: is 4097 characters long; at most 4096"),
        # exec xor script
        case("exec-and-script", run(script="b"), ONE_OF),
        case("neither", {}, ONE_OF),
        case("args-alone", {"args": ["x"]}, ONE_OF),
        case("script-with-args", {"script": "b", "args": ["x"]}, "args: goes with exec, not with script"),
        case("script-empty", {"script": ""}, "script: must not be empty"),
        # names are labels, never paths
        case("name-slash", run(name="a/b"), "name: 'a/b' is not a label" + NOT_A_LABEL),
        case("name-backslash", run(name="a\\b"), "name: 'a\\\\b' is not a label" + NOT_A_LABEL),
        case("name-dotdot", run(name=".."), "name: '..' is not a label" + NOT_A_LABEL),
        case("name-inner-dotdot", run(name="x..y"), "name: 'x..y' is not a label" + NOT_A_LABEL),
        case("name-leading-dot", run(name=".hidden"), "name: '.hidden' is not a label" + NOT_A_LABEL),
        case("name-control", run(name="a\tb"), "name: 'a\\tb' is not a label" + NOT_A_LABEL),
        case("name-trailing-newline", run(name="run\n"), "name: 'run\\n' is not a label" + NOT_A_LABEL),
        case("name-empty", run(name=""), "name: must not be empty"),
        case("name-long", run(name="n" * 201), "name: is 201 characters long; at most 200"),
        # environment variable names
        case("env-leading-digit", run(env={"1A": "x"}), "env.1A: not a valid variable name"),
        case("env-dash", run(env={"A-B": "x"}), "env.A-B: not a valid variable name"),
        case("env-equals", run(env={"A=B": "x"}), "env.A=B: not a valid variable name"),
        case("env-empty", run(env={"": "x"}), "env.: not a valid variable name"),
        case("env-trailing-newline", run(env={"PATH\n": "x"}), "env.PATH\n: not a valid variable name"),
        case("env-fsq-prefix", run(env={"FSQ_X": "x"}), "env.FSQ_X: names starting with FSQ_ are set by fsqueue"),
        # id and version
        case("id-free-text", run(id="job-1"), 'id: "job-1" is not an fsqueue id' + LEAVE_IT_OUT),
        case("id-upper-case", run(id="0123456789ABCDEF"), 'id: "0123456789ABCDEF" is not an fsqueue id' + LEAVE_IT_OUT),
        case("id-int", run(id=7), "id: must be a string, got integer 7"),
        case("version-2", run(version=2), "version: must be 1, got 2"),
        case("version-string", run(version="1"), 'version: must be 1, got "1"'),
    ],
)
def test_single_job_rejection(job: dict[str, Any], message: str) -> None:
    assert rejection(job) == message


NOT_A_SUBMISSION = "a submission is a JSON object or a list of objects, got"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        case("empty-list", [], "the file holds an empty list: nothing to run"),
        case("integer", 3, f"{NOT_A_SUBMISSION} integer"),
        case("string", "exec ls", f"{NOT_A_SUBMISSION} string"),
        case("null", None, f"{NOT_A_SUBMISSION} null"),
        case("boolean", True, f"{NOT_A_SUBMISSION} boolean"),
        case("list-prefix", [run(), run(), run(), asking(cores={"min": 0})],
             "jobs[3].resources.cores.min: must be >= 1, got 0"),
        case("list-unknown-field", [run(), run(cpus=1)], f"jobs[1].cpus: unknown field (known: {KNOWN})"),
        case("list-exec-and-script", [run(script="b")], "jobs[0]." + ONE_OF),
        case("list-item-not-object", [run(), "ls"], "jobs[1].job: must be an object, got string"),
        case("list-two-errors", [run(env={"A": 1}), run(name="x/y")],
             "jobs[0].env.A: must be a string, got integer 1; jobs[1].name: 'x/y' is not a label" + NOT_A_LABEL),
    ],
)
def test_file_rejection(document: Any, message: str) -> None:
    assert rejection(document) == message


def test_too_many_jobs_in_one_file() -> None:
    assert rejection([{}] * (model.MAX_JOBS_PER_FILE + 1)) == "the file holds 100001 jobs; at most 100000 per file"


def test_every_problem_of_one_job_is_named() -> None:
    message = rejection({"exec": "a", "resources": {"cores": 0, "nodes": {"min": 0}}, "name": 5})
    assert message == ("name: must be a string, got integer 5; resources.cores: must be >= 1, got 0; "
                       "resources.nodes.min: must be >= 1, got 0")


@pytest.mark.parametrize("bad_jobs", [model.MAX_ERRORS_SHOWN + 1, 10, 1000])
def test_at_most_max_errors_shown_and_the_rest_announced(bad_jobs: int) -> None:
    message = rejection([{"exec": "a"}] + [{"exec": "a", "cores": 1}] * bad_jobs)
    more = f" (and more; first {model.MAX_ERRORS_SHOWN} shown)"
    assert message.endswith(more)
    shown = message.removesuffix(more).split("; ")
    assert [part.split(":")[0] for part in shown] == [f"jobs[{i}].cores" for i in range(1, model.MAX_ERRORS_SHOWN + 1)]


def test_exactly_max_errors_are_not_followed_by_and_more() -> None:
    message = rejection([{"exec": "a", "cores": 1}] * model.MAX_ERRORS_SHOWN)
    assert len(message.split("; ")) == model.MAX_ERRORS_SHOWN and "and more" not in message


@pytest.mark.parametrize(
    "job",
    [
        {"exec": "a"},
        {"script": "echo hi", "name": "a b-c_d.e (1)", "version": 1},
        {"exec": "/bin/x", "args": [], "env": {"_A1": "", "a": "x"}, "wd": "/", "stdin": "i", "stdout": "o",
         "stderr": "e"},
        {"exec": "a", "resources": {"cores": {"min": 2, "max": 2}, "nodes": 1_000_000}},
        {"exec": "a", "name": "n" * 200, "id": "0123456789abcdef"},
    ],
    ids=["minimal", "script", "all-fields", "ranges", "limits"],
)
def test_valid_jobs_are_accepted(job: dict[str, Any]) -> None:
    (spec,) = parse_jobs(job, fake_ids())
    assert dict(spec.document) == {"id": job.get("id", "0000000000000000"), **job}


def test_accepted_jobs_get_the_next_ids_in_order_and_keep_their_own() -> None:
    specs = parse_jobs([{"exec": "a"}, {"exec": "b", "id": "zzzzzzzzzzzzzzzz"}, {"script": "c"}], fake_ids())
    assert [spec.id for spec in specs] == ["0000000000000000", "zzzzzzzzzzzzzzzz", "0000000000000001"]
    assert [spec.argv for spec in specs] == [("a",), ("b",), ("bash", "-c", "c", "0000000000000001")]


def test_spec_fields() -> None:
    job = {"exec": "x", "args": ["1"], "name": "n", "resources": {"cores": {"min": 2, "max": 4}}}
    (spec,) = parse_jobs(job, fake_ids())
    assert (spec.argv, spec.name, spec.cores, spec.nodes) == (("x", "1"), "n", Range(2, 4), Range(1, 1))
    assert model.accepted_specs([spec.document]) == [spec]


# --- Range -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, Range(1, 1)), (3, Range(3, 3)), ({"min": 2}, Range(2, 2)), ({"min": 2, "max": 8}, Range(2, 8))],
    ids=["absent", "count", "min-only", "min-max"],
)
def test_range_parse(value: Any, expected: Range) -> None:
    assert Range.parse(value) == expected


@pytest.mark.parametrize(("rng", "json"), [(Range(1, 1), 1), (Range(4, 4), 4), (Range(2, 8), {"min": 2, "max": 8})])
def test_range_to_json_round_trips(rng: Range, json: Any) -> None:
    assert rng.to_json() == json and Range.parse(json) == rng


# --- states and transitions ---------------------------------------------------------------------------

Q, R, S, F, C, X, K, T = (JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED,
                          JobState.REJECTED, JobState.SKIPPED, JobState.TIMEOUT)
# The state machine as documented in docs/job-format.md, written out again so that a new edge is a decision.
EXPECTED_EDGES = {(None, Q), (None, X), (Q, R), (Q, F), (Q, C), (Q, K), (R, S), (R, F), (R, C), (R, T), (R, Q)}


def record(state: JobState | None, seq: int = 0) -> JobRecord:
    (spec,) = parse_jobs({"exec": "true"}, fake_ids())
    return JobRecord(spec, "sub.json", 1.0, "/o", "/e", state=state, seq=seq)


def test_state_strings_are_what_is_on_disk() -> None:
    assert [str(state) for state in JobState] == ["QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "CANCELED", "REJECTED",
                                                 "SKIPPED", "TIMEOUT"]
    assert {state for state in JobState if state.is_final} == FINAL_STATES == {S, F, C, X, K, T}


@pytest.mark.parametrize(("source", "target"), sorted(EXPECTED_EDGES, key=str), ids=str)
def test_allowed_edge_advances_and_bumps_seq(source: JobState | None, target: JobState) -> None:
    before = record(source, seq=7)
    after = advance(before, target, reason="why", exit_code=3)
    assert (after.state, after.seq, after.reason, after.exit_code) == (target, 8, "why", 3)
    assert (before.state, before.seq) == (source, 7), "records are values: the old one is unchanged"


@pytest.mark.parametrize(
    ("source", "target"),
    [(s, t) for s, t in itertools.product([None, *JobState], JobState) if (s, t) not in EXPECTED_EDGES],
    ids=str,
)
def test_every_other_edge_raises(source: JobState | None, target: JobState) -> None:
    with pytest.raises(IllegalTransition, match=re.escape(f"{source} -> {target} is not allowed")):
        advance(record(source), target)


def test_transition_table_is_the_expected_one() -> None:
    edges = {(source, target) for source, targets in model.TRANSITIONS.items() for target in targets}
    assert edges == EXPECTED_EDGES
    assert all(not model.TRANSITIONS[state] for state in FINAL_STATES)


# --- status documents ---------------------------------------------------------------------------------


def test_status_document_of_a_finished_job() -> None:
    done = advance(
        advance(advance(record(None), Q), R, placement=Placement((("n1", (0, 1)), ("n2", (2, 3)))), start_time=5.0),
        S, exit_code=0, end_time=9.0, usage=Usage(1.5, 0.25, 2048),
    )
    document = status_document(done, {"host": "h", "pid": 1})
    assert document == {
        "version": 1, "id": "0000000000000000", "name": None, "state": "SUCCEEDED", "seq": 3, "attempt": 1, "launch_failures": 0, "failures": 0,
        "reason": None, "exit_code": 0, "signal": None, "submit_time": 1.0, "start_time": 5.0, "end_time": 9.0,
        "nodes": ["n1", "n2"], "cores": {"n1": [0, 1], "n2": [2, 3]}, "gpus": {}, "resources": {"cores": 1, "nodes": 1},
        "stdout": "/o", "stderr": "/e", "usage": {"cpu_user": 1.5, "cpu_system": 0.25, "max_rss_kib": 2048},
        "submission": "sub.json", "manager": {"host": "h", "pid": 1},
    }
    assert orjson.loads(orjson.dumps(document)) == document


def test_status_document_of_a_queued_job() -> None:
    document = status_document(advance(record(None), Q))
    assert (document["state"], document["seq"], document["nodes"], document["cores"]) == ("QUEUED", 1, [], {})
    assert document["exit_code"] is document["usage"] is document["manager"] is None


# --- the JSON Schema ---------------------------------------------------------------------------------


def test_schema_is_valid_draft_2020_12() -> None:
    schema = model.job_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def schema_accepts_id(candidate: str) -> bool:
    return bool(jsonschema.Draft202012Validator(model.job_schema()).is_valid({"exec": "a", "id": candidate}))


MADE_IDS = [spool.IdMaker()() for _ in range(50)] + ["0" * 16, "z" * 16, "0123456789abcdef", "ghjkmnpqrstvwxyz"]
NOT_IDS = [
    "", "0" * 15, "0" * 17, "0123456789ABCDEF", "0123456789abcdei", "0123456789abcdel", "0123456789abcdeo",
    "0123456789abcdeu", "0123456789abcde-", " 0123456789abcde", "0123456789abcde ", "0123456789abcdé",
    "٠١٢٣٤٥٦٧٨٩abcdef", "../../etc/passwd", "0123456789abcdef/", "0123456789abcdef\n",
]


def test_made_ids_pass_both_checks() -> None:
    assert all(spool.JOB_ID_RE.match(job_id) and schema_accepts_id(job_id) for job_id in MADE_IDS)


@pytest.mark.parametrize("candidate", NOT_IDS, ids=repr)
def test_schema_rejects_non_ids(candidate: str) -> None:
    assert not schema_accepts_id(candidate)


@pytest.mark.parametrize(
    "candidate",
    NOT_IDS,
    ids=repr,
)
def test_spool_regex_rejects_non_ids(candidate: str) -> None:
    assert not spool.is_job_id(candidate)
