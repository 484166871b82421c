"""Dependencies between jobs: who waits for whom, and what a job's end means for those waiting. Pure.

A job lists `after` references: a job id, or a name (every job of that name). Each reference carries a
condition, as in Slurm: `afterok` (the default: the other job succeeded), `afternotok` (it ended and did
not succeed), `afterany` (it ended). A name that matches no job yet is a forward reference: it binds to
the jobs of that name when they arrive, and until then the job waits with a reason that says so.
A job whose condition can no longer be met is doomed (the manager ends it SKIPPED, naming the
dependency); the jobs waiting for it are then judged as for any ended job, SKIPPED counting as not
succeeded: those that needed it to succeed are doomed in turn, an `afterany` or `afternotok` one runs.
A cycle dooms the jobs on it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

SUCCEEDED = "SUCCEEDED"


@dataclass(frozen=True)
class After:
    ref: str  # a job id, or a name
    when: str = "afterok"


@dataclass(frozen=True)
class Outcome:
    ready: tuple[str, ...]  # jobs whose every dependency is now met
    doomed: tuple[tuple[str, str], ...]  # (job id, reason) for jobs that can never run


def met(when: str, state: str) -> bool:
    """Whether a dependency on a job that ended in `state` is met (if not, it never will be)."""
    if when == "afterany":
        return True
    return (state == SUCCEEDED) == (when == "afterok")


class Dependencies:
    def __init__(self, is_id: Callable[[str], bool]) -> None:
        self._is_id = is_id
        self._names: dict[str, list[str]] = defaultdict(list)  # name -> every job id with that name
        self._labels: dict[str, str] = {}  # job id -> "name (id)", for reasons people read
        self._skip_causes: dict[str, str] = {}  # skipped job -> the failure that started it
        self._ended: dict[str, str] = {}  # job id -> final state
        self._waits: dict[str, dict[str, str]] = {}  # waiting job -> {job it waits for: condition}
        self._unbound: dict[str, list[After]] = {}  # waiting job -> name references not bound yet
        self._dependents: dict[str, set[str]] = defaultdict(set)  # job -> jobs waiting for it
        self._by_name_wanted: dict[str, set[str]] = defaultdict(set)  # name -> jobs waiting for it to exist
        # Waiting job -> how many of the jobs it waits for have not ended: a job's end costs O(its
        # dependents), not O(their dependencies), so a fan-in of 10,000 stays linear.
        self._remaining: dict[str, int] = {}

    # -- jobs appear and end ------------------------------------------------------------------------
    def known(self, job_id: str, name: str | None, ended: str | None = None) -> None:
        """A job exists (with its final state if it already ended): later references can bind to it."""
        if name:
            self._names[name].append(job_id)
            self._labels[job_id] = f"{name} ({job_id})"
        if ended:
            self._ended[job_id] = ended

    def add(self, job_id: str, name: str | None, after: Iterable[After]) -> Outcome:
        """Register a new job and what it waits for; say at once whether it is ready or doomed."""
        self.known(job_id, name)
        # A new job can only close a cycle if some job was already waiting for it: by its id (a
        # forward reference), or by its name, bound just below. Otherwise the walk is skipped, which
        # keeps a chain of n jobs O(n) to build.
        awaited = bool(self._dependents.get(job_id)) or bool(name and self._by_name_wanted.get(name))
        waits: dict[str, str] = {}
        unbound: list[After] = []
        for dependency in after:
            targets = [dependency.ref] if self._is_id(dependency.ref) else self._names.get(dependency.ref, [])
            if not targets:
                unbound.append(dependency)
            for target in targets:
                if target != job_id:
                    waits[target] = dependency.when
        self._waits[job_id] = waits
        if unbound:
            self._unbound[job_id] = unbound
            for dependency in unbound:
                self._by_name_wanted[dependency.ref].add(job_id)
        for target in waits:
            self._dependents[target].add(job_id)
        outcome = self._evaluate([job_id])
        if name and name in self._by_name_wanted:
            outcome = _merge(outcome, self._bind_name(name, job_id))
        cycle = self._cycle_through(job_id) if awaited else []
        if cycle:
            path = " -> ".join(self._label(job) for job in [*cycle, cycle[0]])
            outcome = _merge(outcome, self._doom(cycle, f"dependency cycle: {path}"))
        return outcome

    def ended(self, job_id: str, state: str) -> Outcome:
        """A job reached a final state: wake or doom the jobs that wait for it."""
        self._ended[job_id] = state
        self._waits.pop(job_id, None)
        self._unbound.pop(job_id, None)
        self._remaining.pop(job_id, None)
        return self._settle([(dependent, job_id) for dependent in sorted(self._dependents.pop(job_id, ()))])

    def forget(self, job_id: str) -> None:
        """A job left the waiting set without ending through us (canceled while waiting, say)."""
        for target in self._waits.pop(job_id, {}):
            self._dependents[target].discard(job_id)
        for dependency in self._unbound.pop(job_id, []):
            self._by_name_wanted[dependency.ref].discard(job_id)
        self._remaining.pop(job_id, None)

    # -- questions ----------------------------------------------------------------------------------
    def waiting_for(self, job_id: str) -> str | None:
        """Why a job still waits, for `fsq status`; None if it waits for nothing."""
        pending = [target for target in self._waits.get(job_id, {}) if target not in self._ended]
        unbound = self._unbound.get(job_id, [])
        if unbound:
            return f"waiting for a job named {unbound[0].ref!r} to be submitted"
        if pending:
            more = f" and {len(pending) - 1} more" if len(pending) > 1 else ""
            return f"waiting for {self._label(pending[0])}, {self._waits[job_id][pending[0]]}{more}"
        return None

    def is_waiting(self, job_id: str) -> bool:
        return job_id in self._waits

    # -- internals ----------------------------------------------------------------------------------
    def _label(self, job_id: str) -> str:
        return self._labels.get(job_id, job_id)

    def _bind_name(self, name: str, new_job: str) -> Outcome:
        outcome = Outcome((), ())
        for waiting in sorted(self._by_name_wanted.pop(name, ())):
            unbound = self._unbound.get(waiting, [])
            for dependency in [d for d in unbound if d.ref == name]:
                if waiting != new_job and new_job not in self._waits[waiting]:
                    self._waits[waiting][new_job] = dependency.when
                    self._dependents[new_job].add(waiting)
                unbound.remove(dependency)
            if not unbound:
                self._unbound.pop(waiting, None)
            outcome = _merge(outcome, self._evaluate([waiting]))
        return outcome

    def _evaluate(self, candidates: list[str]) -> Outcome:
        """Judge jobs whose dependencies just changed (added, bound) against every job they wait for."""
        ready: list[str] = []
        doomed: list[tuple[str, str]] = []
        for job_id in candidates:
            waits = self._waits.get(job_id)
            if waits is None:
                continue
            ended = [target for target in waits if target in self._ended]
            failed = [target for target in ended if not met(waits[target], self._ended[target])]
            self._remaining[job_id] = len(waits) - len(ended)
            if failed:
                doomed.append((job_id, self._skip(job_id, self._why_not_met(failed[0], waits[failed[0]]))))
                later = self._settle([(d, job_id) for d in sorted(self._dependents.pop(job_id, ()))])
                ready.extend(later.ready)
                doomed.extend(later.doomed)
            elif not self._remaining[job_id] and job_id not in self._unbound:
                self._release(job_id)
                ready.append(job_id)
        return Outcome(tuple(ready), tuple(doomed))

    def _settle(self, pairs: list[tuple[str, str]]) -> Outcome:
        """Judge each (waiting job, job that just ended) pair; a skipped job's dependents in turn.

        A worklist, not recursion: a failure at the head of a 100,000-link chain must not overflow the stack.
        """
        ready: list[str] = []
        doomed: list[tuple[str, str]] = []
        work = list(reversed(pairs))
        while work:
            job_id, target = work.pop()
            waits = self._waits.get(job_id)
            if waits is None or target not in waits:
                continue
            if not met(waits[target], self._ended[target]):
                doomed.append((job_id, self._skip(job_id, self._why_not_met(target, waits[target]))))
                work.extend((d, job_id) for d in sorted(self._dependents.pop(job_id, ()), reverse=True))
                continue
            self._remaining[job_id] -= 1
            if not self._remaining[job_id] and job_id not in self._unbound:
                self._release(job_id)
                ready.append(job_id)
        return Outcome(tuple(ready), tuple(doomed))

    def _release(self, job_id: str) -> None:
        del self._waits[job_id]
        self._remaining.pop(job_id, None)

    def _why_not_met(self, target: str, when: str) -> str:
        first_cause = self._skip_causes.get(target)
        if first_cause:  # keep reasons short along a long chain: name the neighbour and the first cause
            return f"dependency {self._label(target)} was skipped; first cause: {first_cause}"
        return f"dependency {self._label(target)} ended {self._ended[target]}; this job needed {when}"

    def _skip(self, job_id: str, reason: str) -> str:
        self.forget(job_id)
        self._ended[job_id] = "SKIPPED"
        self._skip_causes[job_id] = reason.split("; first cause: ", 1)[-1]
        return reason

    def _doom(self, jobs: list[str], reason: str) -> Outcome:
        """Skip these jobs (a cycle), then judge the jobs that wait for them."""
        doomed = [(job_id, self._skip(job_id, reason)) for job_id in jobs if self.is_waiting(job_id)]
        pairs = [(d, job_id) for job_id, _ in doomed for d in sorted(self._dependents.pop(job_id, ()))]
        return _merge(Outcome((), tuple(doomed)), self._settle(pairs))

    def _cycle_through(self, start: str) -> list[str]:
        """A cycle of waiting jobs through `start`, as a path, or [] (depth-first, iterative)."""
        path: list[str] = [start]
        iterators = [iter(self._waits.get(start, {}))]
        seen = {start}
        while iterators:
            target = next(iterators[-1], None)
            if target is None:
                iterators.pop()
                path.pop()
                continue
            if target == start:
                return list(path)
            if target in seen or target in self._ended or target not in self._waits:
                continue
            seen.add(target)
            path.append(target)
            iterators.append(iter(self._waits[target]))
        return []


def _merge(first: Outcome, second: Outcome) -> Outcome:
    return Outcome(first.ready + second.ready, first.doomed + second.doomed)
