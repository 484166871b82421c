"""Jobs as data: the validated job description, the job states and the one table of allowed transitions.

Pure: no I/O beyond reading the JSON Schema shipped in the package, no clock (times are passed in).
The state strings are exactly what status files carry on disk (docs/spool.md, docs/job-format.md).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import importlib.resources
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import jsonschema

import orjson

from fsqueue import sweep as sweeps
from fsqueue.errors import InvalidJob
from fsqueue.sweep import Sweep

FORMAT_VERSION = 1
MAX_JOBS_PER_FILE = 100_000
MAX_ERRORS_SHOWN = 5

# A name is a label: printable, no path separators, no "..", no leading dot, so that no
# tool that carelessly joins it to a directory can escape (the spool itself never does).
# Use these with fullmatch: `$` alone also matches before a final newline.
_NAME_RE = re.compile(r"^[^\x00-\x1f\x7f/\\]+$")
_ENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class JobState(enum.StrEnum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    SKIPPED = "SKIPPED"  # a dependency can no longer be met
    TIMEOUT = "TIMEOUT"  # ran past its walltime and was stopped

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.REJECTED,
                          JobState.SKIPPED, JobState.TIMEOUT})

# None stands for "not yet known to the manager": a job enters the machine queued or rejected.
TRANSITIONS: Mapping[JobState | None, frozenset[JobState]] = {
    None: frozenset({JobState.QUEUED, JobState.REJECTED}),
    # QUEUED -> FAILED: the job could not be started through its own fault (no such program, bad wd).
    # QUEUED -> SKIPPED: a job it depends on ended in a way that can never satisfy it.
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELED, JobState.SKIPPED}),
    # RUNNING -> QUEUED: the job runs again: it has retries left, its launch failed, or a restarting
    # manager found it left running by its predecessor.
    JobState.RUNNING: frozenset(
        {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELED, JobState.TIMEOUT, JobState.QUEUED}
    ),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELED: frozenset(),
    JobState.REJECTED: frozenset(),
    JobState.SKIPPED: frozenset(),
    JobState.TIMEOUT: frozenset(),
}


class IllegalTransition(Exception):
    """A bug: code tried to move a job along an edge the state machine does not have."""


@dataclass(frozen=True)
class Range:
    """A count the scheduler may choose within: start once `min` fits, take up to `max`."""

    min: int
    max: int

    @classmethod
    def parse(cls, value: int | Mapping[str, int] | None) -> Range:
        # JSON Schema counts 2.0 as an integer; int() keeps the arithmetic and the output integral.
        if value is None:
            return cls(1, 1)
        if isinstance(value, (int, float)):
            return cls(int(value), int(value))
        low = int(value["min"])
        return cls(low, int(value.get("max", low)))

    def to_json(self) -> int | dict[str, int]:
        return self.min if self.min == self.max else {"min": self.min, "max": self.max}


@dataclass(frozen=True)
class JobSpec:
    """One validated job. `document` is the job as submitted (with its id), kept for the record."""

    id: str
    name: str | None
    exec: str | None
    args: tuple[str, ...]
    script: str | None
    env: Mapping[str, str]
    wd: str | None
    stdin: str | None
    stdout: str | None
    stderr: str | None
    cores: Range
    nodes: Range
    document: Mapping[str, Any]
    tasks_per_node: int = 1
    exclusive: bool = False
    gpus: int = 0  # on each node
    after: tuple[tuple[str, str], ...] = ()  # (id or name, condition)
    priority: int = 0
    walltime: float | None = None  # seconds
    retries: int = 0
    rerun_of: str | None = None  # the ended job this one runs again (fsq rerun)
    sweep: Sweep | None = None  # a template: the manager runs its iterations, not the job itself
    iteration: tuple[str, int] | None = None  # (sweep id, 0-based index) of one iteration of a sweep

    @property
    def argv(self) -> tuple[str, ...]:
        if self.script is not None:
            return ("bash", "-c", self.script, self.name or self.id)
        assert self.exec is not None
        return (self.exec, *self.args)


@dataclass(frozen=True)
class Placement:
    """Where a job runs: for each node, the core indices it holds there."""

    cores: tuple[tuple[str, tuple[int, ...]], ...]
    gpus: tuple[tuple[str, tuple[str, ...]], ...] = ()  # for each node, the GPU ids it holds there

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(node for node, _ in self.cores)

    @property
    def total_cores(self) -> int:
        return sum(len(cores) for _, cores in self.cores)


@dataclass(frozen=True)
class Usage:
    """What the job's processes consumed, from wait4(2)'s rusage."""

    cpu_user: float
    cpu_system: float
    max_rss_kib: int | None  # None: at most the manager's own peak, which the kernel reports in its place


@dataclass(frozen=True)
class JobRecord:
    """Everything the manager knows about one job; the status file is its JSON form."""

    spec: JobSpec
    submission: str
    submit_time: float
    stdout: str
    stderr: str
    state: JobState | None = None
    seq: int = 0
    attempt: int = 1
    start_time: float | None = None
    end_time: float | None = None
    placement: Placement | None = None
    exit_code: int | None = None
    signal: int | None = None
    reason: str | None = None
    usage: Usage | None = None
    launch_failures: int = 0  # tries the infrastructure failed to start; never counted against the job
    failures: int = 0  # attempts that failed or timed out and were retried: what `retries` counts


def advance(record: JobRecord, state: JobState, **changes: Any) -> JobRecord:
    """The one place a job changes state: check the edge, bump the sequence number."""
    if state not in TRANSITIONS[record.state]:
        raise IllegalTransition(f"job {record.spec.id}: {record.state} -> {state} is not allowed")
    return dataclasses.replace(record, state=state, seq=record.seq + 1, **changes)


def annotate(record: JobRecord, **changes: Any) -> JobRecord:
    """Change what a status file says about a job (its reason, say) without changing its state."""
    if "state" in changes:
        raise IllegalTransition("annotate does not change states; use advance")
    return dataclasses.replace(record, seq=record.seq + 1, **changes)


def status_document(record: JobRecord, manager: Mapping[str, Any] | None = None,
                    sweep: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The JSON a status file holds (docs/spool.md, "Status files"); `sweep` is a sweep's progress."""
    placement = record.placement
    usage = record.usage
    document = {
        "version": FORMAT_VERSION,
        "id": record.spec.id,
        "name": record.spec.name,
        "state": str(record.state),
        "seq": record.seq,
        "attempt": record.attempt,
        "launch_failures": record.launch_failures,
        "failures": record.failures,
        "reason": record.reason,
        "exit_code": record.exit_code,
        "signal": record.signal,
        "submit_time": record.submit_time,
        "start_time": record.start_time,
        "end_time": record.end_time,
        "nodes": list(placement.nodes) if placement else [],
        "cores": {node: list(cores) for node, cores in placement.cores} if placement else {},
        "gpus": {node: list(gpus) for node, gpus in placement.gpus if gpus} if placement else {},
        "resources": _resources_json(record.spec),
        "stdout": record.stdout,
        "stderr": record.stderr,
        "usage": {"cpu_user": usage.cpu_user, "cpu_system": usage.cpu_system, "max_rss_kib": usage.max_rss_kib}
        if usage
        else None,
        "submission": record.submission,
        "manager": dict(manager) if manager else None,
    }
    if sweep is not None:
        document["sweep"] = dict(sweep)
    if record.spec.iteration is not None:
        sweep_id, index = record.spec.iteration
        document["iteration"] = {"sweep": sweep_id, "index": index}
    if record.spec.rerun_of is not None:
        document["rerun_of"] = record.spec.rerun_of
    return document


