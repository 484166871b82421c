"""What a stopped manager left in its spool, read back at start-up (docs/reliability.md, "Recovery").

The journal is folded into the last record of each job; acceptances it never held durably are taken
back, and accepted files and receipts are mended from those it did; every accepted job is paired with
its last known state, journal first. What to do with each job (count it as ended, queue it again) is
the manager's business; this module reads, reconciles and reports.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from fsqueue import model
from fsqueue.errors import InvalidJob
from fsqueue.journal import Journal
from fsqueue.model import JobSpec, JobState
from fsqueue.spool import (
    Spool,
    Unsafe,
    accepted_receipt,
    is_job_id,
    is_submission_name,
    read_bytes,
    revalidate,
)

log = logging.getLogger(__name__)

# The fields of a journal entry that are also fields of the status file (Manager._journal_entry).
JOURNALED_FIELDS = ("state", "seq", "attempt", "launch_failures", "failures", "submit_time", "start_time",
                    "end_time", "exit_code", "signal", "reason", "cores")


@dataclass
class Journaled:
    """The journal folded at start-up: the last record of each job, and which status files may lag it."""

    latest: dict[str, dict[str, Any]]
    recent: set[str]  # jobs with records since the last compaction, whose status files were not checked since
    complete: bool  # compacted by a journaling manager: it names every job that ever changed state
    # Submission name -> its acceptance record (document, digest), for those accepted since the last compaction.
    acceptances: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    def may_lag(self, job_id: str) -> bool:
        """Whether the job's status file is worth reading: the journal does not know the job, or its
        last records came after the last check (the manager may have died before writing the file)."""
        return job_id not in self.latest or job_id in self.recent

    def digests(self) -> dict[str, str]:
        """Submission name -> digest of the file as dropped, for Intake.adopt."""
        return {name: record["digest"] for name, record in self.acceptances.items()
                if isinstance(record.get("digest"), str)}


@dataclass(frozen=True)
class Found:
    """One accepted job and what is last known of it."""

    spec: JobSpec
    submission: str
    status: Mapping[str, Any]  # the journal's last record of it, else its status file; {} if neither
    state: JobState | None
    on_disk: Mapping[str, Any] | None  # its status file as read; None if missing or not read
    # It ended, and its status file lags the journal (the manager died in between): to be written again.
    lags: bool = False


def acceptance_record(name: str, dropped_digest: str, stamped: bytes) -> dict[str, Any]:
    """The journal record of an accepted submission, as open_journal() reads it back: its file name, a
    digest of the file as dropped, and accepted/NAME's document (already serialized: orjson copies it)."""
    return {"accepted": name, "digest": dropped_digest, "document": orjson.Fragment(stamped)}


def open_journal(spool: Spool, now: float) -> tuple[Journal, Journaled]:
    """Open the spool's journal (creating it) and fold it."""
    journal, replay = Journal.open(spool.journal, now=now)
    if replay.torn_bytes:
        log.warning("journal %s: dropped a torn last record (%d bytes), written when the manager died",
                    spool.journal, replay.torn_bytes)
    if replay.corrupt_lines:
        log.error("journal %s: skipped unreadable lines %s; status files stand in for those records",
                  spool.journal, ", ".join(map(str, replay.corrupt_lines[:10])))
    folded = Journaled({}, set(), complete=False)
    for record in replay.records:
        job_id = record.get("id")
        if "compacted" in record:  # status files of the jobs named so far agreed with the journal then
            folded.recent.clear()
            folded.complete = True
        elif "accepted" in record:
            name = record["accepted"]
            if isinstance(name, str) and is_submission_name(name) and isinstance(record.get("document"), (dict, list)):
                folded.acceptances[name] = record
        elif isinstance(job_id, str) and is_job_id(job_id):
            latest = folded.latest
            latest[job_id] = {**latest[job_id], **record} if job_id in latest else record
            folded.recent.add(job_id)
    return journal, folded


