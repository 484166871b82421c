"""The client side of the spool, for Python callers and for the CLI: submit, status, list, wait, cancel.

Everything goes through the spool (fsqueue.spool); nothing here talks to a manager directly, so it all
works from any node that sees the spool, and submitting works while no manager runs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import orjson

from fsqueue import model
from fsqueue import rerun as reruns
from fsqueue.errors import FsqError, InvalidJob, SpoolError, WaitTimeout
from fsqueue.spool import (
    MAX_SUBMISSION_BYTES,
    IdMaker,
    Spool,
    is_job_id,
    is_submission_name,
    manager_alive,
    read_json,
    revalidate,
)

StatusDoc = dict[str, Any]


def submit(spool: str | os.PathLike[str], jobs: dict[str, Any] | list[dict[str, Any]], *, wd: str | None = None,
           group_shared: bool = False) -> list[str]:
    """Validate jobs here (so that errors reach the submitter), give them ids, publish them; return the ids.

    `wd` fills in the working directory of jobs that do not name one (the CLI passes its own);
    `group_shared` makes the spool group-shared (Spool.create).
    """
    target = Spool.create(spool, group_shared=group_shared)
    if wd is not None:
        documents = jobs if isinstance(jobs, list) else [jobs]
        filled = [doc if not isinstance(doc, dict) or "wd" in doc else {**doc, "wd": wd} for doc in documents]
        jobs = filled if isinstance(jobs, list) else filled[0]
    return _submit(target, jobs, IdMaker().many())


def _submit(target: Spool, jobs: dict[str, Any] | list[dict[str, Any]], ids: Iterator[str]) -> list[str]:
    """submit() into a spool already opened and checked; jobs without an id get the next of `ids`."""
    specs = model.parse_jobs(jobs, ids, target.read_parameter_file)  # the manager's own rule for whose file it may be
    stamped = [spec.document for spec in specs] if isinstance(jobs, list) else specs[0].document
    data = orjson.dumps(stamped, option=orjson.OPT_APPEND_NEWLINE)
    if len(data) > MAX_SUBMISSION_BYTES:
        # The manager would refuse the file after the ids were printed, and a wait on them would never end.
        raise InvalidJob(f"the jobs take {len(data)} bytes with their ids; a file holds at most "
                         f"{MAX_SUBMISSION_BYTES}: split them into several submissions")
    target.publish(target.incoming, f"{specs[0].id}.json", data)
    return [spec.id for spec in specs]


def command_job(argv: Sequence[str], *, name: str | None = None, cores: int | None = None,
                nodes: int | None = None) -> dict[str, Any]:
    """The job for `fsq submit [--name N] [--cores C] [--nodes K] -- CMD ARGS...`."""
    if not argv:
        raise FsqError("nothing to run: give a command after --")
    job: dict[str, Any] = {"exec": argv[0], "args": list(argv[1:])}
    if name is not None:
        job["name"] = name
    resources = {key: value for key, value in (("cores", cores), ("nodes", nodes)) if value is not None}
    if resources:
        job["resources"] = resources
    return job


def status(spool: str | os.PathLike[str], ref: str) -> list[StatusDoc]:
    """The status documents of job `ref` (an id, or a name that may belong to several jobs)."""
    return statuses(spool, [ref])


def statuses(spool: str | os.PathLike[str], refs: Sequence[str]) -> list[StatusDoc]:
    """status() of each of `refs`, in their order, from one look at the spool: the status files of the
    ids asked for (one revalidation of status/ for them all), or every status file once if some ref is
    a name; then only the unstarted iterations asked for, from their sweeps."""
    target = Spool.existing(spool)
    every = [] if all(map(is_job_id, refs)) else all_statuses(target)
    by_id = {doc["id"]: [doc] for doc in every}
    unread = [ref for ref in refs if is_job_id(ref) and ref not in by_id]
    by_id.update((job_id, [doc]) for job_id, doc in _current(target, unread).items() if doc)
    by_name = _by_name(every)
    return [doc for ref in refs for doc in (by_id if is_job_id(ref) else by_name).get(ref, [])]


def _by_name(documents: Iterable[StatusDoc]) -> dict[str | None, list[StatusDoc]]:
    """The documents grouped by job name (None for jobs without one), each group in the order given."""
    groups: dict[str | None, list[StatusDoc]] = {}
    for doc in documents:
        groups.setdefault(doc.get("name"), []).append(doc)
    return groups


def _current(target: Spool, job_ids: Iterable[str]) -> dict[str, StatusDoc | None]:
    """The status of each job as the file server has it now; an iteration that never started (it has no
    file) as its sweep's file says. One revalidation for the jobs, one more for their sweeps if needed."""
    found = target.read_statuses(job_ids)
    missing = [job_id for job_id, doc in found.items() if doc is None and "." in job_id]
    sweeps = target.read_statuses({job_id.partition(".")[0] for job_id in missing})
    for job_id in missing:
        found[job_id] = _unstarted_iteration(sweeps[job_id.partition(".")[0]], job_id)
    return found