def _resources_json(spec: JobSpec) -> dict[str, Any]:
    resources: dict[str, Any] = {"cores": spec.cores.to_json(), "nodes": spec.nodes.to_json()}
    if spec.tasks_per_node != 1:
        resources["tasks_per_node"] = spec.tasks_per_node
    if spec.exclusive:
        resources["exclusive"] = True
    if spec.gpus:
        resources["gpus"] = spec.gpus
    return resources


# ---------------------------------------------------------------------------------------------
# Validation


@functools.cache
def job_schema() -> dict[str, Any]:
    text = importlib.resources.files("fsqueue").joinpath("job.schema.json").read_bytes()
    return orjson.loads(text)


@functools.cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema  # here, not at the top: it takes 50 ms, and only an invalid job needs it

    return jsonschema.Draft202012Validator(job_schema())


@functools.cache
def _is_valid() -> Callable[[Any], bool]:
    """Whether a job passes the schema: fastjsonschema's check, compiled to Python once per process.

    It says valid or not and stops at the first fault; jsonschema then finds every fault for the
    message. On a valid job it is 20-40 times faster (0.5-2.4 us against 9-90 us), and it imports in
    6 ms, so `fsq submit` of a valid file never imports jsonschema. A job it refuses is judged again by
    jsonschema, whose verdict stands (tests/unit/test_schema_checks.py holds the two to the same
    verdicts, and the schema to keywords both know: fastjsonschema ignores one it does not). One known
    difference: a Python tuple passes as an array here, where jsonschema refuses it; jobs read from
    JSON hold none, and orjson writes a tuple as an array. Version 2.22 or later: before it, enum and
    const compared true equal to 1.
    """
    import fastjsonschema

    check = fastjsonschema.compile(job_schema())

    def is_valid(job: Any) -> bool:
        try:
            check(job)
        except fastjsonschema.JsonSchemaException:
            return False
        return True

    return is_valid


