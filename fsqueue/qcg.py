"""Translate QCG-PilotJob request files (its file mode, `qcg-pm-service --file-path`) into fsqueue jobs.

Pure: the clock, the base working directory and the random part of QCG's ${uniq} are passed in. The
rules follow QCG-PilotJob 0.14.2 as it runs, read from its source (qcg/pilotjob/request.py, joblist.py,
manager.py, executionjob.py, executionschema.py, scheduleralgo.py) and checked against its file mode;
docs/migrating-from-qcg.md has the mapping field by field. What fsqueue cannot do the way QCG does is
refused with a message that names the QCG field.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fsqueue import model
from fsqueue import sweep as sweeps
from fsqueue.errors import InvalidJob

MODELS = ("default", "threads", "openmpi", "intelmpi", "srunmpi")  # executionschema.SlurmExecution.JOB_MODELS
MPI_MODELS = frozenset({"openmpi", "intelmpi", "srunmpi"})
_KEYS = {
    "job": ("name", "execution", "resources", "iteration", "dependencies", "attributes"),
    "execution": ("exec", "args", "env", "script", "stdin", "stdout", "stderr", "modules", "venv", "wd", "model",
                  "model_opts"),
    "resources": ("numCores", "numNodes", "wt", "nodeCrs"),
    "iteration": ("start", "stop", "values"),
    "dependencies": ("after",),
}
# What QCG refuses in a name: ':' (joblist.Job.validate_jobname) and these (manager._prepare_jobs).
_NAME_BAD = frozenset("$(){}'\" \t\n:")
_WT = re.compile(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?")  # joblist.JobResources._wt_regex, matched in full here
# Requests to a running QCG service; in a file they have no fsqueue counterpart.
_NO_FILE_FORM = {
    "listJobs": "use `fsq list`",
    "jobStatus": "use `fsq status NAME`",
    "jobInfo": "use `fsq status NAME --json`",
    "cancelJob": "use `fsq cancel NAME`",
    "removeJob": "fsqueue keeps every job's status file in the spool",
    "resourcesInfo": "use `fsq status`",
    "status": "use `fsq status`",
    "finish": "QCG stops 2 s after reading it, whatever still runs; use a control request with "
              "finishAfterAllTasksDone, or `fsq shutdown`",
    "register": "it links QCG managers; fsqueue has one manager per spool",
    "notify": "it links QCG managers; fsqueue has one manager per spool",
}
_SENTINEL = "\x00"  # around a sweep variable while QCG's text is substituted; no valid job field holds NUL
_SWEEP_VARIABLE = re.compile(r"\$\{(it|index|itval)\}")


@dataclass(frozen=True)
class Context:
    """What QCG takes from its surroundings."""

    root_wd: str  # QCG's --wd, absolute: the wd of jobs without one, the base of relative ones, ${root_wd}
    now: datetime  # ${date} and ${dateTime}
    uniq: Callable[[], str]  # ${uniq}, one per submit request (QCG: str(uuid.uuid4()))


@dataclass(frozen=True)
class Translation:
    jobs: list[dict[str, Any]]  # fsqueue job documents, in file order
    origins: list[str]  # for each job, the QCG job it came from: "requests[0].jobs[1]"
    directories: list[str]  # working directories QCG would create before starting a job: make them first
    notes: list[str]  # where fsqueue will behave differently from QCG, said to the user
    finish_after_all: bool  # the file holds a control request finishAfterAllTasksDone


def translate(document: Any, context: Context) -> Translation:
    """The fsqueue jobs for a parsed QCG request file; InvalidJob naming the QCG field if one cannot be mapped."""
    submitted, finish = _submitted(document, context)
    if not submitted:
        raise InvalidJob("the file submits no jobs: it needs a request like {\"request\": \"submit\", \"jobs\": [...]}")
    named = _names(submitted)
    jobs, origins, notes, errors = [], [], [], []
    directories: dict[str, None] = {}  # in order, each once
    for path, request, job, variables in submitted:
        try:
            translated, dirs, job_notes = _job(path, request, job, variables, context, named)
        except InvalidJob as error:
            errors.append(str(error))
            if len(errors) > model.MAX_ERRORS_SHOWN:
                break
            continue
        jobs.append(translated)
        origins.append(path)
        directories.update(dict.fromkeys(dirs))
        notes += job_notes
    if errors:
        more = f" (and more; first {model.MAX_ERRORS_SHOWN} shown)" if len(errors) > model.MAX_ERRORS_SHOWN else ""
        raise InvalidJob("; ".join(errors[: model.MAX_ERRORS_SHOWN]) + more)
    return Translation(jobs, origins, list(directories), notes, finish)


# -- requests ----------------------------------------------------------------------------------------


def _submitted(document: Any, context: Context) -> tuple[list[tuple[str, int, Any, dict[str, str]]], bool]:
    """Every job description with its path, request number and request variables; and the finish request."""
    if not isinstance(document, list):
        raise InvalidJob(f"a QCG request file is a JSON array of requests (QCG's file mode reads nothing else), "
                         f"got {model.json_type(document)}")
    if document and all(isinstance(item, dict) and "request" not in item for item in document):
        # What the Python API's Jobs.save_to_file writes, and Manager.submit sends as one request.
        variables = _request_variables(1, context)
        return [(f"jobs[{index}]", 0, job, variables) for index, job in enumerate(document)], False
    submitted, submits, finish = [], 0, False
    for index, request in enumerate(document):
        path = f"requests[{index}]"
        kind = request.get("request") if isinstance(request, dict) else None
        if kind == "submit":
            jobs = request.get("jobs")
            if not isinstance(jobs, list) or not jobs:
                raise InvalidJob(f"{path}.jobs: a submit request needs a non-empty list of jobs")
            submits += 1  # ${rcnt}: QCG counts submit requests from 1 (request.SubmitReq.REQ_CNT)
            variables = _request_variables(submits, context)
            submitted += [(f"{path}.jobs[{j}]", index, job, variables) for j, job in enumerate(jobs)]
        elif kind == "control":
            if request.get("command") != "finishAfterAllTasksDone":
                raise InvalidJob(f"{path}.command: {model.show_value(request.get('command'))} is not a QCG control command "
                                 f"(the only one is finishAfterAllTasksDone)")
            finish = True
        elif kind in _NO_FILE_FORM:
            raise InvalidJob(f"{path}.request: '{kind}' is a question or an order for a running QCG manager, "
                             f"with no place in a job file: {_NO_FILE_FORM[kind]}")
        elif isinstance(kind, str):
            raise InvalidJob(f"{path}.request: unknown request '{kind}' (QCG knows submit, control and "
                             f"{', '.join(_NO_FILE_FORM)})")
        else:
            raise InvalidJob(f"{path}: a request is an object with a 'request' name, like "
                             f"{{\"request\": \"submit\", \"jobs\": [...]}}")
    return submitted, finish


def _request_variables(count: int, context: Context) -> dict[str, str]:
    """The variables QCG substitutes in a whole job description when it takes the request in."""
    now = str(context.now)
    # ${time} is str(datetime.time()), midnight, in QCG 0.14.2; kept so that files give the same text.
    return {"rcnt": str(count), "uniq": context.uniq(), "sname": "local", "date": now, "time": "00:00:00",
            "dateTime": now}


def _names(submitted: list[tuple[str, int, Any, dict[str, str]]]) -> dict[str, tuple[str, int]]:
    """Each job name of the file (after substitution), with where it is and its request's position."""
    named: dict[str, tuple[str, int]] = {}
    for path, request, job, variables in submitted:
        name = job.get("name") if isinstance(job, dict) else None
        if isinstance(name, str):
            named.setdefault(_substitute(name, variables), (path, request))
    return named


