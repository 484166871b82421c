"""One sweep while the manager runs it: which iterations are made, how many of each state. Pure.

The manager makes iterations lazily, keeping `window` of them queued, so that a sweep of 100,000
iterations costs memory in proportion to the window and to what runs, not to its size. A restarted
manager passes the iterations that had already ended (`done`), which are never made again.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from fsqueue.model import FINAL_STATES, JobState


@dataclass
class SweepRun:
    sweep_id: str
    done: bytearray  # one byte per iteration: 1 where it ended under an earlier manager
    states: collections.Counter[str] = field(default_factory=collections.Counter)  # iterations per state
    resume: dict[int, Mapping[str, Any]] = field(default_factory=dict)  # index -> status left by an earlier manager
    next_index: int = 0
    waiting: int = 0  # made and queued: what the window counts
    live: set[str] = field(default_factory=set)  # ids of iterations made and not ended
    canceled: bool = False

    @classmethod
    def start(cls, sweep_id: str, total: int, ended: Mapping[int, str] | None = None,
              resume: Mapping[int, Mapping[str, Any]] | None = None) -> SweepRun:
        """A sweep about to run; `ended` maps the index of each iteration that already ended to its state."""
        done = bytearray(total)
        states: collections.Counter[str] = collections.Counter()
        for index, state in (ended or {}).items():
            done[index] = 1
            states[state] += 1
        states[JobState.QUEUED] += total - sum(states.values())
        return cls(sweep_id, done, states, dict(resume or {}))

    @property
    def total(self) -> int:
        return len(self.done)

    @property
    def unmade(self) -> int:
        return self.states[JobState.QUEUED] - self.waiting

    @property
    def finished(self) -> bool:
        return sum(self.states[state] for state in FINAL_STATES) == self.total

    def take(self, window: int) -> Iterator[int]:
        """Indices of the next iterations to make, until `window` of them wait in the queue."""
        while self.waiting < window and self.next_index < self.total:  # cancel() moves next_index to the end
            index = self.next_index
            self.next_index += 1
            if not self.done[index]:
                self.waiting += 1  # counted at once: the caller queues it before asking for the next
                yield index

    def changed(self, job_id: str, old: JobState | None, new: JobState) -> None:
        """An iteration moved from `old` (None: just made) to `new`."""
        if old is None:  # take() counted it in `waiting` already
            self.live.add(job_id)
            old = JobState.QUEUED
        self.states[old] -= 1
        self.states[new] += 1
        self.waiting += (new == JobState.QUEUED) - (old == JobState.QUEUED)
        if new.is_final:
            self.live.discard(job_id)

    def cancel(self) -> int:
        """Stop making iterations; the ones never made end CANCELED. Returns how many that was."""
        never_made = self.unmade
        self.canceled = True
        self.next_index = self.total
        self.states[JobState.QUEUED] -= never_made
        self.states[JobState.CANCELED] += never_made
        return never_made

    def outcome(self) -> tuple[JobState, str | None]:
        """The sweep's own final state, once every iteration ended, and why when not SUCCEEDED."""
        if self.states[JobState.SUCCEEDED] == self.total:
            return JobState.SUCCEEDED, None
        others = ", ".join(f"{count} {state}" for state, count in sorted(self.states.items())
                           if count and state != JobState.SUCCEEDED)
        why = f"{self.total - self.states[JobState.SUCCEEDED]} of {self.total} iterations did not succeed ({others})"
        if self.canceled:
            return JobState.CANCELED, f"canceled by request; {why}"
        if self.states[JobState.SKIPPED] == self.total:
            return JobState.SKIPPED, why
        return JobState.FAILED, why

    def view(self) -> dict[str, Any]:
        """The `sweep` object of the sweep's status file."""
        return {"total": self.total, "counts": {str(state): count for state, count in sorted(self.states.items()) if count}}
