"""How a run looks to the person who started it: a progress line while it works, a summary at the end.

A terminal gets one line redrawn in place; a log file gets a plain line every few seconds, so that
`fsq run ... 2> run.log` stays readable.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fsqueue.model import JobRecord, JobState

_REDRAW_EVERY = 0.1
_LOG_EVERY = 5.0


class Progress:
    def __init__(self, stream: TextIO, total: int, interactive: bool) -> None:
        self._stream, self._total, self._interactive = stream, total, interactive
        self._states: dict[str, JobState] = {}
        self._counts: collections.Counter[JobState] = collections.Counter()
        self._started = time.monotonic()
        self._last_draw = 0.0

    def update(self, record: JobRecord) -> None:
        old = self._states.get(record.spec.id)
        if old is not None:
            self._counts[old] -= 1
        assert record.state is not None
        self._states[record.spec.id] = record.state
        self._counts[record.state] += 1
        now = time.monotonic()
        if now - self._last_draw >= (_REDRAW_EVERY if self._interactive else _LOG_EVERY):
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        done = sum(self._counts[state] for state in JobState if state.is_final)
        failed = done - self._counts[JobState.SUCCEEDED]
        rate = done / max(now - self._started, 1e-9)
        text = (f"{done}/{self._total} done, {self._counts[JobState.RUNNING]} running, {failed} not succeeded, "
                f"{rate:.1f} jobs/s")
        if self._interactive:
            width = 30
            filled = int(width * done / max(self._total, 1))
            self._stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
        else:
            self._stream.write(f"fsq: progress: {text}\n")
        self._stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        if self._interactive:
            self._stream.write("\n")
        self._stream.flush()


@dataclass(frozen=True)
class RunSummary:
    counts: dict[str, int]
    elapsed: float
    failed: list[JobRecord]
    spool: Path

    @classmethod
    def of(cls, records: Iterable[JobRecord], elapsed: float, spool: Path) -> RunSummary:
        records = list(records)
        counts = collections.Counter(str(record.state) for record in records)
        failed = [record for record in records if record.state != JobState.SUCCEEDED]
        return cls(dict(counts), elapsed, failed, spool)

    @property
    def all_succeeded(self) -> bool:
        return not self.failed

    def render(self) -> str:
        total = sum(self.counts.values())
        states = ", ".join(f"{state} {count}" for state, count in sorted(self.counts.items()))
        lines = [f"fsq: {total} jobs in {self.elapsed:.2f} s ({total / max(self.elapsed, 1e-9):.1f} jobs/s): {states}"]
        for record in self.failed[:10]:
            label = f"{record.spec.id} {record.spec.name or ''}".strip()
            where = f" (stderr: {record.stderr})" if record.state == JobState.FAILED else ""
            lines.append(f"fsq:   {record.state} {label}: {record.reason or ''}{where}")
        if len(self.failed) > 10:
            lines.append(f"fsq:   ... and {len(self.failed) - 10} more: fsq list --spool {self.spool} --state FAILED")
        lines.append(f"fsq: spool {self.spool} (outputs in {self.spool / 'output'})")
        return "\n".join(lines)