def settle_acceptances(spool: Spool, leftovers: list[str], journaled: Journaled) -> None:
    """Before accepted/ is read: take back what was never journaled, mend what was."""
    _undo_unjournaled(spool, leftovers, journaled)
    _mend_accepted(spool, journaled.acceptances)


def _undo_unjournaled(spool: Spool, leftovers: list[str], journaled: Journaled) -> None:
    """Take back what a manager accepted but never journaled durably (the machine crashed in between).

    Its claimed copy is still there (it is dropped only after the journal sync), and accepted/NAME may
    be too, whole or torn, though no reader was told of it: the receipt waits for the same sync. A
    committed acceptance always leaves a trace: its own record in the journal until the next
    compaction, its jobs' records after, and the status files of its jobs (the only trace of jobs
    that ended before the spool had a journal). Without one, the accepted file goes and the claimed
    copy is read again as new. A journal never compacted (a spool from before journals) proves nothing.
    """
    if not journaled.complete:
        return
    for name in leftovers:
        if name in journaled.acceptances:
            continue
        path = spool.accepted / name
        try:
            data = read_bytes(path, fresh=False)
        except OSError as error:  # cannot tell (an NFS soft mount timing out): leave both for the next start
            log.error("cannot read %s: %s; it and %s are left as they are", path, error.strerror, spool.claimed / name)
            continue
        if data is None:
            continue
        try:
            ids = _ids_of(orjson.loads(data))
        except orjson.JSONDecodeError:
            ids = []  # torn: a committed acceptance is durable and whole, so this one is not
        if any(job_id in journaled.latest or _has_status_file(spool, job_id) for job_id in ids):
            continue
        log.warning("%s was accepted by a manager that died before it was journaled; reading it again from %s",
                    path, spool.claimed / name)
        path.unlink(missing_ok=True)


def _has_status_file(spool: Spool, job_id: Any) -> bool:
    # Status files are written only after the journal sync that made their submission's acceptance
    # durable; and a spool older than its journal names its finished jobs only there.
    return isinstance(job_id, str) and is_job_id(job_id) and os.path.lexists(spool.status_path(job_id))


def _mend_accepted(spool: Spool, acceptances: Mapping[str, Mapping[str, Any]]) -> None:
    """Rewrite from the journal every accepted file that a crash of the machine lost or tore, and write
    the receipts the last manager did not live to write.

    Accepted files are not fsynced one by one; the journal holds each document until the next
    compaction (docs/reliability.md).
    """
    if acceptances:
        revalidate(spool.accepted)
        revalidate(spool.receipts)
    for name, record in acceptances.items():
        path = spool.accepted / name
        expected = orjson.dumps(record["document"]) + b"\n"
        try:
            intact = read_bytes(path, fresh=False) == expected
        except OSError:
            intact = False
        if not intact:
            log.warning("%s was lost or damaged; written again from the journal", path)
            spool.accept(name, expected, durable=True)
        receipt = accepted_receipt(_ids_of(record["document"]))
        try:
            told = spool.read_receipt(name, fresh=False) == receipt
        except orjson.JSONDecodeError:
            told = False  # torn by the crash: nobody could read it either
        if not told:  # none, or one from an earlier file of this name that was rejected
            spool.write_receipt(name, receipt)


def accepted_jobs(spool: Spool, journaled: Journaled) -> Iterator[Found]:
    """Every job of every accepted submission, with its last known state."""
    for name in spool.scan(spool.accepted).candidates:
        try:
            if name in journaled.acceptances:
                document = journaled.acceptances[name]["document"]
            else:
                document = orjson.loads(spool.read_accepted(name))  # the scan revalidated accepted/
            specs = model.accepted_specs(document)
        except (Unsafe, OSError, orjson.JSONDecodeError, InvalidJob) as error:
            # Not from a crash alone (the journal would hold it): a damaged disk, a journal moved aside,
            # or something planted there. Said loudly, never run, and the spool served all the same.
            why = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
            log.error("%s: %s; its jobs are not queued: restore it, or move it aside", spool.accepted / name, why)
            continue
        # One revalidation per file, and only the status files that can tell something the journal does not.
        statuses = spool.read_statuses(spec.id for spec in specs if journaled.may_lag(spec.id))
        for spec in specs:
            on_disk = statuses.get(spec.id)
            status = _newer(on_disk, journaled.latest.get(spec.id)) or {}
            state = state_of(status)
            yield Found(spec, name, status, state, on_disk, _ended_unwritten(journaled, spec.id, state, on_disk, status))


