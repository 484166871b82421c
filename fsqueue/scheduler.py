"""Decide which queued jobs start now and where. Pure: no I/O, no clock, no randomness, no logging.

The rule (docs/scheduling.md): jobs are considered in queue order (the manager's order: first come,
first served). A job starts as soon as its minimum fits; a later, smaller job may start ahead of an
earlier one that does not fit yet (backfill). Each time that happens the earlier job counts one
overtaking; once a waiting job has been overtaken `max_overtaken` times, it holds the nodes it will
run on: no later job starts there, so those nodes drain and it starts. Nobody waits forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from fsqueue.model import Placement, Range

DEFAULT_MAX_OVERTAKEN = 100


@dataclass(frozen=True)
class Request:
    """What one queued job asks for: `cores` on each of `nodes` nodes."""

    job_id: str
    cores: Range
    nodes: Range
    overtaken: int = 0
    exclusive: bool = False  # whole nodes: only nodes with every core free, and all of them
    walltime: float | None = None  # seconds the job may run; it does not start if the allocation ends sooner
    gpus: int = 0  # on each node


@dataclass(frozen=True)
class Plan:
    placements: tuple[tuple[str, Placement], ...]  # in the order they should start
    overtaken: frozenset[str]  # waiting jobs that a later job overtook in this round
    reservations: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # job id -> nodes held


def plan(
    queue: Iterable[Request],
    free: Mapping[str, Sequence[int]],
    capacity: Mapping[str, int],
    max_overtaken: int = DEFAULT_MAX_OVERTAKEN,
    time_left: float | None = None,
    free_gpus: Mapping[str, Sequence[str]] | None = None,
    gpu_capacity: Mapping[str, int] | None = None,
) -> Plan:
    """Place what fits. `free` maps each node, in the allocation's order, to its free core indices;
    `capacity` to its total cores; `free_gpus` and `gpu_capacity` likewise for GPUs (none if absent)."""
    pool = {node: sorted(cores) for node, cores in free.items()}
    gpu_pool = {node: list((free_gpus or {}).get(node, ())) for node in pool}
    gpu_total = {node: (gpu_capacity or {}).get(node, 0) for node in pool}
    held: set[str] = set()
    spare = sum(len(cores) for cores in pool.values())
    placements: list[tuple[str, Placement]] = []
    waiting: list[tuple[int, str]] = []
    reservations: dict[str, tuple[str, ...]] = {}
    failed_shapes: list[tuple[bool, int, int, int]] = []
    last_start = -1
    for position, request in enumerate(queue):
        if spare == 0:
            break
        if time_left is not None and request.walltime is not None and request.walltime > time_left:
            continue  # would be killed by the allocation's end: leave it for the next allocation
        starving = request.overtaken >= max_overtaken
        shape = (request.exclusive, request.cores.min, request.nodes.min, request.gpus)
        # A shape at least as large as one that did not fit cannot fit either: free space only shrinks.
        if not starving and any(e == shape[0] and c <= shape[1] and n <= shape[2] and g <= shape[3]
                                for e, c, n, g in failed_shapes):
            waiting.append((position, request.job_id))
            continue
        if request.exclusive:
            chosen = _choose_whole(request, pool, capacity, gpu_pool, gpu_total, held)
        else:
            chosen = _choose(request, pool, gpu_pool, held)
        if chosen is None:
            failed_shapes.append(shape)
            waiting.append((position, request.job_id))
            if starving:
                nodes = _reserve(request, pool, capacity, gpu_total, held)
                held.update(nodes)
                spare -= sum(len(pool[node]) for node in nodes)
                if nodes:
                    reservations[request.job_id] = nodes
            continue
        for node, cores in chosen.cores:
            pool[node] = pool[node][len(cores) :]
        for node, gpus in chosen.gpus:
            gpu_pool[node] = gpu_pool[node][len(gpus) :]
        spare -= chosen.total_cores
        placements.append((request.job_id, chosen))
        last_start = position
    overtaken = frozenset(job_id for position, job_id in waiting if position < last_start)
    return Plan(tuple(placements), overtaken, reservations)


def _choose(
    request: Request, pool: Mapping[str, list[int]], gpu_pool: Mapping[str, list[str]], held: set[str]
) -> Placement | None:
    cores, nodes = request.cores, request.nodes
    # Prefer nodes that give the job the most of what it wants, then the fullest such node (best fit),
    # which keeps large holes open for large jobs.
    candidates = sorted(
        (node for node, free in pool.items()
         if node not in held and len(free) >= cores.min and len(gpu_pool[node]) >= request.gpus),
        key=lambda node: (-min(len(pool[node]), cores.max), len(pool[node])),
    )
    if len(candidates) < nodes.min:
        return None
    best_count, best_per_node = 0, 0
    for count in range(nodes.min, min(nodes.max, len(candidates)) + 1):
        per_node = min(cores.max, len(pool[candidates[count - 1]]))
        if count * per_node > best_count * best_per_node:
            best_count, best_per_node = count, per_node
    chosen = candidates[:best_count]
    return Placement(tuple((node, tuple(pool[node][:best_per_node])) for node in chosen),
                     tuple((node, tuple(gpu_pool[node][: request.gpus])) for node in chosen) if request.gpus else ())


def _choose_whole(
    request: Request, pool: Mapping[str, list[int]], capacity: Mapping[str, int],
    gpu_pool: Mapping[str, list[str]], gpu_total: Mapping[str, int], held: set[str],
) -> Placement | None:
    idle = [node for node, free in pool.items() if node not in held and len(free) == capacity[node]
            and len(gpu_pool[node]) == gpu_total[node] >= request.gpus]
    if len(idle) < request.nodes.min:
        return None
    chosen = idle[: min(request.nodes.max, len(idle))]
    return Placement(tuple((node, tuple(pool[node])) for node in chosen),
                     tuple((node, tuple(gpu_pool[node])) for node in chosen if gpu_pool[node]))


def _reserve(
    request: Request, pool: Mapping[str, list[int]], capacity: Mapping[str, int], gpu_total: Mapping[str, int],
    held: set[str],
) -> tuple[str, ...]:
    """The nodes a starving job will run on: those big enough to hold it, the emptiest first."""
    candidates = sorted(
        (node for node in pool if node not in held and gpu_total[node] >= request.gpus
         and (request.exclusive or capacity[node] >= request.cores.min)),
        key=lambda node: -len(pool[node]),
    )
    return tuple(candidates[: request.nodes.min]) if len(candidates) >= request.nodes.min else ()


def never_fits(request: Request, capacity: Mapping[str, int], gpu_capacity: Mapping[str, int] | None = None
               ) -> str | None:
    """Why a job can never start in this allocation, or None if it can."""
    if request.gpus:
        gpus = gpu_capacity or {}
        able = [node for node in capacity if gpus.get(node, 0) >= request.gpus]
        if len(able) < request.nodes.min:
            most = max(gpus.values(), default=0)
            return (f"needs {request.gpus} GPUs on each of {request.nodes.min} node(s); "
                    f"{len(able)} node(s) here have that many (most GPUs on a node: {most})")
        capacity = {node: capacity[node] for node in able}
    if request.exclusive:
        if len(capacity) >= request.nodes.min:
            return None
        return f"needs {request.nodes.min} whole nodes; this allocation has {len(capacity)}"
    big_enough = [node for node, cores in capacity.items() if cores >= request.cores.min]
    if len(big_enough) >= request.nodes.min:
        return None
    largest = max(capacity.values(), default=0)
    if request.nodes.min == 1:
        return f"needs {request.cores.min} cores on one node; the largest node here has {largest}"
    return (
        f"needs {request.nodes.min} nodes with {request.cores.min} cores each; this allocation has "
        f"{len(big_enough)} such node(s) of {len(capacity)}"
    )


def why_waiting(request: Request, plan: Plan, time_left: float | None = None) -> str:
    """A one-line reason a job that fits the allocation has not started, for `fsq status`.

    Stable while the situation is (no counts of the moment), so that it is written once, not at every plan.
    """
    if time_left is not None and request.walltime is not None and request.walltime > time_left:
        return f"needs {request.walltime:g} s of walltime; the allocation ends in {time_left:.0f} s"
    if request.job_id in plan.reservations:
        return f"holding nodes {','.join(plan.reservations[request.job_id])} until they drain"
    if request.exclusive:
        return f"waiting for {request.nodes.min} whole idle node(s)"
    where = "one node" if request.nodes.min == 1 else f"each of {request.nodes.min} nodes"
    held = " (others are held for a job that waited long)" if plan.reservations else ""
    gpus = f" and {request.gpus} free GPU(s)" if request.gpus else ""
    return f"waiting for {request.cores.min} free cores{gpus} on {where}{held}"
