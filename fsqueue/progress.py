"""How a run looks to the person who started it: a progress line while it works, a summary at the end.

A terminal gets one line redrawn in place; a log file gets a plain line every few seconds, so that
`fsq run ... 2> run.log` stays readable. Both `fsq run` (at each transition) and `fsq wait --all`
feed it the manager's counts per state.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from fsqueue.model import FINAL_STATES, JobRecord, JobState

_REDRAW_EVERY = 0.1
_LOG_EVERY = 5.0


class Progress:
    """The jobs to wait for are all the jobs the manager's counts know of (a sweep counts its iterations)."""

    def __init__(self, stream: TextIO, interactive: bool) -> None:
        self._stream, self._interactive = stream, interactive
        self._counts: collections.Counter[str] = collections.Counter()
        self._started = time.monotonic()
        self._done_before: int | None = None  # jobs already done at the first look: not part of the rate
        self._last_draw = 0.0

    def counts(self, counts: Mapping[str, int]) -> None:
        """The manager's counts per state (fsq run's Manager.on_change, client.wait_all's on_progress)."""
        self._counts = collections.Counter(counts)
        self._maybe_draw()

    def _maybe_draw(self) -> None:
        if self._done_before is None:
            self._done_before = self._done()
        now = time.monotonic()
        if now - self._last_draw >= (_REDRAW_EVERY if self._interactive else _LOG_EVERY):
            self._draw(now)

    def _done(self) -> int:
        return sum(n for state, n in self._counts.items() if state in FINAL_STATES)

    def _draw(self, now: float) -> None:
        self._last_draw = now
        done = self._done()
        total = sum(self._counts.values())
        failed = done - self._counts[JobState.SUCCEEDED]
        rate = (done - (self._done_before or 0)) / max(now - self._started, 1e-9)
        text = (f"{done}/{total} done, {self._counts[JobState.RUNNING]} running, {failed} not succeeded, "
                f"{rate:.1f} jobs/s{_eta(total - done, rate)}")
        if self._interactive:
            width = 30
            filled = min(width, int(width * done / max(total, 1)))
            self._stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {text}\x1b[K")
        else:
            self._stream.write(f"fsq: progress: {text}\n")
        self._stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic())
        if self._interactive:
            self._stream.write("\n")
        self._stream.flush()


def _eta(left: int, rate: float) -> str:
    if left <= 0 or rate <= 0:
        return ""
    seconds = int(left / rate + 0.5)
    return f", ETA {seconds} s" if seconds < 120 else f", ETA {seconds // 60}m {seconds % 60:02d}s"


@dataclass(frozen=True)
class RunSummary:
    counts: dict[str, int]
    elapsed: float
    failed: list[JobRecord]
    spool: Path

    @classmethod
    def of(cls, records: Iterable[JobRecord], counts: Mapping[str, int], elapsed: float, spool: Path) -> RunSummary:
        """The manager's counts per state (a sweep's ended iterations have no record left), and the
        records that did not succeed, for the lines that name them."""
        failed = [record for record in records if record.state != JobState.SUCCEEDED]
        return cls({str(state): n for state, n in counts.items() if n}, elapsed, failed, spool)

    @property
    def all_succeeded(self) -> bool:
        return not self.failed

    def render(self) -> str:
        total = sum(self.counts.values())
        states = ", ".join(f"{state} {count}" for state, count in sorted(self.counts.items()))
        lines = [f"fsq: {total} jobs in {self.elapsed:.2f} s ({total / max(self.elapsed, 1e-9):.1f} jobs/s): {states}"]
        for record in self.failed[:10]:
            label = f"{record.spec.id} {record.spec.name or ''}".strip()
            where = f" (stderr: {record.stderr})" if record.state == JobState.FAILED and not record.spec.sweep else ""
            lines.append(f"fsq:   {record.state} {label}: {record.reason or ''}{where}")
        if len(self.failed) > 10:
            lines.append(f"fsq:   ... and {len(self.failed) - 10} more: fsq list --spool {self.spool} --state FAILED")
        lines.append(f"fsq: spool {self.spool} (outputs in {self.spool / 'output'})")
        return "\n".join(lines)
