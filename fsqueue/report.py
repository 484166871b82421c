"""What a run looked like, as data: counts, a timeline, utilization, durations, the failed and the slowest jobs.

`collect` reads the spool (status files, the joblog, the heartbeat); `assemble` turns what was read into
the report document, the same for `fsq report --format json` and for the HTML page (fsqueue.report_html).
Every key is documented in docs/cli.md ("fsq report"). Above BAR_LIMIT attempts or ROW_LIMIT core rows the
timeline is aggregated per node and time bin, so a run of 100,000 jobs gives a report of the same size as
one of 5,000.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsqueue import client
from fsqueue.joblog import read_joblog
from fsqueue.model import FINAL_STATES, JobState
from fsqueue.spool import Spool

REPORT_VERSION = 1
BAR_LIMIT = 2500  # attempts drawn one bar each; above, the timeline is a heat map per node
ROW_LIMIT = 512  # core rows in the timeline; above, too
BINS = 240  # time bins of the utilization chart and the heat map
HISTOGRAM_BINS = 24
TABLE_LIMIT = 100  # failed jobs listed one by one
SLOWEST = 20
MARK_LIMIT = 2000  # failures marked on the heat map

Doc = dict[str, Any]


@dataclass(frozen=True)
class Attempt:
    """One stretch of time a job held cores: from the joblog, or from a status file (running or unlogged)."""

    id: str
    name: str | None
    attempt: int
    state: str
    start: float
    end: float
    cores: Mapping[str, Sequence[int]]
    exit_code: int | None = None
    signal: int | None = None
    running: bool = False

    @property
    def core_count(self) -> int:
        return sum(len(cores) for cores in self.cores.values())


@dataclass(frozen=True)
class Inputs:
    """Everything a report is made from, as read from the spool."""

    spool: str
    statuses: list[Doc]
    joblog: list[Doc]
    manager: client.ManagerView
    now: float
    heartbeat_nodes: list[Doc] = field(default_factory=list)


def collect(spool: Spool, now: float) -> Inputs:
    documents = client.all_statuses(spool)
    view = client.manager(spool.root, now)
    nodes = list((view.info or {}).get("nodes", []))
    return Inputs(str(spool.root), documents, read_joblog(spool.joblog), view, now, nodes)


def assemble(inputs: Inputs) -> Doc:
    """The report document (docs/cli.md, "fsq report")."""
    attempts = _attempts(inputs.statuses, inputs.joblog, inputs.now)
    start, end = _span(inputs.statuses, attempts)
    nodes = _nodes(inputs.heartbeat_nodes, attempts)
    total_cores = sum(node["cores"] for node in nodes)
    width = (end - start) / BINS if end > start else 0.0
    per_node = _busy(attempts, start, width, [node["name"] for node in nodes])
    busy_seconds = sum(a.core_count * (a.end - a.start) for a in attempts)
    finished = sum(1 for doc in inputs.statuses if doc.get("state") in FINAL_STATES)
    by_id = {doc["id"]: doc for doc in inputs.statuses}
    info = inputs.manager.info or {}
    return {
        "version": REPORT_VERSION,
        "generated": inputs.now,
        "spool": inputs.spool,
        "manager": {"alive": inputs.manager.alive, "note": inputs.manager.note, "host": info.get("host"),
                    "pid": info.get("pid"), "phase": info.get("phase"), "heartbeat": info.get("heartbeat")},
        "span": {"start": start if end else None, "end": end or None, "seconds": end - start},
        "jobs": {"total": len(inputs.statuses), "finished": finished,
                 "counts": dict(sorted(collections.Counter(doc["state"] for doc in inputs.statuses).items()))},
        "attempts": {"total": len(attempts), "requeued": sum(1 for row in inputs.joblog if row["state"] == "QUEUED")},
        "nodes": nodes,
        "cores": {"total": total_cores, "busy_core_seconds": round(busy_seconds, 3),
                  "utilization": round(busy_seconds / (total_cores * (end - start)), 4)
                  if total_cores and end > start else None},
        "throughput": round(finished / (end - start), 4) if end > start else None,
        "utilization": {"start": start, "bin_seconds": width,
                        "busy": _rounded(map(sum, zip(*per_node.values()))) if width else []},
        "run_time": distribution([a.end - a.start for a in attempts if not a.running]),
        "queue_wait": distribution([doc["start_time"] - doc["submit_time"] for doc in inputs.statuses
                                    if doc.get("start_time") is not None and doc.get("submit_time") is not None]),
        "failed": _failed(inputs.statuses),
        "slowest": [_job_row(by_id.get(a.id, {}), a) for a in _slowest(attempts)],
        "timeline": _timeline(attempts, nodes, start, width, per_node),
    }


# -- attempts and the span ----------------------------------------------------------------------------


def _attempts(statuses: Iterable[Doc], rows: Iterable[Doc], now: float) -> list[Attempt]:
    """Every attempt that held cores: ended ones from the joblog, the rest from status files.

    A job whose final line the joblog lacks (a spool from before the joblog, or a lost tail) is drawn
    from its status file, so a report never misses a finished job.
    """
    attempts, logged = [], set()
    for row in rows:
        if row["state"] in FINAL_STATES:
            logged.add(row["id"])
        if row.get("start_time") is not None and row.get("end_time") is not None and row.get("placement"):
            attempts.append(Attempt(row["id"], row.get("name"), row.get("attempt") or 1, row["state"],
                                    row["start_time"], row["end_time"], row["placement"], row.get("exit_code"),
                                    row.get("signal")))
    for doc in statuses:
        state, start = doc.get("state"), doc.get("start_time")
        if start is None or not doc.get("cores") or (state in FINAL_STATES and doc["id"] in logged):
            continue
        if state == JobState.RUNNING or state in FINAL_STATES:
            end = doc.get("end_time") if state in FINAL_STATES else None
            attempts.append(Attempt(doc["id"], doc.get("name"), doc.get("attempt", 1), state, start,
                                    max(end if end is not None else now, start), doc["cores"],
                                    doc.get("exit_code"), doc.get("signal"), running=end is None))
    attempts.sort(key=lambda a: (a.start, a.id))
    return attempts


def _span(statuses: Iterable[Doc], attempts: Sequence[Attempt]) -> tuple[float, float]:
    times = [a.start for a in attempts] + [a.end for a in attempts]
    for doc in statuses:
        times += [t for t in (doc.get("submit_time"), doc.get("end_time")) if t is not None]
    return (min(times), max(times)) if times else (0.0, 0.0)


def _nodes(heartbeat: Iterable[Doc], attempts: Iterable[Attempt]) -> list[Doc]:
    """The nodes of the allocation by the heartbeat, plus any node a job ran on that it does not name."""
    nodes = {node["name"]: int(node["cores"]) for node in heartbeat}
    seen: dict[str, int] = {}
    for attempt in attempts:
        for node, cores in attempt.cores.items():
            seen[node] = max(seen.get(node, 0), max(cores, default=-1) + 1)
    for node in sorted(seen):
        nodes[node] = max(nodes.get(node, 0), seen[node])
    return [{"name": name, "cores": cores} for name, cores in nodes.items()]


# -- binning ------------------------------------------------------------------------------------------


def _busy(attempts: Iterable[Attempt], start: float, width: float, nodes: Sequence[str]) -> dict[str, list[float]]:
    """Average busy cores of each node per time bin: exact, in one pass, O(attempts + nodes x bins)."""
    if width <= 0:
        return {node: [] for node in nodes}
    direct = {node: [0.0] * BINS for node in nodes}  # partial bins, added as they are
    steps = {node: [0.0] * (BINS + 1) for node in nodes}  # whole bins, as a difference array
    for attempt in attempts:
        low, high = (attempt.start - start) / width, (attempt.end - start) / width
        for node, cores in attempt.cores.items():
            _spread(direct[node], steps[node], low, high, len(cores))
    return {node: _levels(direct[node], steps[node]) for node in nodes}


def _levels(direct: list[float], steps: list[float]) -> list[float]:
    level, busy = 0.0, []
    for index in range(BINS):
        level += steps[index]
        busy.append(level + direct[index])
    return busy


def _spread(direct: list[float], steps: list[float], low: float, high: float, weight: float) -> None:
    low, high = max(low, 0.0), min(high, float(BINS))
    first, last = min(int(low), BINS - 1), min(int(high), BINS - 1)
    if first == last:
        direct[first] += weight * (high - low)
        return
    direct[first] += weight * (first + 1 - low)
    direct[last] += weight * (high - last)
    steps[first + 1] += weight
    steps[last] -= weight


def _rounded(values: Iterable[float]) -> list[float]:
    return [round(value, 3) for value in values]


# -- distributions ------------------------------------------------------------------------------------


def distribution(values: Sequence[float]) -> Doc:
    """Count, mean and quantiles of durations, with a histogram; log-spaced bins when they span decades."""
    ordered = sorted(max(value, 0.0) for value in values)
    if not ordered:
        return {"count": 0, "min": None, "p50": None, "p90": None, "p99": None, "max": None, "mean": None,
                "histogram": {"edges": [], "counts": [], "log": False}}
    low, high = ordered[0], ordered[-1]
    log = low > 0 and high / low > 50
    return {
        "count": len(ordered), "min": low, "max": high, "mean": sum(ordered) / len(ordered),
        **{name: _quantile(ordered, q) for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
        "histogram": _histogram(ordered, log),
    }


def _quantile(ordered: Sequence[float], q: float) -> float:
    position = q * (len(ordered) - 1)
    below = int(position)
    above = min(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _histogram(ordered: Sequence[float], log: bool) -> Doc:
    low, high = ordered[0], ordered[-1]
    if high <= low:
        return {"edges": [low, high], "counts": [len(ordered)], "log": False}
    # Bin i holds [edges[i], edges[i+1]); in log mode the edges grow by one ratio, so i = log(v/low)/log(ratio).
    ratio = (high / low) ** (1 / HISTOGRAM_BINS) if log else 1.0
    step = (high - low) / HISTOGRAM_BINS
    edges = [low * ratio**i if log else low + step * i for i in range(HISTOGRAM_BINS + 1)]
    edges[-1] = high
    counts = [0] * HISTOGRAM_BINS
    for value in ordered:
        index = int(math.log(value / low) / math.log(ratio)) if log else int((value - low) / step)
        counts[min(index, HISTOGRAM_BINS - 1)] += 1
    return {"edges": _rounded6(edges), "counts": counts, "log": log}


def _rounded6(values: Iterable[float]) -> list[float]:
    return [round(value, 6) for value in values]


# -- tables -------------------------------------------------------------------------------------------


def _job_row(doc: Mapping[str, Any], attempt: Attempt | None = None) -> Doc:
    start = attempt.start if attempt else doc.get("start_time")
    end = attempt.end if attempt else doc.get("end_time")
    return {
        "id": doc.get("id", attempt.id if attempt else None),
        "name": doc.get("name", attempt.name if attempt else None),
        "state": attempt.state if attempt else doc.get("state"),
        "attempt": attempt.attempt if attempt else doc.get("attempt"),
        "exit_code": attempt.exit_code if attempt else doc.get("exit_code"),
        "signal": attempt.signal if attempt else doc.get("signal"),
        "reason": doc.get("reason"),
        "start_time": start,
        "end_time": end,
        "run_time": end - start if start is not None and end is not None else None,
        "nodes": list(attempt.cores) if attempt else doc.get("nodes", []),
        "cores": attempt.core_count if attempt else sum(len(c) for c in doc.get("cores", {}).values()),
        "stdout": doc.get("stdout"),
        "stderr": doc.get("stderr"),
    }


def _failed(statuses: Iterable[Doc]) -> Doc:
    failed = [doc for doc in statuses if doc.get("state") == JobState.FAILED]
    failed.sort(key=lambda doc: (doc.get("end_time") or 0.0, doc["id"]))
    return {"total": len(failed), "jobs": [_job_row(doc) for doc in failed[:TABLE_LIMIT]]}


def _slowest(attempts: Iterable[Attempt]) -> list[Attempt]:
    ended = [a for a in attempts if not a.running]
    return sorted(ended, key=lambda a: (a.start - a.end, a.id))[:SLOWEST]


# -- the timeline -------------------------------------------------------------------------------------


def _timeline(attempts: Sequence[Attempt], nodes: Sequence[Doc], start: float, width: float,
              per_node: Mapping[str, list[float]]) -> Doc:
    rows = sum(node["cores"] for node in nodes)
    if len(attempts) <= BAR_LIMIT and rows <= ROW_LIMIT:
        return {"mode": "bars", "bars": [_bar(a) for a in attempts]}
    marks = [{"id": a.id, "node": next(iter(a.cores)), "time": a.end} for a in attempts
             if a.state == JobState.FAILED][:MARK_LIMIT]
    return {
        "mode": "density",
        "start": start,
        "bin_seconds": width,
        "nodes": {name: _rounded(busy) for name, busy in per_node.items()},
        "failures": marks,
    }


def _bar(attempt: Attempt) -> Doc:
    return {"id": attempt.id, "name": attempt.name, "attempt": attempt.attempt, "state": attempt.state,
            "start": attempt.start, "end": attempt.end, "running": attempt.running,
            "cores": {node: list(cores) for node, cores in attempt.cores.items()},
            "exit_code": attempt.exit_code, "signal": attempt.signal}