def parse_jobs(document: Any, ids: Iterator[str], read_text: Callable[[str], str] | None = None) -> list[JobSpec]:
    """Validate a parsed submission (one job or a list) and give each job without an id the next of `ids`.

    Raises InvalidJob naming every field at fault (up to MAX_ERRORS_SHOWN), e.g.
    `jobs[3].resources.cores.min: must be >= 1, got 0`. A sweep's parameter file is read with
    `read_text(path)` (path as written, relative to the job's wd) into the sweep's values, so that the
    accepted job holds what ran; without `read_text` such a job is refused.
    """
    if isinstance(document, list):
        if not document:
            raise InvalidJob("the file holds an empty list: nothing to run")
        if len(document) > MAX_JOBS_PER_FILE:
            raise InvalidJob(f"the file holds {len(document)} jobs; at most {MAX_JOBS_PER_FILE} per file")
        items = [(f"jobs[{index}].", job) for index, job in enumerate(document)]
    elif isinstance(document, dict):
        items = [("", document)]
    else:
        raise InvalidJob(f"a submission is a JSON object or a list of objects, got {json_type(document)}")
    errors: list[str] = []
    specs: list[JobSpec] = []
    for prefix, job in items:
        problems = job_problems(job)
        if not problems and "file" in job.get("sweep", {}):
            job, problems = _read_parameter_file(job, read_text)
        if problems:
            errors.extend(prefix + problem for problem in problems)
            if len(errors) > MAX_ERRORS_SHOWN:  # one more than shown, so that "and more" is said
                break
        else:
            specs.append(_build_spec(job, ids))
    if errors:
        shown = "; ".join(errors[:MAX_ERRORS_SHOWN])
        more = f" (and more; first {MAX_ERRORS_SHOWN} shown)" if len(errors) > MAX_ERRORS_SHOWN else ""
        raise InvalidJob(shown + more)
    return specs


def _read_parameter_file(job: dict[str, Any], read_text: Callable[[str], str] | None) -> tuple[dict[str, Any], list[str]]:
    given = job["sweep"]["file"]
    if read_text is None:
        return job, ["sweep.file: parameter files are read by fsq submit or the manager, not here"]
    path = posixpath.join(job.get("wd") or "", given)  # an absolute `given` stays as it is
    try:
        values = sweeps.values_from_lines(read_text(path), job["sweep"].get("header", False))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        return job, [f"sweep.file: cannot use {path}: {why}"]
    if not values:
        return job, [f"sweep.file: {path} has no iterations (blank lines and # comments are skipped)"]
    # The values go through every check a sweep's values written in the job get: the schema's limits
    # (iterations, parameters per iteration) as well as the sweep's own rules.
    job = {**job, "sweep": {"values": values}}
    return job, job_problems(job)


def iteration_spec(spec: JobSpec, index: int) -> JobSpec:
    """Iteration `index` of a sweep, as a job of its own with the id SWEEP_ID.INDEX."""
    assert spec.sweep is not None
    job_id = f"{spec.id}.{index}"
    document = sweeps.iteration_document(spec.document, job_id, spec.sweep.variables(index))
    return dataclasses.replace(_build_spec(document, iter(())), iteration=(spec.id, index))