# -- one job -----------------------------------------------------------------------------------------


def _job(path: str, request: int, job: Any, variables: dict[str, str], context: Context,
         named: dict[str, tuple[str, int]]) -> tuple[dict[str, Any], list[str], list[str]]:
    """One QCG job as one fsqueue job, the directories to create for it, and notes."""
    _check_keys(job, "job", path)
    if "attributes" in job:
        raise InvalidJob(f"{path}.attributes: attributes steer QCG's partition managers; fsqueue has none")
    name = _name(job, path, variables, named)
    job = _fill({key: value for key, value in job.items() if key != "name"}, {**variables, "jname": name})
    execution = job.get("execution")
    if execution is None:
        raise InvalidJob(f"{path}.execution: QCG requires it: {{\"exec\": ..., \"args\": [...]}} or "
                         f"{{\"script\": ...}}")
    _check_keys(execution, "execution", f"{path}.execution")
    kind = _model(execution, path)
    resources, counts = _resources(job.get("resources", {"numCores": {"exact": 1}}), kind, path)
    sweep, notes = _iteration(job.get("iteration"), path)
    start = _start_variables(context.root_wd, counts, sweep)
    out: dict[str, Any] = {"name": name, **_program(execution, path, start, sweep)}
    if resources != {"cores": 1}:
        out["resources"] = resources
    if "wt" in job.get("resources", {}):
        out["walltime"] = _walltime(job["resources"]["wt"], f"{path}.resources.wt")
    after, after_notes = _after(job.get("dependencies"), path, request, sweep, named)
    if after:
        out["after"] = after
    if sweep:
        out["sweep"] = sweep
    problems = [_blame(path, problem) for problem in model.job_problems(out)]
    if problems:
        raise InvalidJob("; ".join(problems))
    return out, _directories(out["wd"], sweep), notes + after_notes


