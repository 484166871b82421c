"""The joblog: one tab-separated line per ended attempt of a job, written as the run goes.

In the spirit of GNU parallel's --joblog: a file that `awk -F'\\t'`, `sort`, `cut` and
`pandas.read_csv(path, sep="\\t")` read as it is. The manager appends a line when an attempt ends
(the job reached a final state, or went from RUNNING back to QUEUED) and flushes at each status flush;
`fsq report` and `fsq status --watch` read it back. Columns are documented in docs/cli.md ("The joblog").

Stability: the first line names the columns; columns are only ever added at the end, so readers go by
name. Every line ends with a newline, and a line without one is still being written: readers leave it.
A line cut short by a crash is cut off when the joblog is next opened for writing (there is one writer,
the manager), so a torn tail costs that line, never the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from fsqueue.model import JobRecord, JobState

COLUMNS = ("id", "name", "attempt", "state", "exit_code", "signal", "submit_time", "start_time", "end_time",
           "run_time", "nodes", "cores", "placement", "reason")
HEADER = "\t".join(COLUMNS) + "\n"
_INTS = frozenset({"attempt", "exit_code", "signal", "cores"})
_FLOATS = frozenset({"submit_time", "start_time", "end_time", "run_time"})
# Names are labels without control characters (model._NAME_RE), but reasons quote what launchers say.
_UNSAFE = str.maketrans({"\t": " ", "\n": " ", "\r": " "})
MAX_REASON = 1000  # characters; with core ranges, keeps every line far below _TAIL
_TAIL = 1 << 20  # the torn-tail search reads this much of the end: more than any one line


def ends_attempt(before: JobState | None, after: JobState | None) -> bool:
    """Whether the transition `before -> after` ends an attempt, and so gets a joblog line."""
    return after is not None and (after.is_final or (before == JobState.RUNNING and after == JobState.QUEUED))


def line(record: JobRecord, previous: JobRecord | None = None) -> str:
    """The joblog line of the attempt that `record`'s last transition ended.

    A requeue clears the job's start and placement (and a restart raises `attempt`), so the attempt's
    own number, start and cores come from `previous`, the record before the transition, when given.
    """
    ran = previous if record.state == JobState.QUEUED and previous is not None else record
    placement = ran.placement
    start, end = ran.start_time, record.end_time
    values = [
        record.spec.id,
        record.spec.name or "",
        str(ran.attempt),
        str(record.state),
        _text(record.exit_code),
        _text(record.signal),
        _seconds(record.submit_time),
        _seconds(start),
        _seconds(end),
        _seconds(end - start) if start is not None and end is not None else "",
        ",".join(placement.nodes) if placement else "",
        str(placement.total_cores) if placement else "0",
        " ".join(f"{node}:{_ranges(cores)}" for node, cores in placement.cores) if placement else "",
        (record.reason or "")[:MAX_REASON],
    ]
    return "\t".join(value.translate(_UNSAFE) for value in values) + "\n"


def _ranges(cores: tuple[int, ...]) -> str:
    """Core indices as ranges: (0, 1, 2, 3, 6) -> '0-3,6', so that a whole 128-core node is '0-127'."""
    parts: list[list[int]] = []
    for core in sorted(cores):
        if parts and parts[-1][1] + 1 == core:
            parts[-1][1] = core
        else:
            parts.append([core, core])
    return ",".join(str(a) if a == b else f"{a}-{b}" for a, b in parts)


def _cores(text: str) -> list[int]:
    cores: list[int] = []
    for part in text.split(","):
        first, _, last = part.partition("-")
        cores += range(int(first), int(last or first) + 1)
    return cores


def _text(value: int | None) -> str:
    return "" if value is None else str(value)


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


class JobLog:
    """Appends joblog lines to `path`; opened at the first write, flushed (not fsynced) on request."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def attempt_ended(self, record: JobRecord, previous: JobRecord | None = None) -> None:
        """Write the line of an ended attempt (see `ends_attempt` for which transitions end one)."""
        if self._file is None:
            self._file = self._open()
        self._file.write(line(record, previous))

    def flush(self) -> None:
        # Not fsynced, like status files: a crash of the process loses nothing, a crash of the machine
        # can lose the last lines (docs/spool.md, "Status files").
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _open(self) -> IO[str]:
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            size = _cut_torn_tail(fd, os.fstat(fd).st_size)
            handle = os.fdopen(fd, "a", encoding="utf-8", newline="")
        except BaseException:
            os.close(fd)
            raise
        if size == 0:
            handle.write(HEADER)
        return handle


def _cut_torn_tail(fd: int, size: int) -> int:
    """Drop the bytes after the last newline (a line a crashed writer left half-written); the new size."""
    start = max(0, size - _TAIL)
    keep = start + os.pread(fd, size - start, start).rfind(b"\n") + 1
    if keep < size:
        os.ftruncate(fd, keep)
    return keep


# -- reading -------------------------------------------------------------------------------------------


def parse(header: list[str], text: str) -> dict[str, Any] | None:
    """One line as a dict of typed values (empty fields are None); None for a torn or foreign line."""
    fields = text.rstrip("\n").split("\t")
    if len(fields) != len(header) or fields == header:
        return None
    row: dict[str, Any] = {}
    try:
        for name, value in zip(header, fields):
            row[name] = _typed(name, value)
    except ValueError:
        return None
    return row


def _typed(name: str, value: str) -> Any:
    if name in _INTS:
        return int(value) if value else None
    if name in _FLOATS:
        return float(value) if value else None
    if name == "nodes":
        return value.split(",") if value else []
    if name == "placement":
        pairs = (item.rpartition(":") for item in value.split(" ") if item)
        return {node: _cores(cores) for node, _, cores in pairs}
    return value or None


def read_joblog(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a joblog, in file order; [] when there is no joblog (yet)."""
    try:
        with open(path, encoding="utf-8", errors="replace", newline="") as handle:
            return list(_rows(handle))
    except FileNotFoundError:
        return []


def _rows(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    header: list[str] | None = None
    for text in lines:
        if not text.endswith("\n"):
            return  # the tail being written (or torn): not a line yet
        if header is None:
            header = text.rstrip("\n").split("\t")
            continue
        row = parse(header, text)
        if row is not None:
            yield row


class Follower:
    """Reads a joblog as it grows, like `tail -f`: each call returns the lines completed since the last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._header: list[str] | None = None

    def new_rows(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < self._offset:
                    self._offset, self._header = 0, None  # replaced or truncated: start again
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        complete = data[: data.rfind(b"\n") + 1]
        self._offset += len(complete)
        rows = []
        for text in complete.decode("utf-8", errors="replace").splitlines(keepends=True):
            if self._header is None:
                self._header = text.rstrip("\n").split("\t")
            elif (row := parse(self._header, text)) is not None:
                rows.append(row)
        return rows
