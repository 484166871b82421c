"""`fsq status --watch`: the run as it goes, from the spool alone.

Each look reads manager.json (counts, cores per node, heartbeat) and the lines the joblog gained since
the last look (durations, ends, failures), so a look costs the same at 100 jobs and at 100,000. On a
terminal the view is redrawn in place with plain ANSI escapes (no curses, so it works over any ssh);
elsewhere it prints a line whenever something changed, and one line per failure as it happens.
It ends when the manager writes `phase: stopped`, or on Ctrl-C.
"""

from __future__ import annotations

import collections
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from fsqueue import client
from fsqueue.joblog import Follower
from fsqueue.spool import Spool

WINDOW = 30.0  # seconds of finished jobs the rate is measured over
KEEPALIVE = 60.0  # plain mode: a status line at least this often, even when nothing changed
FAILURES_KEPT = 50
_FAILURE_STATES = frozenset({"FAILED", "REJECTED"})
_ORDER = ("QUEUED", "RUNNING", "SUCCEEDED", "FAILED", "TIMEOUT", "CANCELED", "SKIPPED", "REJECTED")
_COLORS = {"SUCCEEDED": "32", "FAILED": "31;1", "TIMEOUT": "31", "CANCELED": "90", "SKIPPED": "90", "REJECTED": "35",
           "RUNNING": "36", "QUEUED": "33"}
_STATE_RE = re.compile(r"\b(" + "|".join(_ORDER) + r")\b")
_BAR_RE = re.compile(r"\[(#*)(\.*)\]")


@dataclass(frozen=True)
class Look:
    """One look at the spool, and what follows from it."""

    now: float
    manager: client.ManagerView
    counts: Mapping[str, int]
    nodes: Sequence[Mapping[str, Any]]
    incoming: int
    rate: float | None  # finished jobs per second, lately
    eta: float | None  # seconds until nothing is queued or running, estimated

    @property
    def stopped(self) -> bool:
        return (self.manager.info or {}).get("phase") == "stopped"

    @property
    def cores(self) -> tuple[int, int]:
        """(busy, total) over the nodes in the pool."""
        usable = [node for node in self.nodes if not node.get("excluded")]
        return sum(int(n["busy"]) for n in usable), sum(int(n["cores"]) for n in usable)