def accepted_specs(document: Any) -> list[JobSpec]:
    """The jobs of a file the manager accepted earlier: already validated and stamped with ids.

    Not validated again (a restart reads every accepted job); what would stop the start is refused:
    InvalidJob for a document that is no job, or a job without its id.
    """
    jobs = document if isinstance(document, list) else [document]
    for job in jobs:
        if not isinstance(job, dict) or not isinstance(job.get("id"), str) or not job["id"]:
            raise InvalidJob("not an accepted job: every job is an object stamped with its id")
    return [_build_spec(job, iter(())) for job in jobs]


def job_problems(job: Any) -> list[str]:
    """Every reason this one job is invalid, as 'field: why' strings; empty when valid."""
    if not isinstance(job, dict):
        return [f"job: must be an object, got {json_type(job)}"]
    if not _is_valid()(job):
        problems = [_describe(error) for error in _validator().iter_errors(job)]
        if problems:
            return sorted(problems)
    return _semantic_problems(job)


def _semantic_problems(job: Mapping[str, Any]) -> list[str]:
    problems = [f"{field}: contains a NUL byte, which no program argument, variable or path can hold"
                for field, text in _strings(job) if "\x00" in text]
    if ("exec" in job) == ("script" in job):
        problems.append("job: needs exactly one of exec (with args) or script")
    if "args" in job and "script" in job:
        problems.append("args: goes with exec, not with script")
    name = job.get("name")
    if name is not None and (not _NAME_RE.fullmatch(name) or ".." in name or name.startswith(".")):
        problems.append(
            f"name: {name!r} is not a label: no '/', '\\', '..', control characters or leading '.'"
        )
    for key in job.get("env", {}):
        if not _ENV_KEY_RE.fullmatch(key):
            problems.append(f"env.{key}: not a valid variable name")
        elif key.startswith("FSQ_"):
            problems.append(f"env.{key}: names starting with FSQ_ are set by fsqueue")
    if "sweep" in job:
        problems.extend(sweeps.problems(job["sweep"]))
    if isinstance(job.get("walltime"), str) and parse_duration(job["walltime"]) <= 0:
        problems.append(f"walltime: must be more than 0 seconds, got {job['walltime']!r}")
    resources = job.get("resources", {})
    for field in ("cores", "nodes"):
        value = resources.get(field)
        if isinstance(value, dict) and value.get("max", value["min"]) < value["min"]:
            problems.append(f"resources.{field}: min ({value['min']}) is greater than max ({value['max']})")
    if resources.get("exclusive") and "cores" in resources:
        problems.append("resources.exclusive: a job with whole nodes gets all their cores; leave cores out")
    tasks, cores = resources.get("tasks_per_node", 1), resources.get("cores", 1)
    if tasks > 1 and not resources.get("exclusive"):
        low = cores if isinstance(cores, int) else cores["min"]
        if not isinstance(cores, int) and cores.get("max", low) != low:
            problems.append("resources.tasks_per_node: goes with a fixed number of cores, not a range")
        elif low % tasks:
            problems.append(f"resources.tasks_per_node: {tasks} tasks cannot share {low} cores evenly")
    return problems