def _directories(wd: str, sweep: dict[str, Any] | None) -> list[str]:
    """The working directories QCG would create: one per iteration when the wd names the iteration."""
    if sweep is None or "${" not in wd:
        return [wd]
    iterations = sweeps.Sweep.parse(sweep)
    return list(dict.fromkeys(sweeps.substitute(wd, iterations.variables(i)) for i in range(len(iterations))))


def _name(job: dict[str, Any], path: str, variables: dict[str, str], named: dict[str, tuple[str, int]]) -> str:
    if not isinstance(job.get("name"), str):
        raise InvalidJob(f"{path}.name: QCG requires a name (a string) for every job")
    name = _substitute(job["name"], variables)
    if not name or _NAME_BAD & set(name):
        raise InvalidJob(f"{path}.name: {name!r} is not a QCG job name (no ':', '$', braces, parentheses, "
                         f"quotes or blanks)")
    if named[name][0] != path:
        raise InvalidJob(f"{path}.name: '{name}' is already the name of {named[name][0]}; QCG requires unique names")
    return name


def _model(execution: dict[str, Any], path: str) -> str:
    kind = execution.get("model") or "default"
    if not isinstance(kind, str) or kind.lower() not in MODELS:
        raise InvalidJob(f"{path}.execution.model: {model.show_value(kind)} is not supported; use "
                         f"{', '.join(MODELS[:-1])} or {MODELS[-1]}")
    options = execution.get("model_opts") or {}
    if not isinstance(options, dict):
        raise InvalidJob(f"{path}.execution.model_opts: must be an object, got {model.json_type(options)}")
    for key in options:
        raise InvalidJob(f"{path}.execution.model_opts.{key}: not supported: fsqueue starts a job with its own "
                         f"srun line (docs/slurm.md), not with mpirun, and takes no extra launcher options")
    return kind.lower()