class Tracker:
    """What the watch remembers between looks: recent ends, the finished jobs' durations, failures."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._follower = Follower(spool.joblog)
        self._ends: collections.deque[float] = collections.deque()
        self._core_seconds, self._runs = 0.0, 0
        self.failures: collections.deque[dict[str, Any]] = collections.deque(maxlen=FAILURES_KEPT)
        self._samples: collections.deque[tuple[float, int]] = collections.deque()  # without a joblog
        self._stderr: dict[str, str] = {}

    def look(self, now: float) -> tuple[Look, list[dict[str, Any]]]:
        """Read the spool once; returns the look and the failures that appeared since the last one."""
        new = [row for row in self._follower.new_rows() if row["state"] != "QUEUED"]
        failed = [row for row in new if row["state"] in _FAILURE_STATES]
        for row in new:
            if row.get("end_time") is not None:
                self._ends.append(row["end_time"])
            if row.get("run_time") is not None and row.get("cores"):
                self._core_seconds += row["run_time"] * row["cores"]
                self._runs += 1
        self.failures.extend(failed)
        view = client.manager(self.spool.root, now)
        info = view.info or {}
        counts = info.get("counts", {})
        incoming = len(self.spool.scan(self.spool.incoming).candidates)
        nodes = info.get("nodes", [])
        rate = self._rate(now, info, counts)
        total = sum(int(node["cores"]) for node in nodes if not node.get("excluded"))
        return Look(now, view, counts, nodes, incoming, rate, self._eta(counts, total, rate)), failed

    def _rate(self, now: float, info: Mapping[str, Any], counts: Mapping[str, int]) -> float | None:
        started = float(info.get("started") or now - WINDOW)
        window = max(min(WINDOW, now - started), 1.0)
        if self._runs or self._ends:
            while self._ends and self._ends[0] < now - window:
                self._ends.popleft()
            return len(self._ends) / window
        # No joblog (a manager from before it): the change of the finished count between heartbeats.
        finished = sum(n for state, n in counts.items() if state not in ("QUEUED", "RUNNING"))
        beat = float(info.get("heartbeat", now))
        if not self._samples or self._samples[-1][0] != beat:
            self._samples.append((beat, finished))
        while len(self._samples) > 2 and self._samples[0][0] < beat - window:
            self._samples.popleft()
        (t0, n0), (t1, n1) = self._samples[0], self._samples[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None

    def _eta(self, counts: Mapping[str, int], total_cores: int, rate: float | None) -> float | None:
        queued, running = counts.get("QUEUED", 0), counts.get("RUNNING", 0)
        mean = self._core_seconds / self._runs if self._runs else None
        return eta(queued, running, mean, total_cores, rate)

    def stderr_of(self, job_id: str) -> str | None:
        if job_id not in self._stderr:
            document = self.spool.read_status(job_id) or {}
            self._stderr[job_id] = document.get("stderr") or ""
        return self._stderr[job_id] or None


def eta(queued: int, running: int, mean_core_seconds: float | None, total_cores: int,
        rate: float | None) -> float | None:
    """Seconds until nothing is queued or running, from the finished jobs' mean cost in core-seconds.

    A running job is counted as half done: sampled at a random moment, a job of typical length has
    about half of it left. Without finished jobs to learn from, the recent rate is used instead.
    """
    if not queued and not running:
        return 0.0
    if mean_core_seconds is not None and total_cores:
        work = (queued + running / 2) * mean_core_seconds
        return max(work / total_cores, 0.0)
    if rate:
        return (queued + running) / rate
    return None


# -- text ---------------------------------------------------------------------------------------------


def screen(look: Look, failures: Sequence[Mapping[str, Any]], stderr_of: Callable[[str], str | None],
           spool: str, width: int, height: int) -> list[str]:
    """The full view, as plain lines that fit `width` x `height` (colors are added afterwards)."""
    busy, total = look.cores
    counts = look.counts
    jobs = sum(counts.values())
    done = sum(n for state, n in counts.items() if state not in ("QUEUED", "RUNNING"))
    lines = [
        f"fsq status --watch  {spool}  {time.strftime('%H:%M:%S', time.localtime(look.now))}",
        _manager_line(look),
        "",
        f"jobs     {jobs:,} total   " + "   ".join(f"{s} {counts[s]:,}" for s in _ORDER if counts.get(s)),
        f"         {_bar(done, jobs, 40)} {done / jobs if jobs else 0:4.0%}  {done:,} done",
        f"rate     {_rate_text(look.rate)}    ETA {_eta_text(look)}",
        f"cores    {busy} busy, {total - busy} free of {total}     incoming: {look.incoming} file(s)",
    ]
    room = max(height - len(lines) - 4, 1)
    nodes = list(look.nodes)
    shown = nodes if len(nodes) <= room else nodes[: room - 1]
    label = max((len(str(n["name"])) for n in shown), default=4)
    for node in shown:
        state = f"out of the pool: {node['excluded']}" if node.get("excluded") else f"{node['busy']}/{node['cores']} busy"
        lines.append(f"  {node['name']!s:{label}}  {_bar(int(node['busy']), int(node['cores']), 20)} {state}")
    if len(shown) < len(nodes):
        lines.append(f"  ... and {len(nodes) - len(shown)} more nodes")
    room = height - len(lines) - 2
    recent = list(failures)[-max(room, 0):] if room > 0 else []
    lines += ["", f"failures ({counts.get('FAILED', 0) + counts.get('REJECTED', 0):,}): "
              + ("latest last" if failures else "none seen in the joblog")]
    lines += [f"  {_failure_text(row, stderr_of(row['id']))}" for row in recent]
    return [line[:width] for line in lines[:height]]


def plain_line(look: Look) -> str:
    busy, total = look.cores
    counts = ", ".join(f"{s} {look.counts[s]}" for s in _ORDER if look.counts.get(s)) or "no jobs"
    return (f"{_stamp(look.now)} {counts} | cores {busy}/{total} busy | {_rate_text(look.rate)} | "
            f"ETA {_eta_text(look)} | {_manager_line(look)}")


def plain_failure(row: Mapping[str, Any], stderr: str | None) -> str:
    return f"{_stamp(row.get('end_time') or 0.0)} {_failure_text(row, stderr)}"


def colorize(line: str) -> str:
    line = _STATE_RE.sub(lambda m: f"\x1b[{_COLORS[m.group(1)]}m{m.group(1)}\x1b[0m", line)
    return _BAR_RE.sub(lambda m: f"[\x1b[36m{m.group(1)}\x1b[90m{m.group(2)}\x1b[0m]", line)


def _manager_line(look: Look) -> str:
    info = look.manager.info
    if not info or not look.manager.alive:
        return look.manager.note
    age = look.now - float(info.get("heartbeat", look.now))
    return f"manager {info.get('phase')} on {info.get('host')} pid {info.get('pid')}, heartbeat {max(age, 0):.1f} s ago"


def _failure_text(row: Mapping[str, Any], stderr: str | None) -> str:
    name = f" {row['name']}" if row.get("name") else ""
    reason = row.get("reason") or row["state"].lower()
    where = f" (stderr {stderr})" if stderr and row["state"] == "FAILED" else ""
    return f"{row['state']} {row['id']}{name}: {reason}{where}"


def _bar(part: int, whole: int, width: int) -> str:
    filled = min(width, int(width * part / whole)) if whole else 0
    return f"[{'#' * filled}{'.' * (width - filled)}]"


def _rate_text(rate: float | None) -> str:
    return "- jobs/s" if rate is None else f"{rate:.3g} jobs/s"


def _eta_text(look: Look) -> str:
    if look.eta is None:
        return "unknown yet"
    if look.eta == 0:
        return "nothing queued or running"
    finish = time.strftime("%H:%M:%S", time.localtime(look.now + look.eta))
    return f"{_duration(look.eta)} (about {finish})"


def _duration(seconds: float) -> str:
    whole = round(seconds)
    if whole < 60:
        return f"{max(whole, 1)} s"
    hours, rest = divmod(whole, 3600)
    return f"{hours}h {rest // 60:02d}m" if hours else f"{rest // 60}m {rest % 60:02d}s"


def _stamp(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


# -- the loop -----------------------------------------------------------------------------------------


def follow(spool: Spool, out: TextIO, *, interval: float, interactive: bool,
           size: Callable[[], tuple[int, int]], clock: Callable[[], float] = time.time,
           sleep: Callable[[float], None] = time.sleep) -> None:
    """Show the spool on `out` every `interval` seconds until the manager has stopped."""
    tracker = Tracker(spool)
    last_key: object = None
    last_print = float("-inf")
    if interactive:
        out.write("\x1b[?25l\x1b[2J")  # hide the cursor, clear the screen once
    try:
        while True:
            look, failed = tracker.look(clock())
            if interactive:
                width, height = size()
                lines = screen(look, tracker.failures, tracker.stderr_of, str(spool.root), width, height - 1)
                out.write("\x1b[H" + "".join(colorize(line) + "\x1b[K\n" for line in lines) + "\x1b[J")
            else:
                out.writelines(plain_failure(row, tracker.stderr_of(row["id"])) + "\n" for row in failed)
                key = (sorted(look.counts.items()), look.cores, look.manager.alive, look.stopped)
                if key != last_key or look.now - last_print >= KEEPALIVE:
                    out.write(plain_line(look) + "\n")
                    last_key, last_print = key, look.now
            out.flush()
            if look.stopped:
                return
            sleep(interval)
    finally:
        if interactive:
            out.write("\x1b[?25h")
            out.flush()