def _unstarted_iteration(sweep: StatusDoc | None, job_id: str) -> StatusDoc | None:
    """Iteration `job_id` of a sweep whose status file is `sweep`, for an iteration that never started."""
    sweep_id, _, index = job_id.partition(".")
    if not sweep or int(index) >= sweep.get("sweep", {}).get("total", 0):
        return None
    canceled = sweep["state"] == "CANCELED"
    return {
        "version": sweep.get("version"), "id": job_id, "name": None,
        "state": "CANCELED" if canceled else "QUEUED",
        "reason": "canceled with its sweep before it started" if canceled else "not started yet",
        "submit_time": sweep.get("submit_time"), "end_time": sweep.get("end_time") if canceled else None,
        "iteration": {"sweep": sweep_id, "index": int(index)}, "submission": sweep.get("submission"),
    }


def list_jobs(spool: str | os.PathLike[str], states: Iterable[str] = ()) -> list[StatusDoc]:
    wanted = {state.upper() for state in states}
    return [doc for doc in all_statuses(Spool.existing(spool)) if not wanted or doc.get("state") in wanted]


def all_statuses(target: Spool) -> list[StatusDoc]:
    """Every status file of the spool, in id order (a file removed since the listing is left out)."""
    return [doc for doc in target.read_statuses(target.status_ids()).values() if doc]


@dataclass(frozen=True)
class ManagerView:
    info: dict[str, Any] | None
    alive: bool
    note: str  # one line for people: "serving since ...", "not running since ..."


def manager(spool: str | os.PathLike[str], now: float | None = None) -> ManagerView:
    """Who serves the spool, judged by the heartbeat's age (clocks of two nodes may differ a little)."""
    info = Spool.existing(spool).read_manager_info()
    now = time.time() if now is None else now
    if not info:
        return ManagerView(None, False, "no manager has served this spool yet")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(info.get("heartbeat", 0))))
    if not manager_alive(info, now):
        return ManagerView(info, False, f"manager not running since {when} (last heartbeat)")
    return ManagerView(info, True, f"manager {info.get('phase')} on {info.get('host')} pid {info.get('pid')}, heartbeat {when}")


def summary(spool: str | os.PathLike[str]) -> dict[str, Any]:
    """Counts per state and cores busy/free, from the manager's heartbeat; waiting files from incoming/."""
    target = Spool.existing(spool)
    view = manager(spool)
    info = view.info or {}
    nodes = info.get("nodes", [])
    return {
        "manager": {"alive": view.alive, "note": view.note, "host": info.get("host"), "pid": info.get("pid"),
                    "stalled": bool(view.alive and info.get("stalled"))},
        "counts": info.get("counts", {}),
        "incoming": len(target.scan(target.incoming).candidates),
        "cores": {"total": sum(n["cores"] for n in nodes), "busy": sum(n["busy"] for n in nodes)},
        "nodes": nodes,
    }


def wait(
    spool: str | os.PathLike[str],
    refs: Sequence[str],
    *,
    timeout: float | None = None,
    poll_max: float = 1.0,
    on_final: Callable[[StatusDoc], None] | None = None,
) -> list[StatusDoc]:
    """Block until every job named by `refs` (ids or names) is final; return their last status.

    Polls with a back-off from 10 ms to `poll_max`, reading only the jobs not final yet. A name that
    no status file carries yet may belong to a file the manager has not taken in: it is looked for again.
    Also returns, with those jobs still QUEUED, once the manager says it is stalled (manager.json) and
    every job waited for is queued: they wait for something no job in the spool can bring.
    """
    target = Spool.existing(spool)  # a mistyped spool is an error, not a new spool to wait on forever
    deadline = None if timeout is None else time.monotonic() + timeout
    final: dict[str, StatusDoc] = {}
    pending_ids = {ref for ref in refs if is_job_id(ref)}
    pending_names = {ref for ref in refs if not is_job_id(ref)}
    delay = 0.01
    while True:
        if pending_names:
            resolved = set()
            for doc in all_statuses(target):
                if doc.get("name") in pending_names:
                    pending_ids.add(doc["id"])
                    resolved.add(doc["name"])
            pending_names -= resolved
        # One look per round that asks the file server, not this node's cache: on NFS a status file
        # written on the manager's node can otherwise stay missing or old here for 30-60 s.
        documents = _current(target, pending_ids)
        for job_id, current in sorted(documents.items()):
            if current and current.get("state") in model.FINAL_STATES:  # a StrEnum: its strings match
                final[job_id] = current
                pending_ids.discard(job_id)
                if on_final:
                    on_final(current)
        if not pending_ids and not pending_names:
            return [final[job_id] for job_id in sorted(final)]
        stuck = None if pending_names else _stalled(target, documents, deadline, poll_max)
        if stuck is not None:
            merged = final | stuck
            return [merged[job_id] for job_id in sorted(merged)]
        if deadline is not None and time.monotonic() >= deadline:
            waiting = sorted(pending_ids | pending_names)
            raise WaitTimeout(f"timed out; still waiting for {len(waiting)} job(s): {', '.join(waiting[:5])}")
        time.sleep(delay if deadline is None else max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 1.5, poll_max)