# -- execution ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Start:
    """The variables QCG fills in `execution` when a job starts (executionjob._replace_job_variables).

    `values` maps the sweep variables and those known only at start to NUL-delimited markers, found
    again after QCG's substitution: the first become fsqueue's ${it} and ${itval}, the others an error.
    """

    values: dict[str, str]
    unknowable: dict[str, str]  # name -> why, and what to use instead


def _start_variables(root_wd: str, counts: tuple[int | None, int | None], sweep: dict[str, Any] | None) -> _Start:
    cores, nodes = counts
    values = {"root_wd": root_wd}
    unknowable = {"nlist": "is the job's node list, known only when it starts; in a script use $FSQ_NODES "
                           "(comma-separated too)"}
    for variable, count, instead in (("ncores", cores, "FSQ_NUM_CORES"), ("nnodes", nodes, "FSQ_NUM_NODES")):
        if count is None:
            unknowable[variable] = (f"depends on what the job gets (a range, or whole nodes), known only when it "
                                    f"starts; in a script use ${instead}")
        else:
            values[variable] = str(count)
    values.update((variable, f"{_SENTINEL}?{variable}{_SENTINEL}") for variable in unknowable)
    if sweep:  # QCG: ${it} is the iteration index, ${itval} its value (the index again for start/stop)
        values["it"] = f"{_SENTINEL}it{_SENTINEL}"
        values["itval"] = f"{_SENTINEL}{'itval' if 'values' in sweep else 'it'}{_SENTINEL}"
    return _Start(values, unknowable)


def _program(execution: dict[str, Any], path: str, start: _Start, sweep: dict[str, Any] | None) -> dict[str, Any]:
    """exec and args, or script; env, wd, stdin, stdout, stderr."""
    where = f"{path}.execution"

    def text(key: str, value: Any = None) -> str:
        value = execution[key] if value is None else value
        if not isinstance(value, str):
            raise InvalidJob(f"{where}.{key}: must be a string, got {model.json_type(value)}")
        return _run_substitute(value, f"{where}.{key}", start, sweep)

    has_exec, has_script = bool(execution.get("exec")), bool(execution.get("script"))
    if has_exec == has_script:
        raise InvalidJob(f"{where}: needs exec (with args) or script, not both")
    if has_script and execution.get("args"):
        raise InvalidJob(f"{where}.args: goes with exec, not with script")
    out: dict[str, Any] = {}
    wd = text("wd") if execution.get("wd") is not None else ""
    out["wd"] = posixpath.join(start.values["root_wd"], wd) if wd else start.values["root_wd"]
    for key in ("stdin", "stdout", "stderr"):
        if execution.get(key) is not None:
            out[key] = text(key)
    # QCG opens one file for both streams when they are the same path; fsqueue would open it twice.
    prefix = ["exec 2>&1"] if "stdout" in out and out.get("stderr") == out["stdout"] else []
    if prefix:
        del out["stderr"]
    prefix += _shell_prefix(execution, text)
    if has_exec:
        args = _list(execution.get("args", []), f"{where}.args")
        argv = [text("exec"), *(text(f"args[{i}]", _arg(a, f"{where}.args[{i}]")) for i, a in enumerate(args))]
        if prefix:
            out["script"] = "\n".join([*prefix, "exec " + shlex.join(argv)])
        else:
            out["exec"], out["args"] = argv[0], argv[1:]
    else:
        out["script"] = "\n".join([*prefix, text("script")])
    env = execution.get("env") or {}
    if not isinstance(env, dict):
        raise InvalidJob(f"{where}.env: must be an object of strings, got {model.json_type(env)}")
    if env:
        out["env"] = {_run_substitute(key, f"{where}.env.{key}", start, None, name=True):
                      text(f"env.{key}", value) if isinstance(value, str) else value for key, value in env.items()}
    return {key: out[key] for key in _EXECUTION_FIELDS if key in out}


# The fsqueue fields that QCG's execution object becomes, in the order a translated job lists them.
_EXECUTION_FIELDS = ("exec", "args", "script", "env", "wd", "stdin", "stdout", "stderr")


