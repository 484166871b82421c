"""The manager: one step = intake -> control -> reap -> plan -> launch -> record (serve.py loops over it).

Decisions come from the pure scheduler and the pure dependency book (deps.py); this module carries
them out and writes every transition to the job's status file and the joblog.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import itertools
import logging
import os
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fsqueue import model, recovery, scheduler
from fsqueue.deps import After, Dependencies, Outcome
from fsqueue.errors import JournalWriteError
from fsqueue.intake import ControlRequest, Intake, Submission
from fsqueue.joblog import JobLog, ends_attempt
from fsqueue.journal import Journal
from fsqueue.launcher import (
    Launch,
    Launcher,
    LaunchError,
    LocalLauncher,
    job_process_groups,
    stop_orphans,
)
from fsqueue.model import JobRecord, JobSpec, JobState, advance
from fsqueue.resources import Allocation
from fsqueue.spool import IdMaker, Spool, is_job_id
from fsqueue.sweep_run import SweepRun

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Settings:
    poll: float = 1.0  # seconds between scans of the drop directories
    heartbeat: float = 2.0  # seconds between rewrites of manager.json when nothing changes
    grace: float = 5.0  # seconds between SIGTERM and SIGKILL
    drain: bool = False  # exit once nothing is queued, running or waiting in incoming/
    watch: bool = True  # wake on inotify events for files written on this node
    max_overtaken: int = scheduler.DEFAULT_MAX_OVERTAKEN
    intake_batch: int = 512  # files claimed per step, so that launching goes on during a flood
    torn_grace: float = 10.0
    # Status files are rewritten at most this often; a job that starts and ends within one window
    # gets one write instead of two. Times inside the files are exact whatever the window.
    flush_window: float = 0.02
    # A new job's QUEUED state, and a job's RUNNING state, reach its status file once the job has been
    # in that state this long: a job that starts and ends sooner is seen only in its final state, one
    # file written instead of three (on Lustre or NFS each is a round trip to the metadata server).
    # The journal records every state.
    write_delay: float = 0.1
    # This close to the allocation's end, new submissions stay in incoming/ for the next allocation.
    end_margin: float = 120.0


# A node named by this many launch failures in a row is taken out of the pool; a job whose launch
# failed this many times fails (with every error said), rather than loop forever.
NODE_FAILURE_LIMIT = 3
MAX_LAUNCH_TRIES = 10
WHY_NOT_SHOWN = 20  # queued jobs at the head of the queue whose status says why they wait
FLUSH_BATCH = 128  # status files written per step while jobs run
INFO_MIN_GAP = 0.5  # seconds: manager.json follows changes, but a busy manager does not rewrite it every step
# Iterations of a sweep made ahead and queued: enough to fill every core twice over, few enough that a
# sweep of 100,000 costs no more than its window.
MIN_SWEEP_WINDOW = 64
# After the spool refused a write (disk full, quota, I/O error), wait this long before trying again.
WRITE_RETRY = 1.0


class Phase(enum.StrEnum):
    SERVING = "serving"
    DRAINING = "draining"
    STOPPING = "stopping"
    STOPPED = "stopped"


@dataclass(frozen=True)
class Now:
    wall: float  # for the records people read
    mono: float  # for deadlines, immune to clock steps


class Manager:
    def __init__(
        self,
        spool: Spool,
        allocation: Allocation,
        settings: Settings,
        base_env: Mapping[str, str],
        identity: Mapping[str, Any],
        launcher: Launcher | None = None,
    ) -> None:
        self.spool, self.allocation, self.settings = spool, allocation, settings
        self.launcher = launcher or LocalLauncher()
        self._base_env = dict(base_env)
        self.identity = dict(identity)
        self._intake = Intake(spool, IdMaker().many(), settings.torn_grace)
        self._capacity = {node.name: node.cores for node in allocation.nodes}
        self._pins = {node.name: node.cpu_ids for node in allocation.nodes}
        self._free = {node.name: set(range(node.cores)) for node in allocation.nodes}
        self._gpu_ids = {node.name: node.gpus for node in allocation.nodes}  # in the node's own order
        self._gpu_capacity = {name: len(gpus) for name, gpus in self._gpu_ids.items()}
        self._free_gpus = {name: list(gpus) for name, gpus in self._gpu_ids.items()}
        self.records: dict[str, JobRecord] = {}
        self._finished_ids: set[str] = set()
        # Queued jobs in first-come order, with what each asks of the scheduler (a dict: ordered, O(1) removal).
        self._queue: dict[str, scheduler.Request] = {}
        self._kill_at: dict[str, float] = {}
        self._stop_reason: dict[str, tuple[JobState, str]] = {}  # job -> (state it ends in, why)
        self._walltime_at: dict[str, float] = {}  # running job -> monotonic time its walltime ends
        self._running: set[str] = set()
        self._deps = Dependencies(is_job_id)
        self._held: set[str] = set()  # queued jobs waiting for their dependencies
        self._queue_unsorted = False
        self._admitted: dict[str, tuple[int, int]] = {}  # (admission, iteration), to put jobs back in their place
        # Never reused: numbering by the count of live jobs let a new job overtake older ones once jobs ended.
        self._admission_numbers = itertools.count()
        self._sweeps: dict[str, SweepRun] = {}  # every sweep known, for its status file
        self._feeding: dict[str, None] = {}  # sweeps with iterations still to make, in admission order
        self._sweep_window = max(MIN_SWEEP_WINDOW, 2 * allocation.total_cores)
        self._backoff: dict[str, float] = {}  # job id -> monotonic time its next launch try may start
        self._node_failures: dict[str, int] = {}  # consecutive launch failures naming each node
        self._excluded: dict[str, str] = {}  # nodes taken out of the pool, with why
        # Ids canceled before their file was seen (on NFS a listing can lag): canceled on arrival.
        self._canceled_early: set[str] = set()
        self._dirty: dict[str, None] = {}  # jobs whose status file is behind, oldest change first
        # Jobs whose new QUEUED or RUNNING state is not written yet (Settings.write_delay): monotonic time
        # from which it may be. A job leaves when that time comes (it becomes dirty) or when anything else
        # happens to it (written as usual). The deque keeps them oldest first (every hold is as long), and
        # may still hold jobs that left.
        self._write_held: dict[str, float] = {}
        self._write_held_order: collections.deque[str] = collections.deque()
        self.counts: collections.Counter[str] = collections.Counter()
        self.phase = Phase.DRAINING if settings.drain else Phase.SERVING
        self._next_scan = 0.0
        self._next_flush = 0.0
        self._last_info = float("-inf")
        self._info_changed = True
        self._idle_scans = 0
        self._plan_needed = True
        self._started: float | None = None
        self.on_change: Callable[[JobRecord], None] | None = None
        self.joblog = JobLog(spool.joblog)  # one line per ended attempt; opens nothing until the first
        self.journal: Journal | None = None  # opened by recover()
        self._writes_blocked_until = float("-inf")  # after the spool refused a write: no launch, no status write

    # -- start-up ----------------------------------------------------------------------------------
    def recover(self, now: Now) -> None:
        """Take up the spool as a previous manager left it: accepted jobs that have not finished are queued."""
        self._started = now.wall
        self.journal, journaled = recovery.open_journal(self.spool, now.wall)
        self._stop_orphans(journaled.latest)
        leftovers = self._intake.leftovers()
        recovery.settle_acceptances(self.spool, leftovers, journaled)
        unfinished, sweeps = [], []
        for found in recovery.accepted_jobs(self.spool, journaled):
            spec, state = found.spec, found.state
            if state is not None and state.is_final:
                if found.lags:
                    self._repair_status(found)
                self._finished_ids.add(spec.id)
                if spec.sweep is None:
                    self.counts[state] += 1
                self._deps.known(spec.id, spec.name, ended=state)
            elif spec.sweep is not None:
                sweeps.append(found)
            else:
                unfinished.append(found)
        iterations, lagging = recovery.iteration_statuses(
            self.spool, {found.spec.id: (found.spec, found.submission) for found in sweeps}, journaled)
        for found in lagging:
            self._repair_status(found)
        # Finished jobs first, so that a dependency on one of them is judged as met or not at once.
        for found in sweeps:
            self._recover_sweep(found, iterations.get(found.spec.id, {}), now)
        for found in unfinished:
            self._recover_job(found, now, journaled=found.spec.id in journaled.latest)
        self._intake.adopt(leftovers, journaled.digests())
        recovery.compact(self.journal, self.spool, journaled, now.wall)

    def _stop_orphans(self, journaled: Mapping[str, Mapping[str, Any]]) -> None:
        """Jobs the last manager on this machine left running are stopped, then run again (docs/reliability.md)."""
        running = {job_id for job_id, entry in journaled.items() if entry.get("state") == JobState.RUNNING}
        stopped = stop_orphans(job_process_groups(str(self.spool.root), running), self.settings.grace) if running else []
        if stopped:
            log.warning("stopped %d job processes left running by the previous manager: %s", len(stopped),
                        " ".join(map(str, stopped[:20])))

    def _repair_status(self, found: recovery.Found) -> None:
        """The manager died between journaling a job's end and writing its status file: write it now."""
        journaled = found.status
        base = found.on_disk or model.status_document(
            self._new_record(found.spec, found.submission, journaled.get("submit_time") or 0), self.identity)
        self.spool.write_status(found.spec.id, {**base, **{key: journaled[key] for key in recovery.JOURNALED_FIELDS
                                                           if key in journaled}})

    def _recover_sweep(self, found: recovery.Found, iterations: Mapping[int, Mapping[str, Any]], now: Now) -> None:
        spec, submission, status, state = found.spec, found.submission, found.status, found.state
        ended = {index: doc["state"] for index, doc in iterations.items()
                 if (it := recovery.state_of(doc)) and it.is_final}
        resume = {index: doc for index, doc in iterations.items() if index not in ended and index < len(spec.sweep)}
        record = dataclasses.replace(self._new_record(spec, submission, status.get("submit_time") or now.wall),
                                     state=state, seq=status.get("seq", 0), start_time=status.get("start_time"))
        if state is None:  # accepted, and the manager died before it recorded anything more
            record = advance(record, JobState.QUEUED)
        misfit = self._misfit(spec)
        if misfit:
            self._set(record)
            self._explain(spec.id, misfit)
            return
        self._start_sweep(record, SweepRun.start(spec.id, len(spec.sweep), ended, resume), now)

    def _recover_job(self, found: recovery.Found, now: Now, journaled: bool = False) -> None:
        spec, status, state = found.spec, found.status, found.state
        record = self._restored(spec, found.submission, status, state, now)
        # A job still queued as the journal has it is neither journaled nor written again: with 100,000
        # jobs in a spool that is most of a restart's writes (scripts/bench/recover).
        self._set(record, recorded=journaled and record.state == state and record.seq == status.get("seq"))
        misfit = self._misfit(spec)
        if misfit:
            self._explain(spec.id, misfit)
            return
        self._enqueue(self.records[spec.id], now)

    def _misfit(self, spec: JobSpec) -> str | None:
        """Why a job accepted under a larger allocation cannot run in this one. It stays queued in the
        spool (a sweep with all its iterations) for one that can hold it, and keeps no draining manager."""
        reason = scheduler.never_fits(_request(spec), self._capacity, self._gpu_capacity)
        return None if reason is None else f"does not fit this allocation ({reason}); waits for a larger one"

    def _restored(self, spec: JobSpec, submission: str, status: Mapping[str, Any], state: JobState | None,
                  now: Now) -> JobRecord:
        """A job as its status file left it, queued again: a job that was running runs again."""
        # Restoring what the status file says, not a transition: the transition comes next.
        record = dataclasses.replace(
            self._new_record(spec, submission, status.get("submit_time") or now.wall),
            state=state, seq=status.get("seq", 0), attempt=status.get("attempt", 1),
            launch_failures=status.get("launch_failures", 0), failures=status.get("failures", 0),
        )
        if state == JobState.RUNNING:
            # Local children of a manager that was killed are orphans now; we cannot wait for them, so
            # the job runs again (at-least-once, docs/spool.md).
            cores = status.get("cores") or {}
            ran = dataclasses.replace(record, start_time=status.get("start_time"), placement=model.Placement(
                tuple((node, tuple(ids)) for node, ids in cores.items())) if cores else None)
            record = advance(ran, JobState.QUEUED, attempt=record.attempt + 1, placement=None,
                             reason=f"attempt {record.attempt} was interrupted when its manager stopped")
            self.joblog.attempt_ended(record, previous=ran)
        elif state is None:
            record = advance(record, JobState.QUEUED)
        return record

    # -- one step ----------------------------------------------------------------------------------
    def step(self, now: Now, woken_by_event: bool = False) -> None:
        # Draining and idle: look once more right away rather than at the next poll, then exit.
        settle = self.phase == Phase.DRAINING and not self._queue and not self._running and not self._idle_scans
        scan = woken_by_event or settle or now.mono >= self._next_scan
        if scan:
            self._next_scan = now.mono + self.settings.poll
        if self.phase in (Phase.SERVING, Phase.DRAINING) and not self._near_the_end(now):
            submissions = self._intake.submissions(now.mono, scan, self, self.settings.intake_batch)
            for submission in submissions:
                self._admit(submission, now)
            if scan:
                self._idle_scans = 0 if submissions else self._idle_scans + 1
            if scan and self._intake.more_waiting:
                # A flood: the rest is claimed at the next step, not at the next poll, and no event
                # may come to wake the manager for files that are already there.
                self._next_scan = now.mono
        if scan or self._intake.control_due(now.mono):
            # After intake, so that a cancel finds a job whose file arrived in the same scan.
            for request in self._intake.control_requests(now.mono):
                self._control(request, now)
        self._reap(now)
        self._requeue_after_backoff(now)
        if self._feeding and self.phase in (Phase.SERVING, Phase.DRAINING):
            self._feed_sweeps(now)
        if self.phase in (Phase.SERVING, Phase.DRAINING) and self._plan_needed:
            self._schedule(now)
        self._escalate(now)
        # What the step recorded goes to the kernel now: a manager killed later loses none of it.
        self._commit_journal(now, durable=False)
        self._flush(now)

    def _time_left(self, now: Now) -> float | None:
        end = self.allocation.end_time
        return None if end is None else end - now.wall

    def _near_the_end(self, now: Now) -> bool:
        left = self._time_left(now)
        return left is not None and left < self.settings.end_margin

    def __contains__(self, job_id: object) -> bool:  # the set of ids already in use, for intake
        return job_id in self.records or job_id in self._finished_ids

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def finished(self) -> bool:
        if self.phase == Phase.STOPPING:
            return not self._kill_at and not self._running
        if self.phase == Phase.DRAINING:
            # Jobs held by dependencies that nothing in this spool can meet any more do not keep it open.
            return (not self._queue and not self._backoff and not self._running and self._idle_scans >= 1
                    and not self._feeding and self._intake.next_retry() is None)
        return False

    def stop(self, why: str, now: Now) -> None:
        """No new launches; running jobs get SIGTERM now and SIGKILL after the grace period."""
        if self.phase == Phase.STOPPING:
            return
        log.info("stopping: %s", why)
        self.phase = Phase.STOPPING
        self._info_changed = True
        deadline = now.mono + self.settings.grace
        for job_id in sorted(self._running - self._stop_reason.keys()):  # a cancel under way stays a cancel
            # Interrupted, not canceled: the job runs again under the next manager (an allocation ends).
            self._terminate(job_id, JobState.QUEUED, f"interrupted when its manager stopped ({why})", deadline)

    def drain(self) -> None:
        if self.phase == Phase.SERVING:
            self.phase = Phase.DRAINING
            self._info_changed = True

    # -- intake ------------------------------------------------------------------------------------
    def _admit(self, submission: Submission, now: Now) -> None:
        if self.journal is not None:
            # The durable copy of accepted/NAME until the next compaction, ahead of its jobs' records.
            self.journal.append(recovery.acceptance_record(submission.name, submission.digest, submission.stamped))
        for spec in submission.specs:
            record = self._new_record(spec, submission.name, now.wall)
            request = _request(spec)
            reason = scheduler.never_fits(request, self._capacity, self._gpu_capacity)
            if reason:
                self._set(advance(record, JobState.REJECTED, reason=reason, end_time=now.wall))
            elif spec.sweep is not None:
                self._start_sweep(advance(record, JobState.QUEUED), SweepRun.start(spec.id, len(spec.sweep)), now)
            else:
                record = advance(record, JobState.QUEUED)
                self._set(record, held_from=now.mono)
                self._enqueue(record, now)
                self._cancel_if_asked(spec.id, now)

    def _new_record(self, spec: JobSpec, submission: str, submit_time: float) -> JobRecord:
        return JobRecord(
            spec=spec,
            submission=submission,
            submit_time=submit_time,
            stdout=_absolute(spec.stdout, spec.wd) if spec.stdout else self.spool.default_output(spec.id, "stdout"),
            stderr=_absolute(spec.stderr, spec.wd) if spec.stderr else self.spool.default_output(spec.id, "stderr"),
        )

    # -- sweeps ----------------------------------------------------------------------------------------
    def _start_sweep(self, record: JobRecord, run: SweepRun, now: Now) -> None:
        """A sweep is one record and a counter; its iterations are made as the queue needs them."""
        sweep_id = record.spec.id
        self._sweeps[sweep_id] = run
        self._admitted[sweep_id] = (next(self._admission_numbers), 0)
        self.counts[JobState.QUEUED] += run.unmade  # each iteration counts as a job, made or not
        self._set(record)
        self._deps.known(sweep_id, record.spec.name)
        if run.finished:  # every iteration ended before a restart, but the sweep's own end was not recorded
            self._end_sweep(run, now.wall)
        elif run.unmade:
            self._feeding[sweep_id] = None
        self._cancel_if_asked(sweep_id, now)

    def _feed_sweeps(self, now: Now) -> None:
        for sweep_id in list(self._feeding):
            run = self._sweeps[sweep_id]
            sweep = self.records[sweep_id]
            for index in run.take(self._sweep_window):
                spec = model.iteration_spec(sweep.spec, index)
                self.counts[JobState.QUEUED] -= 1  # it was counted with the sweep; _set counts it now
                resumed = run.resume.pop(index, None)
                if resumed is None:
                    record = advance(self._new_record(spec, sweep.submission, sweep.submit_time), JobState.QUEUED)
                else:
                    record = self._restored(spec, sweep.submission, resumed, recovery.state_of(resumed), now)
                self._admitted[spec.id] = (self._admitted[sweep_id][0], index)
                self._set(record)
                self._enqueue(record, now)
                self._cancel_if_asked(spec.id, now)
            if not run.unmade:
                del self._feeding[sweep_id]

    def _iteration_changed(self, old: JobState | None, record: JobRecord, wall: float) -> None:
        sweep_id = record.spec.iteration[0] if record.spec.iteration else ""
        run = self._sweeps.get(sweep_id)
        if run is None or record.state is None or old == record.state:
            return
        run.changed(record.spec.id, old, record.state)
        sweep = self.records[sweep_id]
        if record.state == JobState.RUNNING and sweep.state == JobState.QUEUED:
            self._set(advance(sweep, JobState.RUNNING, start_time=record.start_time))
        else:
            self._dirty.setdefault(sweep_id, None)  # its counts changed
        if record.state.is_final and run.finished:
            self._end_sweep(run, wall)

    def _end_sweep(self, run: SweepRun, wall: float) -> None:
        self._feeding.pop(run.sweep_id, None)
        state, reason = run.outcome()
        self._set(advance(self.records[run.sweep_id], state, reason=reason, end_time=wall))

    def _cancel_sweep(self, run: SweepRun, now: Now) -> None:
        if run.canceled:
            return
        never_made = run.cancel()
        self._feeding.pop(run.sweep_id, None)
        self.counts[JobState.QUEUED] -= never_made
        self.counts[JobState.CANCELED] += never_made
        self._dirty.setdefault(run.sweep_id, None)
        for job_id in sorted(run.live):
            self._cancel(job_id, now)
        if run.finished and not self.records[run.sweep_id].state.is_final:
            self._end_sweep(run, now.wall)

    # -- the ready queue and dependencies -------------------------------------------------------------
    def _enqueue(self, record: JobRecord, now: Now) -> None:
        """A queued job waits for its dependencies, then joins the ready queue."""
        spec = record.spec
        if spec.id not in self._admitted:
            self._admitted[spec.id] = (next(self._admission_numbers), 0)
        self._held.add(spec.id)
        self._apply(self._deps.add(spec.id, spec.name, [After(ref, when) for ref, when in spec.after]), now.wall)
        if spec.id in self._held:
            self._explain(spec.id, self._deps.waiting_for(spec.id))

    def _apply(self, outcome: Outcome, wall: float) -> None:
        """Carry out what the dependencies say: start the ready, skip the doomed (ended at `wall`)."""
        for job_id in outcome.ready:
            if job_id in self._held:
                self._held.discard(job_id)
                self._make_ready(job_id, wall)
        for job_id, reason in outcome.doomed:
            if job_id in self._held:
                self._held.discard(job_id)
                self._set(advance(self.records[job_id], JobState.SKIPPED, reason=reason, end_time=wall))

    def _make_ready(self, job_id: str, wall: float) -> None:
        request = _request(self.records[job_id].spec)
        if self._no_longer_fits(job_id, request, wall):
            return
        last = next(reversed(self._queue), None)
        if last is not None and self._order(job_id) < self._order(last):
            self._queue_unsorted = True  # sorted once, before the next plan
        self._queue[job_id] = request
        self._plan_needed = True

    def _order(self, job_id: str) -> tuple[int, int, int]:
        """Higher priority first; first come, first served within a priority."""
        return (-self.records[job_id].spec.priority, *self._admitted[job_id])

    def _explain(self, job_id: str, reason: str | None) -> None:
        record = self.records[job_id]
        if reason != record.reason:
            self._set(model.annotate(record, reason=reason))

    def _control(self, request: ControlRequest, now: Now) -> None:
        if request.action == "shutdown":
            self.drain() if request.drain else self.stop("fsq shutdown", now)
            return
        wanted = set(request.ids) | {
            job_id for job_id, record in self.records.items() if record.spec.name in request.names
        }
        for job_id in wanted:
            self._cancel(job_id, now)

    def _cancel_if_asked(self, job_id: str, now: Now) -> None:
        """A cancel that came before the job (its file was late, or it is an iteration not made yet)."""
        if job_id in self._canceled_early:
            self._canceled_early.discard(job_id)
            self._cancel(job_id, now)

    def _cancel(self, job_id: str, now: Now) -> None:
        record = self.records.get(job_id)
        if record is None and job_id not in self._finished_ids:
            self._canceled_early.add(job_id)
        if record is None or record.state is None or record.state.is_final:
            return
        if record.spec.sweep is not None:
            self._cancel_sweep(self._sweeps[job_id], now)
        elif record.state == JobState.QUEUED:
            self._queue.pop(job_id, None)
            self._backoff.pop(job_id, None)
            if job_id in self._held:
                self._held.discard(job_id)
                self._deps.forget(job_id)
            self._set(advance(record, JobState.CANCELED, reason="canceled by request", end_time=now.wall))
        elif job_id in self._kill_at:
            # Already being stopped (its walltime ran out, or its manager stops): the cancel decides how
            # it ends, so that it is neither retried nor queued again; the kill deadline stays.
            self._stop_reason[job_id] = (JobState.CANCELED, "canceled by request")
        else:
            self._terminate(job_id, JobState.CANCELED, "canceled by request", now.mono + self.settings.grace)

    def _terminate(self, job_id: str, state: JobState, reason: str, kill_deadline: float) -> None:
        self._stop_reason[job_id] = (state, reason)
        self._kill_at[job_id] = kill_deadline
        self.launcher.signal(job_id, signal.SIGTERM)

    def _escalate(self, now: Now) -> None:
        for job_id, deadline in list(self._walltime_at.items()):
            if now.mono >= deadline:
                del self._walltime_at[job_id]
                walltime = self.records[job_id].spec.walltime
                self._terminate(job_id, JobState.TIMEOUT, f"ran past its walltime of {walltime:g} s",
                                now.mono + self.settings.grace)
        for job_id, deadline in list(self._kill_at.items()):
            if now.mono >= deadline:
                self.launcher.signal(job_id, signal.SIGKILL)
                self._kill_at[job_id] = float("inf")

    # -- running -----------------------------------------------------------------------------------
    def _reap(self, now: Now) -> None:
        for exit in self.launcher.reap():
            record = self.records[exit.job_id]
            self._release(record)
            self._kill_at.pop(exit.job_id, None)
            self._walltime_at.pop(exit.job_id, None)
            self._plan_needed = True
            stopped = self._stop_reason.pop(exit.job_id, None)
            if exit.launch_failure and not stopped:
                self._launch_failed(record, exit.launch_failure, exit.failed_nodes, now)
                continue
            for node in record.placement.nodes if record.placement else ():
                self._node_failures.pop(node, None)
            ended = exit.ended_at if exit.ended_at is not None else now.wall
            changes = {"exit_code": exit.exit_code, "signal": exit.signal, "usage": exit.usage, "end_time": ended}
            if stopped and stopped[0] == JobState.QUEUED:  # interrupted by its manager's stop: runs again
                self._set(advance(record, JobState.QUEUED, attempt=record.attempt + 1, reason=stopped[1],
                                  placement=None, **changes))
                continue
            if stopped:
                state, reason = stopped
            elif exit.exit_code == 0:
                state, reason = JobState.SUCCEEDED, None
            else:
                state = JobState.FAILED
                reason = f"exit code {exit.exit_code}" if exit.signal is None else f"killed by signal {exit.signal}"
                reason += f" ({exit.detail})" if exit.detail else ""
            # Retries count the job's own failures: a run its manager interrupted costs none.
            if state in (JobState.FAILED, JobState.TIMEOUT) and record.failures < record.spec.retries:
                self._retry(record, f"attempt {record.attempt} {state.lower()}: {reason}", changes)
            else:
                self._set(advance(record, state, reason=reason, **changes))

    def _retry(self, record: JobRecord, why: str, changes: dict[str, Any]) -> None:
        left = record.spec.retries - record.failures - 1
        reason = f"{why}; running it again ({left} retr{'y' if left == 1 else 'ies'} left after this one)"
        self._set(advance(record, JobState.QUEUED, attempt=record.attempt + 1, failures=record.failures + 1,
                          reason=reason, **changes))
        self._make_ready(record.spec.id, changes.get("end_time") or record.submit_time)

    def _launch_failed(self, record: JobRecord, message: str, nodes: tuple[str, ...], now: Now) -> None:
        """The job never ran: try again later, elsewhere if a node is to blame; never charge the job."""
        tries = record.launch_failures + 1
        for node in nodes:
            if node in self._free:
                self._node_failures[node] = self._node_failures.get(node, 0) + 1
                if self._node_failures[node] >= NODE_FAILURE_LIMIT:
                    self._exclude(node, f"{self._node_failures[node]} launches failed in a row, last: {message}", now)
        if tries >= MAX_LAUNCH_TRIES:
            self._set(advance(record, JobState.FAILED, launch_failures=tries, end_time=now.wall,
                              reason=f"could not be launched ({tries} tries); last error: {message}"))
            return
        delay = min(2.0 ** (tries - 1), 60.0)
        self._set(advance(record, JobState.QUEUED, launch_failures=tries, placement=None, start_time=None,
                          reason=f"launch failed ({message}); try {tries + 1} in {delay:g} s"))
        self._backoff[record.spec.id] = now.mono + delay

    def _exclude(self, node: str, why: str, now: Now) -> None:
        log.warning("taking node %s out of the pool: %s", node, why)
        self._excluded[node] = why
        self._free[node].clear()
        self._info_changed = True
        # The jobs in the ready queue now; the others (in back-off, waiting for dependencies, sweep
        # iterations not made yet) are judged when they become ready (_make_ready).
        for job_id, request in list(self._queue.items()):
            if self._no_longer_fits(job_id, request, now.wall):
                del self._queue[job_id]

    def _no_longer_fits(self, job_id: str, request: scheduler.Request, wall: float) -> bool:
        """Fail a job that nodes taken out of the pool leave no room for; True if it was."""
        if not self._excluded:
            return False
        capacity = {name: cores for name, cores in self._capacity.items() if name not in self._excluded}
        reason = scheduler.never_fits(request, capacity, self._gpu_capacity)
        if reason is None:
            return False
        out = "; ".join(f"{node}: {why}" for node, why in self._excluded.items())
        self._set(advance(self.records[job_id], JobState.FAILED, end_time=wall,
                          reason=f"can no longer start: {reason} (nodes taken out of the pool: {out})"))
        return True

    def _requeue_after_backoff(self, now: Now) -> None:
        ready = [job_id for job_id, when in self._backoff.items() if when <= now.mono]
        if not ready:
            return
        for job_id in ready:
            del self._backoff[job_id]
            if self.records[job_id].state == JobState.QUEUED:
                self._make_ready(job_id, now.wall)

    def _release(self, record: JobRecord) -> None:
        if record.placement:
            for node, cores in record.placement.cores:
                if node not in self._excluded:
                    self._free[node].update(cores)
            for node, gpus in record.placement.gpus:
                if node not in self._excluded:
                    free = {*self._free_gpus[node], *gpus}
                    self._free_gpus[node] = [gpu for gpu in self._gpu_ids[node] if gpu in free]

    def _schedule(self, now: Now) -> None:
        self._plan_needed = False
        free = {node: sorted(cores) for node, cores in self._free.items() if node not in self._excluded}
        capacity = {node: cores for node, cores in self._capacity.items() if node not in self._excluded}
        if self._queue_unsorted:
            self._queue = dict(sorted(self._queue.items(), key=lambda item: self._order(item[0])))
            self._queue_unsorted = False
        time_left = self._time_left(now)
        # The scheduler stops reading the queue once no core is left, so hand it the queue as it is.
        free_gpus = {node: gpus for node, gpus in self._free_gpus.items() if node not in self._excluded}
        plan = scheduler.plan(self._queue.values(), free, capacity, self.settings.max_overtaken, time_left,
                              free_gpus, self._gpu_capacity)
        for job_id in plan.overtaken:
            request = self._queue[job_id]
            self._queue[job_id] = dataclasses.replace(request, overtaken=request.overtaken + 1)
        if plan.placements and not self._journal_launches(plan.placements, now):
            self._plan_needed = True  # nothing started: plan again once the journal can be written
            return
        for job_id, placement in plan.placements:
            self._launch(self.records[job_id], placement, now)
        # Why the first few still wait, when it is not plain waiting in line for busy cores (that
        # would cost every job one more status write): cores free that it cannot use, a job that
        # overtook it, nodes held, not enough time left. Stable words, written when they change.
        spare = sum(map(len, free.values())) - sum(placement.total_cores for _, placement in plan.placements)
        for job_id, request in itertools.islice(self._queue.items(), WHY_NOT_SHOWN):
            short_of_time = time_left is not None and (request.walltime or 0) > time_left
            if spare or plan.reservations or job_id in plan.overtaken or short_of_time:
                self._explain(job_id, scheduler.why_waiting(request, plan, time_left))

    def _journal_launches(self, placements: Any, now: Now) -> bool:
        """Journal before act: a job is recorded as starting before its process exists.

        Written, not fsynced: a manager killed after the start finds the record (the kernel kept it)
        and stops the orphan. Only a crash of the machine can lose it, and that kills the job too; the
        fsync before the next status file write covers what readers see (docs/reliability.md).
        """
        assert self.journal is not None
        for job_id, placement in placements:
            record = self.records[job_id]
            self.journal.append({"id": job_id, "state": JobState.RUNNING, "seq": record.seq + 1,
                                 "attempt": record.attempt, "cores": {n: list(c) for n, c in placement.cores}})
        return self._commit_journal(now, durable=False)

    def _commit_journal(self, now: Now, durable: bool) -> bool:
        if self.journal is None or not self.journal.pending:
            return True
        if now.mono < self._writes_blocked_until:
            return False
        try:
            if not durable:
                self.journal.write()
                return True
            self.journal.sync()
        except JournalWriteError as error:
            log.error("%s; no job is started and no status file written until it can be", error)
            self._writes_blocked_until = now.mono + WRITE_RETRY
            return False
        return True

    def _launch(self, record: JobRecord, placement: model.Placement, now: Now) -> None:
        job_id = record.spec.id
        del self._queue[job_id]
        try:
            started = self.launcher.start(self._launch_of(record, placement))
        except LaunchError as error:
            self._set(advance(record, JobState.FAILED, reason=str(error), end_time=now.wall))
            self._plan_needed = True  # its cores are still free: plan again at the next step
            return
        for node, cores in placement.cores:
            self._free[node].difference_update(cores)
        for node, gpus in placement.gpus:
            self._free_gpus[node] = [gpu for gpu in self._free_gpus[node] if gpu not in gpus]
        if record.spec.walltime is not None:
            self._walltime_at[job_id] = now.mono + record.spec.walltime
        self._set(advance(record, JobState.RUNNING, placement=placement, start_time=started, end_time=None,
                          exit_code=None, signal=None, usage=None, reason=None), held_from=now.mono)

    def _launch_of(self, record: JobRecord, placement: model.Placement) -> Launch:
        spec = record.spec
        per_node = min(len(cores) for _, cores in placement.cores)
        threads = max(1, per_node // spec.tasks_per_node)
        env = dict(self._base_env)
        env.update(spec.env)
        env.update(
            FSQ_JOB_ID=spec.id,
            FSQ_JOB_NAME=spec.name or "",
            FSQ_ATTEMPT=str(record.attempt),
            FSQ_SPOOL=str(self.spool.root),
            FSQ_NODES=",".join(placement.nodes),
            FSQ_CORES=" ".join(f"{node}:{','.join(map(str, cores))}" for node, cores in placement.cores),
            FSQ_NUM_NODES=str(len(placement.cores)),
            FSQ_CORES_PER_NODE=str(per_node),
            FSQ_NUM_CORES=str(placement.total_cores),
            FSQ_TASKS_PER_NODE=str(spec.tasks_per_node),
            FSQ_GPUS=" ".join(f"{node}:{','.join(gpus)}" for node, gpus in placement.gpus),
        )
        if spec.iteration is not None:
            env["FSQ_SWEEP_ID"], env["FSQ_ITERATION"] = spec.iteration[0], str(spec.iteration[1])
        if placement.gpus and len(placement.cores) == 1:
            # The ids of the job's node; under Slurm, srun's GPU plugin sets the step's own in its place.
            env["CUDA_VISIBLE_DEVICES"] = ",".join(placement.gpus[0][1])
        if "OMP_NUM_THREADS" not in spec.env:
            env["OMP_NUM_THREADS"] = str(threads)  # the job's own setting wins
        node, cores = placement.cores[0]
        pins = self._pins.get(node)
        cpus = frozenset(pins[core] for core in cores) if pins is not None and len(placement.cores) == 1 else None
        # stdin joined to wd here, like stdout and stderr: srun opens --input itself, in its own
        # directory on the manager's node (--chdir moves only the tasks).
        stdin = _absolute(spec.stdin, spec.wd) if spec.stdin else None
        return Launch(spec.id, spec.argv, env, spec.wd, stdin, record.stdout, record.stderr, cpus, placement,
                      spec.tasks_per_node, self.spool.launch_log(spec.id), spec.gpus)

    # -- records -----------------------------------------------------------------------------------
    def _set(self, record: JobRecord, recorded: bool = False, held_from: float | None = None) -> None:
        """Record a job's new state (`recorded`: as the journal and its status file already have it;
        `held_from`: the monotonic time the state began, written only if it lasts Settings.write_delay)."""
        old = self.records.get(record.spec.id)
        self.records[record.spec.id] = record
        self._write_held.pop(record.spec.id, None)
        if held_from is not None:
            self._dirty.pop(record.spec.id, None)
            self._write_held[record.spec.id] = held_from + self.settings.write_delay
            self._write_held_order.append(record.spec.id)
        elif not recorded:
            self._dirty.setdefault(record.spec.id, None)
        self._info_changed = True
        newly_final = record.state.is_final and (old is None or old.state is None or not old.state.is_final)
        changed = old is None or old.state != record.state or old.attempt != record.attempt
        if self.journal is not None and changed and not recorded:
            self.journal.append(self._journal_entry(record))
            # Written at the end of the step, fsynced before the next status file (_flush). A RUNNING
            # record was written before the start (_journal_launches); this one adds the start time and
            # pid, for people: recovery finds orphans without it.
        if record.spec.sweep is not None:  # its iterations are the jobs that count, run and log
            if newly_final:
                self._apply(self._deps.ended(record.spec.id, record.state), record.end_time or record.submit_time)
            return
        if old is not None and old.state is not None:
            self.counts[old.state] -= 1
        self.counts[record.state] += 1
        if record.state.is_final:
            self._admitted.pop(record.spec.id, None)
        if record.state == JobState.RUNNING:
            self._running.add(record.spec.id)
        else:
            self._running.discard(record.spec.id)
        if self.on_change is not None:
            self.on_change(record)
        if ends_attempt(old.state if old else None, record.state):
            self.joblog.attempt_ended(record, previous=old)
        ended_at = record.end_time if record.end_time is not None else record.submit_time
        if newly_final:
            self._apply(self._deps.ended(record.spec.id, record.state), ended_at)
        if record.spec.iteration is not None:
            self._iteration_changed(old.state if old else None, record, ended_at)

    def _journal_entry(self, record: JobRecord) -> dict[str, Any]:
        """What recovery needs of a job, in the keys of its status file (docs/reliability.md)."""
        entry: dict[str, Any] = {
            "id": record.spec.id, "state": record.state, "seq": record.seq, "attempt": record.attempt,
            "launch_failures": record.launch_failures, "failures": record.failures, "submit_time": record.submit_time,
            "start_time": record.start_time, "end_time": record.end_time,
        }
        if record.state.is_final:
            entry.update(exit_code=record.exit_code, signal=record.signal, reason=record.reason)
        elif record.state == JobState.RUNNING and record.placement is not None:
            entry.update(cores={node: list(cores) for node, cores in record.placement.cores},
                         pid=self.launcher.pid_of(record.spec.id))
        return entry

    def _flush(self, now: Now, force: bool = False) -> None:
        while (first := self._first_write_held()) is not None and (force or now.mono >= first):
            job_id = self._write_held_order.popleft()
            del self._write_held[job_id]
            self._dirty.setdefault(job_id, None)
        # Receipts wait for the same sync: a reader never sees ids that a crash of the machine could take back.
        due = (self._dirty or self._intake.unreleased) and (force or now.mono >= self._next_flush)
        # The journal first: a status file never says more than the journal a restart would read. One
        # fsync per flush window, for every transition of every job since the last (group commit).
        if due and not self._commit_journal(now, durable=True):
            self._next_flush = max(self._next_flush, self._writes_blocked_until)  # no spin until the retry
            if now.mono >= self._next_info_due():
                self._write_info_safely(now)
            return
        if due:
            self._next_flush = now.mono + self.settings.flush_window
            # While jobs run, write a bounded batch per step, oldest change first, so that a bulk
            # submission's thousands of QUEUED files do not keep finished jobs' cores idle.
            batch = len(self._dirty) if force or not self._running else FLUSH_BATCH
            written = 0
            try:
                self._intake.release()  # the receipts, now that the journal holds the acceptances
                for job_id in list(itertools.islice(self._dirty, batch)):
                    self._write_status(self.records[job_id])
                    del self._dirty[job_id]
                    written += 1
                self.joblog.flush()
            except OSError as error:
                log.error("cannot write to the spool: %s; trying again in %g s", error, WRITE_RETRY)
                self._next_flush = now.mono + WRITE_RETRY
            else:
                if written == batch and self._dirty:
                    self._next_flush = now.mono  # more to write: the next step, not the next window
        if now.mono >= self._next_info_due():
            self._write_info_safely(now)

    def _first_write_held(self) -> float | None:
        """When the oldest held state may be written; None if none is held."""
        order = self._write_held_order
        while order and order[0] not in self._write_held:
            order.popleft()  # something else happened to it: written as usual
        return self._write_held[order[0]] if order else None

    def _write_info_safely(self, now: Now) -> None:
        try:
            self.write_info(now)
        except OSError as error:
            log.error("cannot write %s: %s", self.spool.manager_file, error)
            self._last_info = now.mono  # the heartbeat's own rhythm: not every step

    def _write_status(self, record: JobRecord) -> None:
        spec = record.spec
        if spec.iteration is not None:
            if record.state == JobState.QUEUED and record.reason is None:
                return  # made but not started, nothing to say: the sweep's counts say it (docs/spool.md)
            if record.state.is_final:
                del self.records[spec.id]  # written for the last time: the sweep's counts remember it
        run = self._sweeps.get(spec.id) if spec.sweep is not None else None
        self.spool.write_status(spec.id, model.status_document(record, self.identity, run.view() if run else None))

    def finish(self, now: Now) -> None:
        self._writes_blocked_until = float("-inf")  # a last try, whatever the back-off says
        self._flush(now, force=True)
        self.joblog.close()
        if self.journal is not None:
            try:
                self.journal.close()
            except JournalWriteError as error:
                log.error("%s", error)
        self._write_info_safely(now)

    def _next_info_due(self) -> float:
        """manager.json is rewritten every heartbeat, and sooner after a change, but at most every INFO_MIN_GAP."""
        return self._last_info + INFO_MIN_GAP if self._info_changed else self._last_info + self.settings.heartbeat

    def write_info(self, now: Now) -> None:
        self._last_info = now.mono
        self._info_changed = False
        busy = {node: self._capacity[node] - len(free) for node, free in self._free.items()}
        self.spool.write_manager_info({
            "version": model.FORMAT_VERSION,
            **self.identity,
            "phase": str(self.phase),
            "started": self._started,
            "heartbeat": now.wall,
            "interval": self.settings.heartbeat,
            "poll": self.settings.poll,
            "nodes": [self._node_info(node.name, busy[node.name]) for node in self.allocation.nodes],
            "counts": {str(state): count for state, count in self.counts.items() if count},
            "stalled": self.stalled,
        })

    @property
    def stalled(self) -> bool:
        """Jobs are queued, yet none runs, none can start, none waits for a retry and no claimed file
        waits to be read again: every queued job waits for something no job in the spool can bring, a
        dependency on a name never submitted (or on a job that waits for one), or a larger allocation.
        Only a new submission or another manager can change that, so `fsq wait --all` stops waiting.

        A sweep with iterations still to make does not keep this false: after each step's feeding its
        made iterations fill its window, and with nothing ready or running they are all held."""
        return (bool(self.counts[JobState.QUEUED]) and not self._queue and not self._running
                and not self._backoff and self._intake.next_retry() is None)

    def _node_info(self, name: str, busy: int) -> dict[str, Any]:
        info: dict[str, Any] = {"name": name, "cores": self._capacity[name], "busy": busy}
        if name in self._excluded:
            info.update(busy=self._capacity[name], excluded=self._excluded[name])
        return info

    def next_deadline(self, now: Now) -> float:
        """The monotonic time by which step() must run again, whatever wakes the manager or not."""
        deadlines = [self._next_scan, self._next_info_due()]
        if self._dirty or self._intake.unreleased:
            deadlines.append(self._next_flush)
        first_held = self._first_write_held()
        if first_held is not None:
            deadlines.append(max(self._next_flush, first_held))
        deadlines += [d for d in self._kill_at.values() if d != float("inf")]
        deadlines += self._walltime_at.values()
        deadlines += self._backoff.values()
        if self._writes_blocked_until > now.mono:
            deadlines.append(self._writes_blocked_until)
        retry = self._intake.next_retry()
        if retry is not None:
            deadlines.append(min(retry, now.mono + self.settings.poll))
        return min(deadlines)


def _request(spec: JobSpec) -> scheduler.Request:
    return scheduler.Request(spec.id, spec.cores, spec.nodes, exclusive=spec.exclusive, walltime=spec.walltime,
                             gpus=spec.gpus)


def _absolute(path: str, wd: str | None) -> str:
    """A job's path made absolute: against its wd, and a relative wd against the manager's directory."""
    return os.path.abspath(os.path.join(wd or "", path))