def wait_all(spool: str | os.PathLike[str], *, timeout: float | None = None, poll_max: float = 1.0,
             on_progress: Callable[[dict[str, int]], None] | None = None) -> dict[str, int]:
    """Block until nothing is queued, running or waiting in incoming/, by the manager's own counts; or
    until the manager says the jobs still queued are stalled (they wait for dependencies nothing in
    the spool can meet): then the counts returned hold QUEUED.

    Counts are only trusted from a heartbeat written after incoming/ and claimed/ were seen empty, so a
    file the manager took in just before is never missed.
    """
    target = Spool.existing(spool)
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = 0.01
    while True:
        before = target.read_manager_info() or {}
        drop_boxes_empty = not target.scan(target.incoming).candidates and not target.scan(target.claimed).candidates
        after = _next_heartbeat(target, before, deadline, poll_max) if drop_boxes_empty else before
        counts = (after or {}).get("counts", {})
        if on_progress:
            on_progress(counts)
        if drop_boxes_empty and after and not counts.get("RUNNING") and (not counts.get("QUEUED") or after.get("stalled")):
            return counts
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(f"timed out with jobs still active: {counts}")
        time.sleep(delay)
        delay = min(delay * 1.5, poll_max)


def _stalled(target: Spool, documents: dict[str, StatusDoc | None], deadline: float | None,
             poll_max: float) -> dict[str, StatusDoc] | None:
    """The jobs' statuses if all are QUEUED (as `documents`, just read, say) and the manager is stalled.

    Confirmed by a heartbeat written after `documents` were read, and by reading the jobs again after
    it, so that a job taken in or started meanwhile is never called stuck."""
    if not _all_queued(documents):
        return None
    info = target.read_manager_info() or {}
    if not info.get("stalled"):
        return None  # the cheap look, every round; the careful one only when it says stalled
    later = _next_heartbeat(target, info, deadline, poll_max)
    if not later or not later.get("stalled") or not _all_queued(documents := _current(target, documents)):
        return None
    return documents


def _all_queued(documents: dict[str, StatusDoc | None]) -> TypeGuard[dict[str, StatusDoc]]:
    """True only if every job has a status (so a caller needs no filter for None) and it is QUEUED."""
    return all(doc and doc.get("state") == "QUEUED" for doc in documents.values())


def _next_heartbeat(target: Spool, before: dict[str, Any], deadline: float | None, poll_max: float) -> dict[str, Any] | None:
    delay = 0.01
    while True:
        info = target.read_manager_info()
        if info and info.get("heartbeat") != before.get("heartbeat"):
            return info
        if deadline is not None and time.monotonic() >= deadline:
            return None
        time.sleep(delay)
        delay = min(delay * 1.5, poll_max)