def _shell_prefix(execution: dict[str, Any], text: Callable[..., str]) -> list[str]:
    """The lines QCG's wrapping of modules and venv amounts to (executionjob._resolve_mods_venv)."""
    lines = []
    modules = execution.get("modules")
    if modules:
        names = [text(f"modules[{i}]", m) for i, m in enumerate(modules if isinstance(modules, list) else [modules])]
        lines.append(f"source /etc/profile && module load {' '.join(names)}")
    if execution.get("venv"):
        lines.append(f"source {shlex.quote(text('venv'))}/bin/activate")
    return lines


def _arg(value: Any, field: str) -> Any:
    # QCG passes str(arg) (joblist.JobExecution), so numbers and booleans become "5", "True".
    if isinstance(value, (str, int, float)):
        return value if isinstance(value, str) else str(value)
    raise InvalidJob(f"{field}: must be a string or a number, got {model.json_type(value)}")


def _run_substitute(text: str, field: str, start: _Start, sweep: dict[str, Any] | None, *,
                    name: bool = False) -> str:
    """QCG's start-time substitution, with the sweep variables turned into fsqueue's ${it} and ${itval}."""
    filled = _substitute(text, start.values)
    unknowable = re.search(f"{_SENTINEL}\\?(\\w+){_SENTINEL}", filled)
    if unknowable:
        variable = unknowable.group(1)
        raise InvalidJob(f"{field}: ${{{variable}}} {start.unknowable[variable]}")
    if name and _SENTINEL in filled:
        raise InvalidJob(f"{field}: the name changes with the iteration; fsqueue fills in values, not names")
    literal = _SWEEP_VARIABLE.search(filled) if sweep else None
    if literal:
        raise InvalidJob(f"{field}: {literal.group()} is plain text to QCG here, but fsqueue's sweep would fill "
                         f"it in; rename it (a shell variable, say)")
    return re.sub(f"{_SENTINEL}(it|itval){_SENTINEL}", r"${\1}", filled)


# -- resources ---------------------------------------------------------------------------------------


def _resources(resources: Any, kind: str, path: str) -> tuple[dict[str, Any], tuple[int | None, int | None]]:
    """fsqueue resources, and the total cores and nodes when they are fixed (for ${ncores}, ${nnodes})."""
    where = f"{path}.resources"
    _check_keys(resources, "resources", where)
    cores = _count(resources.get("numCores"), f"{where}.numCores")
    nodes = _count(resources.get("numNodes"), f"{where}.numNodes")
    if cores is None and nodes is None:
        raise InvalidJob(f"{where}: needs numCores, numNodes or both")
    # scheduleralgo.allocate_job: numCores alone is a total (fsqueue keeps it on one node); with numNodes
    # it is per node; numNodes alone means whole nodes.
    out: dict[str, Any] = {"exclusive": True} if cores is None else {"cores": model.Range(*cores).to_json()}
    if nodes is not None:
        out["nodes"] = model.Range(*nodes).to_json()
    if kind in MPI_MODELS:
        if cores is None:
            raise InvalidJob(f"{where}.numNodes: whole nodes with model '{kind}': fsqueue needs the number of ranks "
                             f"on each node; give numCores too (cores on each node, one rank each)")
        if cores[0] != cores[1]:
            raise InvalidJob(f"{where}.numCores: a range with model '{kind}': fsqueue starts a fixed number of "
                             f"ranks on each node; give exact")
        if cores[0] > 1:
            out["tasks_per_node"] = cores[0]
    elif nodes is not None and nodes[1] > 1:
        raise InvalidJob(f"{where}.numNodes: model '{kind}' runs one process, but under Slurm fsqueue starts a "
                         f"job's program on each of its nodes; use one node, or an MPI model (srunmpi, openmpi, "
                         f"intelmpi) for a program that spans nodes")
    gpus = _gpus(resources.get("nodeCrs"), f"{where}.nodeCrs")
    if gpus:
        out["gpus"] = gpus
    fixed_nodes = 1 if nodes is None else nodes[0] if nodes[0] == nodes[1] else None
    fixed_cores = cores[0] * fixed_nodes if cores and cores[0] == cores[1] and fixed_nodes else None
    return out, (fixed_cores, fixed_nodes)