def iteration_statuses(spool: Spool, sweeps: Mapping[str, tuple[JobSpec, str]], journaled: Journaled,
                       ) -> tuple[dict[str, dict[int, Mapping[str, Any]]], list[Found]]:
    """Sweep id -> iteration index -> last known status, for the sweeps that were running; and the
    ended iterations whose status files lag the journal."""
    if not sweeps:
        return {}, []
    wanted = set(sweeps)
    ids = {job_id for job_id in journaled.latest if "." in job_id and job_id.partition(".")[0] in wanted}
    if not journaled.complete:  # a spool older than its journal: iterations may be known by their files only
        ids.update(job_id for job_id in spool.status_ids() if job_id.partition(".")[0] in wanted and "." in job_id)
    statuses = spool.read_statuses(job_id for job_id in ids if journaled.may_lag(job_id))
    found: dict[str, dict[int, Mapping[str, Any]]] = collections.defaultdict(dict)
    lagging = []
    for job_id in ids:
        sweep_id, _, index = job_id.partition(".")
        on_disk = statuses.get(job_id)
        latest = _newer(on_disk, journaled.latest.get(job_id))
        if latest is None:
            continue
        found[sweep_id][int(index)] = latest
        state = state_of(latest)
        if _ended_unwritten(journaled, job_id, state, on_disk, latest):
            spec, submission = sweeps[sweep_id]
            lagging.append(Found(model.iteration_spec(spec, int(index)), submission, latest, state, on_disk, True))
    return found, lagging


def compact(journal: Journal, spool: Spool, journaled: Journaled, now: float) -> None:
    """One record per job from here on, so that the journal does not grow over the spool's lifetime.

    What recovery changed (jobs queued again) is pending and follows the mark at the next sync. The
    acceptance records go too, once the files they stand for are durable; if they cannot be made so,
    the journal is left whole.
    """
    if journaled.acceptances:
        try:
            spool.sync_accepted()
        except OSError as error:
            log.error("cannot sync %s: %s; the journal is not compacted, and keeps the accepted submissions",
                      spool.accepted, error.strerror)
            return
    journal.compact([*journaled.latest.values(), {"compacted": now}], now=now)


def state_of(status: Mapping[str, Any]) -> JobState | None:
    """The state a status file or journal record names; None for none, or for a word that is no state."""
    state = status.get("state")
    return JobState(state) if state in JobState.__members__ else None


def _ids_of(document: Any) -> list[Any]:
    """The ids an accepted document's jobs carry (a job that is no object has none)."""
    jobs = document if isinstance(document, list) else [document]
    return [job.get("id") for job in jobs if isinstance(job, dict)]


def _ended_unwritten(journaled: Journaled, job_id: str, state: JobState | None, on_disk: Mapping[str, Any] | None,
                     latest: Mapping[str, Any]) -> bool:
    """The job ended, and its status file lags the journal (the manager died between the two)."""
    if state is None or not state.is_final or not journaled.may_lag(job_id):
        return False
    return on_disk is not latest and (on_disk is None or on_disk.get("seq", 0) < latest.get("seq", 0))


def _newer(status: Mapping[str, Any] | None, journaled: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    """What recovery believes about a job: the journal when it knows the job, whatever a status file says.

    Status files are written after the journal and are a view: a job (which runs as the spool's user)
    can overwrite one, the journal is only the manager's. A status file speaks only for a job the
    journal never saw, in a spool written before there was a journal.
    """
    return journaled if journaled is not None else status