def _strings(job: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Every string that reaches exec, the environment or a path, with its field name."""
    for field in ("exec", "script", "wd", "stdin", "stdout", "stderr", "name"):
        if isinstance(job.get(field), str):
            yield field, job[field]
    for index, arg in enumerate(job.get("args", ())):
        yield f"args[{index}]", arg
    for key, value in job.get("env", {}).items():
        yield f"env.{key}", key + value


def _build_spec(job: Mapping[str, Any], ids: Iterator[str]) -> JobSpec:
    job_id = job.get("id") or next(ids)
    document = job if "id" in job else {"id": job_id, **job}
    resources = job.get("resources", {})
    return JobSpec(
        id=job_id,
        name=job.get("name"),
        exec=job.get("exec"),
        args=tuple(job.get("args", ())),
        script=job.get("script"),
        env=job.get("env", {}),
        wd=job.get("wd"),
        stdin=job.get("stdin"),
        stdout=job.get("stdout"),
        stderr=job.get("stderr"),
        cores=Range.parse(resources.get("cores")),
        nodes=Range.parse(resources.get("nodes")),
        document=document,
        tasks_per_node=int(resources.get("tasks_per_node", 1)),
        exclusive=resources.get("exclusive", False),
        gpus=int(resources.get("gpus", 0)),
        after=tuple(
            (item, "afterok") if isinstance(item, str) else (item["job"], item.get("when", "afterok"))
            for item in job.get("after", ())
        ),
        priority=int(job.get("priority", 0)),
        walltime=parse_duration(job["walltime"]) if "walltime" in job else None,
        retries=int(job.get("retries", 0)),
        sweep=Sweep.parse(job["sweep"]) if "sweep" in job else None,
        rerun_of=job.get("rerun_of"),
    )


def parse_duration(value: float | str) -> float:
    """Seconds from a number, or from a string in Slurm's --time forms (the schema has checked which):
    MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS."""
    if not isinstance(value, str):
        return float(value)
    days, dash, clock = value.partition("-") if "-" in value else ("0", "", value)
    parts = [int(part) for part in clock.split(":")]
    if dash:  # after a day count the clock starts with hours
        parts += [0] * (3 - len(parts))
    else:  # without one, MM:SS or HH:MM:SS
        parts = [0] * (3 - len(parts)) + parts
    hours, minutes, seconds = parts
    return float(((int(days) * 24 + hours) * 60 + minutes) * 60 + seconds)


_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number"}


def json_type(value: Any) -> str:
    return "null" if value is None else _JSON_TYPES.get(type(value), type(value).__name__)


def show_value(value: Any) -> str:
    """A value as a message quotes it: JSON for a scalar, its type for an object or array, at most 60 characters."""
    text = orjson.dumps(value).decode() if not isinstance(value, (dict, list)) else json_type(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _field(path: Sequence[Any]) -> str:
    parts = []
    for part in path:
        parts.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(parts).lstrip(".") or "job"


def _describe(error: jsonschema.ValidationError) -> str:
    """Say one schema violation the way a person would, naming the field."""
    field = _field(list(error.absolute_path))
    kind, expected, got = error.validator, error.validator_value, error.instance
    if kind == "additionalProperties":
        known = sorted(error.schema.get("properties", {}))
        extra = sorted(set(got) - set(known))
        where = f"{field}." if field != "job" else ""
        if not known:  # a mapping of arbitrary keys whose values are wrong
            return f"{field}: {error.message}"
        return f"{where}{extra[0]}: unknown field (known: {', '.join(known)})"
    messages = {
        "type": lambda: f"must be {_type_words(expected)}, got {json_type(got)}"
        + ("" if got is None or isinstance(got, (dict, list)) else f" {show_value(got)}"),
        "minimum": lambda: f"must be >= {expected}, got {got}",
        "maximum": lambda: f"must be <= {expected}, got {got}",
        "minLength": lambda: "must not be empty" if expected == 1 else f"must be at least {expected} characters",
        "maxLength": lambda: f"is {len(got)} characters long; at most {expected}",
        "maxItems": lambda: f"has {len(got)} items; at most {expected}",
        "minItems": lambda: "must not be empty" if expected == 1 else f"needs at least {expected} items",
        "minProperties": lambda: "must not be empty" if expected == 1 else f"needs at least {expected} entries",
        "maxProperties": lambda: f"has {len(got)} entries; at most {expected}",
        "const": lambda: f"must be {expected}, got {show_value(got)}",
        "pattern": lambda: _PATTERN_WORDS.get(field, "does not have the expected form").format(show_value(got)),
        "exclusiveMinimum": lambda: f"must be > {expected}, got {got}",
        "enum": lambda: f"must be one of {', '.join(map(str, expected))}, got {show_value(got)}",
        "required": lambda: f"needs {', '.join(repr(r) for r in expected if r not in got)}",
    }
    describe = messages.get(kind)
    return f"{field}: {describe() if describe else error.message}"


_PATTERN_WORDS = {
    "id": "{} is not an fsqueue id; leave id out and the manager makes one",
    "walltime": "must be seconds, or MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS as in Slurm, got {}",
}


def _type_words(expected: str | list[str]) -> str:
    names = [expected] if isinstance(expected, str) else expected
    words = {"integer": "an integer", "object": "an object", "string": "a string", "array": "an array",
             "number": "a number"}
    return " or ".join(words.get(name, name) for name in names)