def _count(value: Any, field: str) -> tuple[int, int] | None:
    """QCG's ResourceSize: an integer, {exact}, or {min, max}; as (min, max)."""
    if value is None:
        return None
    if isinstance(value, dict):
        for key in value:
            if key not in ("exact", "min", "max", "scheduler"):
                raise InvalidJob(f"{field}.{key}: unknown field (QCG knows exact, min, max and scheduler)")
        if "scheduler" in value:
            scheduler = value["scheduler"]
            label = scheduler.get("name") if isinstance(scheduler, dict) else scheduler
            raise InvalidJob(f"{field}.scheduler: QCG's iteration resource scheduler {model.show_value(label)} is not "
                             f"supported; give exact, or min and max")
        if "exact" in value and ("min" in value or "max" in value):
            raise InvalidJob(f"{field}: exact goes alone, not with min or max")
        if "exact" not in value and not ("min" in value and "max" in value):
            raise InvalidJob(f"{field}: needs exact, or both min and max")
        low, high = (value["exact"],) * 2 if "exact" in value else (value["min"], value["max"])
    else:
        low = high = value
    for number in (low, high):
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidJob(f"{field}: must be an integer or an object like {{\"exact\": 4}}, got "
                             f"{model.json_type(number)} {model.show_value(number)}")
        if number < 1:
            raise InvalidJob(f"{field}: must be at least 1, got {number}")
    if low > high:
        raise InvalidJob(f"{field}: min ({low}) is greater than max ({high})")
    return low, high


def _gpus(crs: Any, field: str) -> int:
    if crs is None:
        return 0
    if not isinstance(crs, dict):
        raise InvalidJob(f"{field}: must be an object like {{\"gpu\": 2}}, got {model.json_type(crs)}")
    gpus = 0
    for key, count in crs.items():
        if key.upper() == "MEM":
            raise InvalidJob(f"{field}.{key}: fsqueue has no memory resource; under Slurm each job gets the "
                             f"allocation's memory per CPU (docs/slurm.md)")
        if key.upper() != "GPU":
            raise InvalidJob(f"{field}.{key}: unknown consumable resource (QCG knows gpu and mem)")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidJob(f"{field}.{key}: must be an integer of at least 1, got {model.show_value(count)}")
        gpus = count
    return gpus


def _walltime(value: Any, field: str) -> int:
    match = _WT.fullmatch(value) if isinstance(value, str) else None
    seconds = 0
    if match:
        hours, minutes, secs = (int(part or 0) for part in match.groups())
        seconds = (hours * 60 + minutes) * 60 + secs
    if not seconds:
        raise InvalidJob(f"{field}: {model.show_value(value)} is not a QCG wall time such as \"2h30m\", \"90m\" or \"45s\"")
    return seconds


# -- iteration and dependencies ----------------------------------------------------------------------