def rerun(spool: str | os.PathLike[str], refs: Sequence[str] = (), *, failed: bool = False) -> list[tuple[str, str]]:
    """Run ended jobs again as new jobs: those named by `refs` (ids or names) and, with `failed`, every
    job that ended FAILED or TIMEOUT; with them the jobs skipped because of them. Returns
    (old id, new id) pairs in old-id order. Sweeps are run again iteration by iteration.

    Raises FsqError for a reference to no ended job, and when there is nothing to run again.
    """
    target = Spool.existing(spool)
    every = all_statuses(target)
    status_of = {doc["id"]: doc for doc in every if "sweep" not in doc}  # iterations, not sweeps
    ids_by_name = {name: [doc["id"] for doc in docs] for name, docs in _by_name(status_of.values()).items() if name}
    chosen: set[str] = set()
    for ref in refs:
        found = sorted({*([ref] if ref in status_of else []), *ids_by_name.get(ref, [])})
        if not found and any(ref in (doc["id"], doc.get("name")) for doc in every):
            raise FsqError(f"{ref}: a sweep; name its iterations (SWEEP_ID.INDEX), or give --failed")
        if not found:
            raise FsqError(f"{ref}: no job with this id or name has a status file in {target.root}")
        busy = [f"{job_id} is {status_of[job_id]['state']}" for job_id in found
                if status_of[job_id]["state"] not in model.FINAL_STATES]
        if busy:
            raise FsqError(f"{ref}: {', '.join(busy)}; only ended jobs are run again")
        rejected = [job_id for job_id in found if status_of[job_id]["state"] == "REJECTED"]
        if rejected:
            raise FsqError(f"{ref}: {rejected[0]} was rejected ({status_of[rejected[0]].get('reason')}); "
                           "submit a corrected job instead")
        chosen.update(found)
    if failed:  # a failure that was run again already is left alone: its new job speaks for it
        done = {doc["rerun_of"] for doc in status_of.values() if doc.get("rerun_of")}
        chosen.update(job_id for job_id, doc in status_of.items() if doc["state"] in reruns.FAILED_STATES
                      and job_id not in done)
    if not chosen:
        raise FsqError("nothing to run again: no job named, and no job failed or timed out"
                       if failed else "nothing to run again: name jobs, or give --failed")
    candidates = chosen | {job_id for job_id, doc in status_of.items() if doc["state"] == "SKIPPED"}
    documents = _AcceptedDocuments(target)
    jobs = {job_id: reruns.Ended(job_id, status_of[job_id].get("name"), status_of[job_id]["state"],
                                 documents.of(status_of[job_id])) for job_id in sorted(candidates)}
    selected = reruns.select(jobs, chosen)
    ids = IdMaker().many()
    new_jobs = reruns.plan(jobs, selected, ids, ids_by_name)
    # Published as submit() does: Spool.create refuses an unsafe spool (a link, another owner, writable
    # by others) and remakes a missing directory; Spool.existing above only found it.
    return list(zip(selected, _submit(Spool.create(target.root), new_jobs, ids)))


class _AcceptedDocuments:
    """Each ended job's document as its manager accepted it: from accepted/ (each file read once), an
    iteration's made from its sweep (each sweep parsed once)."""

    def __init__(self, target: Spool) -> None:
        self._target = target
        revalidate(target.accepted)  # once for every file read below, as Spool.read_statuses does for status/
        self._files: dict[str, dict[str, dict[str, Any]]] = {}
        self._sweeps: dict[str, model.JobSpec] = {}

    def of(self, status: StatusDoc) -> dict[str, Any]:
        iteration = status.get("iteration")
        if not iteration:
            return self._accepted(status["id"], status)
        sweep_id = iteration["sweep"]
        if sweep_id not in self._sweeps:
            [self._sweeps[sweep_id]] = model.accepted_specs(self._accepted(sweep_id, status))
        return dict(model.iteration_spec(self._sweeps[sweep_id], int(iteration["index"])).document)

    def _accepted(self, job_id: str, status: StatusDoc) -> dict[str, Any]:
        document = self._file(status.get("submission") or "").get(job_id)
        if document is None:
            raise FsqError(f"{status['id']}: its accepted submission ({status.get('submission')}) does not hold it")
        return document

    def _file(self, name: str) -> dict[str, dict[str, Any]]:
        if name not in self._files:
            # A name from a status file: checked like a dropped file's name, so it cannot leave accepted/.
            content = read_json(self._target.accepted / name, fresh=False) if is_submission_name(name) else None
            if not isinstance(content, (list, dict)):
                raise FsqError(f"the accepted submission {name!r} is missing from {self._target.accepted}")
            self._files[name] = {job["id"]: job for job in (content if isinstance(content, list) else [content])}
        return self._files[name]


def cancel(spool: str | os.PathLike[str], refs: Sequence[str]) -> None:
    """Ask the manager to cancel jobs (ids or names): queued ones end at once, running ones get SIGTERM."""
    ids = [ref for ref in refs if is_job_id(ref)]
    names = [ref for ref in refs if not is_job_id(ref)]
    _request(spool, {"action": "cancel", "ids": ids, "names": names})


def shutdown(spool: str | os.PathLike[str], *, drain: bool = False) -> None:
    """Ask the manager to stop: now (running jobs are stopped), or once the queue is empty (`drain`)."""
    _request(spool, {"action": "shutdown", "drain": drain})


def _request(spool: str | os.PathLike[str], document: dict[str, Any]) -> None:
    target = Spool.existing(spool)
    name = f"{document['action']}-{IdMaker()()}.json"
    target.publish(target.control, name, orjson.dumps({"version": model.FORMAT_VERSION, **document}))


__all__ = [
    "SpoolError",
    "cancel",
    "list_jobs",
    "manager",
    "rerun",
    "shutdown",
    "status",
    "statuses",
    "submit",
    "summary",
    "wait",
    "wait_all",
]