def _iteration(iteration: Any, path: str) -> tuple[dict[str, Any] | None, list[str]]:
    """The fsqueue sweep, and notes."""
    if iteration is None:
        return None, []
    where = f"{path}.iteration"
    _check_keys(iteration, "iteration", where)
    if "values" in iteration:
        if "stop" in iteration:
            raise InvalidJob(f"{where}: stop and values exclude each other")
        values = iteration["values"]
        if not isinstance(values, list) or not values:
            raise InvalidJob(f"{where}.values: must be a non-empty list")
        texts = [_arg(value, f"{where}.values[{i}]") for i, value in enumerate(values)]
        notes = [f"{where}.start: ignored with values, as QCG does"] if "start" in iteration else []
        # Objects, so that fsqueue's ${it} is the index as in QCG, and iterations are named NAME:INDEX.
        return {"values": [{"itval": text} for text in texts]}, notes
    if "stop" not in iteration:
        raise InvalidJob(f"{where}: needs stop (with an optional start) or values")
    start, stop = iteration.get("start", 0), iteration["stop"]
    for key, number in (("start", start), ("stop", stop)):
        if isinstance(number, bool) or not isinstance(number, int):
            raise InvalidJob(f"{where}.{key}: must be an integer, got {model.json_type(number)}")
    if start >= stop:
        raise InvalidJob(f"{where}: start ({start}) must be less than stop ({stop}); stop is not included")
    return {"range": {"start": start, "stop": stop}}, []


def _after(dependencies: Any, path: str, request: int, sweep: dict[str, Any] | None,
           named: dict[str, tuple[str, int]]) -> tuple[list[str], list[str]]:
    """fsqueue `after` from QCG's dependencies.after: names, NAME:INDEX, NAME:${it}; all afterok."""
    if dependencies is None:
        return [], []
    where = f"{path}.dependencies"
    _check_keys(dependencies, "dependencies", where)
    after = _list(dependencies.get("after", []), f"{where}.after")
    notes = []
    for index, entry in enumerate(after):
        field = f"{where}.after[{index}]"
        if not isinstance(entry, str):
            raise InvalidJob(f"{field}: must be a job name, got {model.json_type(entry)}")
        if "${it}" in entry and not sweep:
            raise InvalidJob(f"{field}: ${{it}} in a dependency needs an iteration job (QCG fails the submit)")
        base, colon, iteration = entry.partition(":")
        if "$" in entry.replace("${it}", "") or (colon and iteration != "${it}" and not iteration.isdigit()):
            raise InvalidJob(f"{field}: {entry!r} names no QCG job: NAME, NAME:INDEX or NAME:${{it}} "
                             f"(only ${{it}} is filled in here)")
        if base not in named:
            notes.append(f"{field}: no job named '{base}' in this file; fsqueue waits until one is submitted "
                         f"(QCG would skip this job)")
        elif named[base][1] > request:
            notes.append(f"{field}: '{base}' comes in a later request; QCG would skip this job, fsqueue waits for it")
    return after, notes


# -- helpers -----------------------------------------------------------------------------------------


def _check_keys(value: Any, kind: str, where: str) -> None:
    if not isinstance(value, dict):
        raise InvalidJob(f"{where}: must be an object, got {model.json_type(value)}")
    for key in value:
        if key not in _KEYS[kind]:
            raise InvalidJob(f"{where}.{key}: unknown field (QCG knows {', '.join(_KEYS[kind])})")


def _list(value: Any, field: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidJob(f"{field}: must be an array, got {model.json_type(value)}")
    return value


def _substitute(text: str, variables: Mapping[str, str]) -> str:
    return string.Template(text).safe_substitute(variables)


def _fill(value: Any, variables: Mapping[str, str]) -> Any:
    """QCG's take-in substitution, over the whole job description, names of fields included."""
    if isinstance(value, str):
        return _substitute(value, variables)
    if isinstance(value, list):
        return [_fill(item, variables) for item in value]
    if isinstance(value, dict):
        return {_fill(key, variables): _fill(item, variables) for key, item in value.items()}
    return value


def _blame(path: str, problem: str) -> str:
    """An fsqueue validation message about a translated job, pointed back at the QCG field."""
    field, _, why = problem.partition(": ")
    top = re.split(r"[.\[]", field, maxsplit=1)[0]
    if top in _EXECUTION_FIELDS:
        return f"{path}.execution.{field}: {why}"
    if top == "name":
        return f"{path}.name: {why}"
    if top == "after":
        return f"{path}.dependencies.{field}: {why}"
    return f"{path}: as an fsqueue job, {problem}"
