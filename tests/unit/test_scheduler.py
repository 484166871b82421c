"""fsqueue.scheduler: hand-made cases for each rule, every small case for the invariants, and a few
hundred simulated rounds to show that a big job is never starved by a stream of small ones."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import combinations, product

import pytest

from fsqueue.model import Placement, Range
from fsqueue.scheduler import Plan, Request, never_fits, plan, why_waiting

Free = Mapping[str, Sequence[int]]


def req(job_id: str, cores: int | tuple[int, int] = 1, nodes: int | tuple[int, int] = 1, overtaken: int = 0) -> Request:
    def rng(value: int | tuple[int, int]) -> Range:
        return Range(value, value) if isinstance(value, int) else Range(*value)

    return Request(job_id, rng(cores), rng(nodes), overtaken)


def cores(text: str) -> dict[str, list[int]]:
    """Free cores written compactly: "a:013 b:" is node a with cores 0, 1, 3 free and node b full."""
    return {node: [int(digit) for digit in digits] for node, digits in (part.split(":") for part in text.split())}


def placed(result: Plan) -> dict[str, str]:
    """The plan's placements in the same notation, nodes in the order the scheduler chose them."""
    return {
        job_id: " ".join(f"{node}:{''.join(map(str, cores))}" for node, cores in placement.cores)
        for job_id, placement in result.placements
    }


def fits(request: Request, free: Mapping[str, Collection[int]], held: frozenset[str] = frozenset()) -> bool:
    """Whether the job's minimum fits in `free` outside `held`, computed independently of the scheduler."""
    roomy = [node for node, cores in free.items() if node not in held and len(cores) >= request.cores.min]
    return len(roomy) >= request.nodes.min


def most_cores(request: Request, free: Mapping[str, Collection[int]], held: frozenset[str]) -> int:
    """The most cores any legal placement of `request` could get, by trying every set of nodes."""
    roomy = [node for node, cores in free.items() if node not in held and len(cores) >= request.cores.min]
    best = 0
    for count in range(request.nodes.min, min(request.nodes.max, len(roomy)) + 1):
        for chosen in combinations(roomy, count):
            best = max(best, count * min(request.cores.max, *(len(free[node]) for node in chosen)))
    return best


# --- table: where one plan puts jobs -------------------------------------------------------------

CAP4 = {"a": 4, "b": 4, "c": 4}


@pytest.mark.parametrize(
    ("queue", "free", "expected"),
    [
        pytest.param([req("j")], "a:0123 b:23 c:1", {"j": "c:1"}, id="best-fit-1-core-to-fullest-node"),
        pytest.param([req("j", 2)], "a:0123 b:123 c:1", {"j": "b:12"}, id="best-fit-skips-too-full-nodes"),
        pytest.param([req("j")], "a:3 b:0 c:01", {"j": "a:3"}, id="best-fit-tie-goes-to-first-node"),
        pytest.param([req("j", (1, 4))], "a:01 b:0123 c:2", {"j": "b:0123"}, id="range-takes-max"),
        pytest.param([req("j", (2, 8))], "a:012 b:1 c:01", {"j": "a:012"}, id="range-takes-what-is-free"),
        pytest.param([req("j", (1, 2))], "a:012 b:13 c:0", {"j": "b:13"}, id="range-best-fit-among-nodes-giving-max"),
        pytest.param([req("j", 2, 2)], "a:0123 b:01 c:012", {"j": "b:01 c:01"}, id="multi-node-best-fit"),
        pytest.param([req("j", 1, 3)], "a:0 b:3 c:12", {"j": "a:0 b:3 c:1"}, id="multi-node-all-nodes"),
        pytest.param([req("j", 2, (1, 3))], "a:012 b:1 c:03", {"j": "c:03 a:01"}, id="node-range-every-roomy-node"),
        pytest.param([req("j", (1, 4), (1, 3))], "a:0123 b:01 c:0", {"j": "a:0123"}, id="both-ranges-one-node-best"),
        pytest.param([req("j", (1, 4), (1, 3))], "a:012 b:012 c:0", {"j": "a:012 b:012"}, id="both-ranges-two-nodes"),
        pytest.param([req("x", 2), req("y", 2), req("z", 2)], "a:0123", {"x": "a:01", "y": "a:23"}, id="fill-up"),
        pytest.param([req("big", 4), req("small")], "a:01 b:3", {"small": "b:3"}, id="backfill-past-blocked-job"),
        pytest.param([req("big", 2, 2), req("mid", 2), req("small")], "a:01 b:0", {"mid": "a:01", "small": "b:0"},
                     id="backfill-two-jobs"),
        pytest.param([req("big", 3), req("bigger", 4), req("small")], "a:01", {"small": "a:0"},
                     id="two-blocked-one-backfills"),
        pytest.param([], "a:01", {}, id="empty-queue"),
        pytest.param([req("j")], "a: b:", {}, id="no-free-cores"),
    ],
)
def test_placements(queue: list[Request], free: str, expected: dict[str, str]) -> None:
    assert placed(plan(queue, cores(free), CAP4)) == expected


BIG, STARVING = req("big", 4), req("big", 4, overtaken=3)


@pytest.mark.parametrize(
    ("queue", "free", "overtaken", "reservations", "expected"),
    [
        pytest.param([BIG, req("small")], "a:012 b:0", {"big"}, {}, {"small": "b:0"}, id="backfill-overtakes"),
        pytest.param([STARVING, req("small")], "a:012", set(), {"big": ("a",)}, {}, id="starving-job-holds-its-node"),
        pytest.param([STARVING, req("small")], "a:0 b:123", {"big"}, {"big": ("b",)}, {"small": "a:0"},
                     id="hold-emptiest-node-others-still-run"),
        pytest.param([req("big", 4, 2, overtaken=3), req("small")], "a:0 b:12 c:3", {"big"}, {"big": ("b", "a")},
                     {"small": "c:3"}, id="hold-as-many-nodes-as-needed"),
        pytest.param([req("big", 4, overtaken=2), req("small")], "a:012", {"big"}, {}, {"small": "a:0"},
                     id="below-the-limit-no-hold"),
        pytest.param([req("small"), STARVING], "a:012", set(), {"big": ("a",)}, {"small": "a:0"},
                     id="earlier-job-not-held-back"),
        pytest.param([STARVING, req("mid", 2)], "a:0123 b:01", set(), {}, {"big": "a:0123", "mid": "b:01"},
                     id="starving-job-that-fits-starts"),
        pytest.param([req("w1", 4), req("w2", 3), req("s1"), req("w3", 4)], "a:01", {"w1", "w2"}, {}, {"s1": "a:0"},
                     id="only-jobs-before-the-last-start"),
        pytest.param([req("s1", 2), req("w1", 4), req("s2")], "a:01", set(), {}, {"s1": "a:01"},
                     id="no-start-after-means-no-overtake"),
    ],
)
def test_overtaking_and_reservations(
    queue: list[Request], free: str, overtaken: set[str], reservations: dict[str, tuple[str, ...]],
    expected: dict[str, str],
) -> None:
    result = plan(queue, cores(free), CAP4, max_overtaken=3)
    assert (placed(result), set(result.overtaken), dict(result.reservations)) == (expected, overtaken, reservations)


def test_queue_may_be_any_iterable() -> None:
    # The manager hands over its dict's values view, not a list.
    queue = {"x": req("x", 2), "y": req("y")}
    assert plan(queue.values(), cores("a:012"), {"a": 4}) == plan(list(queue.values()), cores("a:012"), {"a": 4})
    assert placed(plan(iter([req("x")]), cores("a:5"), {"a": 8})) == {"x": "a:5"}


# --- table: never_fits and why_waiting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "capacity", "reason"),
    [
        pytest.param(req("j", 8), {"a": 4, "b": 6}, "needs 8 cores on one node; the largest node here has 6",
                     id="too-many-cores"),
        pytest.param(req("j", 1, 3), {"a": 4, "b": 4},
                     "needs 3 nodes with 1 cores each; this allocation has 2 such node(s) of 2", id="too-many-nodes"),
        pytest.param(req("j", 4, 2), {"a": 4, "b": 2, "c": 2},
                     "needs 2 nodes with 4 cores each; this allocation has 1 such node(s) of 3", id="few-big-nodes"),
        pytest.param(req("j", (5, 9)), {"a": 4}, "needs 5 cores on one node; the largest node here has 4",
                     id="minimum-counts"),
        pytest.param(req("j", (2, 99), (1, 99)), {"a": 2}, None, id="maximum-does-not-count"),
        pytest.param(req("j", 4, 2), {"a": 4, "b": 8}, None, id="exact-fit"),
    ],
)
def test_never_fits(request_: Request, capacity: dict[str, int], reason: str | None) -> None:
    assert never_fits(request_, capacity) == reason


NO_PLAN = Plan((), frozenset())


@pytest.mark.parametrize(
    ("request_", "situation", "time_left", "text"),
    [
        pytest.param(req("j", 4), NO_PLAN, None, "waiting for 4 free cores on one node", id="one-node"),
        pytest.param(req("j", 2, 3), NO_PLAN, None, "waiting for 2 free cores on each of 3 nodes", id="several-nodes"),
        pytest.param(req("j", 2), Plan((), frozenset(), {"j": ("a", "b")}), None, "holding nodes a,b until they drain",
                     id="reserving"),
        pytest.param(req("j", 2), Plan((), frozenset(), {"k": ("a",)}), None,
                     "waiting for 2 free cores on one node (others are held for a job that waited long)", id="held"),
        pytest.param(Request("j", Range(1, 1), Range(1, 1), walltime=600), NO_PLAN, 100.0,
                     "needs 600 s of walltime; the allocation ends in 100 s", id="walltime"),
        pytest.param(Request("j", Range(1, 1), Range(2, 2), exclusive=True), NO_PLAN, None,
                     "waiting for 2 whole idle node(s)", id="exclusive"),
    ],
)
def test_why_waiting(request_: Request, situation: Plan, time_left: float | None, text: str) -> None:
    assert why_waiting(request_, situation, time_left) == text


def test_a_job_longer_than_the_time_left_is_not_started_and_blocks_nobody() -> None:
    long = Request("long", Range(1, 1), Range(1, 1), walltime=600)
    short = Request("short", Range(1, 1), Range(1, 1), walltime=60)
    result = plan([long, short], {"a": [0]}, {"a": 1}, time_left=100.0)
    assert [job for job, _ in result.placements] == ["short"] and not result.overtaken
    assert [job for job, _ in plan([long], {"a": [0]}, {"a": 1}, time_left=None).placements] == ["long"]


# --- every small case: the invariants ---------------------------------------------------------------

MAX_OVERTAKEN = 1


def check_plan(queue: Sequence[Request], free: Free, capacity: Mapping[str, int]) -> Plan:
    """Plan, and assert every rule a plan must keep whatever the input."""
    result = plan(queue, free, capacity, MAX_OVERTAKEN)
    assert plan(list(queue), {n: list(c) for n, c in free.items()}, dict(capacity), MAX_OVERTAKEN) == result
    position = {request.job_id: index for index, request in enumerate(queue)}
    starts = [position[job_id] for job_id, _ in result.placements]
    assert starts == sorted(set(starts)), "each job placed once, in queue order"
    pool = {node: set(cores) for node, cores in free.items()}
    held: dict[str, int] = {}  # node -> queue position of the job holding it
    for job_id, nodes in result.reservations.items():
        request = queue[position[job_id]]
        assert job_id not in {j for j, _ in result.placements} and request.overtaken >= MAX_OVERTAKEN
        assert len(set(nodes)) == len(nodes) == request.nodes.min
        assert all(capacity[node] >= request.cores.min and node not in held for node in nodes)
        held.update(dict.fromkeys(nodes, position[job_id]))
    placements = dict(result.placements)
    for index, request in enumerate(queue):
        held_before = frozenset(node for node, holder in held.items() if holder < index)
        if request.job_id not in placements:
            assert not fits(request, pool, held_before), f"{request.job_id} waits although it fits"
            can_hold = sum(cores >= request.cores.min for node, cores in capacity.items() if node not in held_before)
            if request.overtaken >= MAX_OVERTAKEN and free_outside(pool, held_before) and can_hold >= request.nodes.min:
                assert request.job_id in result.reservations, f"{request.job_id} starves without holding nodes"
            continue
        placement = placements[request.job_id]
        per_node = {len(cores) for _, cores in placement.cores}
        assert len(per_node) == 1 and request.cores.min <= per_node.pop() <= request.cores.max
        assert request.nodes.min <= len(placement.nodes) == len(set(placement.nodes)) <= request.nodes.max
        assert not held_before & set(placement.nodes), "a job started on a node held for an earlier one"
        assert placement.total_cores == most_cores(request, pool, held_before)
        for node, cores in placement.cores:
            assert set(cores) <= pool[node], "cores not free, or already given to an earlier job"
            pool[node] -= set(cores)
    waited_behind_a_start = queue[: max(starts, default=0)]
    assert result.overtaken == {r.job_id for r in waited_behind_a_start if r.job_id not in placements}
    if queue and fits(queue[0], free):
        assert result.placements[0][0] == queue[0].job_id
    return result


def free_outside(pool: Mapping[str, set[int]], held: frozenset[str]) -> int:
    return sum(len(cores) for node, cores in pool.items() if node not in held)


def free_sets(capacity: int) -> Iterator[tuple[int, ...]]:
    """Every subset of a node's cores."""
    for count in range(capacity + 1):
        yield from combinations(range(capacity), count)


def pools(capacities: Sequence[Sequence[int]], every_subset: bool) -> Iterator[tuple[dict[str, int], Free]]:
    """(capacity, free) for each node-capacity vector; free cores as every subset, or one per count
    (odd-numbered cores first, so that free cores have gaps)."""
    for caps in capacities:
        names = [f"n{i}" for i in range(len(caps))]
        if every_subset:
            choices = [list(free_sets(c)) for c in caps]
        else:
            odd_first = [sorted(range(c), key=lambda i: (i % 2 == 0, i)) for c in caps]
            choices = [[tuple(sorted(order[:k])) for k in range(len(order) + 1)] for order in odd_first]
        for free in product(*choices):
            yield dict(zip(names, caps)), dict(zip(names, free))


ALL_CAPACITIES = [caps for k in (1, 2, 3) for caps in product(range(1, 5), repeat=k)]
SHAPES = [(cores, nodes) for cores in (1, 2, 3, (1, 2), (2, 4), (1, 4)) for nodes in (1, 2, (1, 2), (1, 3))]
ONE_JOB = [req("j", cores, nodes, overtaken) for cores, nodes in SHAPES for overtaken in (0, MAX_OVERTAKEN)]


def test_one_job_on_every_small_pool_with_any_free_cores() -> None:
    capacities = [caps for caps in ALL_CAPACITIES if sum(caps) <= 6]
    cases = 0
    for capacity, free in pools(capacities, every_subset=True):
        for request in ONE_JOB:
            check_plan([request], free, capacity)
            cases += 1
    assert cases > 60_000


def test_one_job_alone_starts_unless_it_never_fits() -> None:
    for caps in ALL_CAPACITIES:
        capacity = {f"n{i}": cores for i, cores in enumerate(caps)}
        everything = {node: tuple(range(cores)) for node, cores in capacity.items()}
        for request in ONE_JOB:
            reason = never_fits(request, capacity)
            result = check_plan([request], everything, capacity)
            assert bool(result.placements) == (reason is None), (request, capacity, reason)
            if reason is not None:
                big_enough = sum(cores >= request.cores.min for cores in capacity.values())
                if request.nodes.min == 1:
                    named = {request.cores.min, max(capacity.values())}
                else:
                    named = {request.cores.min, request.nodes.min, big_enough, len(capacity)}
                assert {str(n) for n in named} <= set(re.findall(r"\d+", reason)), reason


QUEUE_SHAPES: list[tuple[int | tuple[int, int], int | tuple[int, int]]] = [
    (1, 1), (2, 1), ((1, 3), 1), (1, 2), ((2, 4), (1, 2)),
]
QUEUE_ALPHABET = [
    req("", cores, nodes, overtaken)
    for cores, nodes in QUEUE_SHAPES
    for overtaken in (0, MAX_OVERTAKEN)
]
QUEUE_CAPACITIES = [(2,), (4,), (1, 3), (2, 2), (4, 2), (3, 1, 2), (2, 2, 2)]


def queues() -> Iterator[list[Request]]:
    for length in range(4):
        for jobs in product(QUEUE_ALPHABET, repeat=length):
            yield [replace(job, job_id=f"j{i}") for i, job in enumerate(jobs)]
    short = [job for job in QUEUE_ALPHABET if job.cores.max <= 2 and job.nodes.max == 1]
    for jobs in product(short, repeat=4):
        yield [replace(job, job_id=f"j{i}") for i, job in enumerate(jobs)]


def test_every_small_queue_on_small_pools() -> None:
    every_pool = list(pools(QUEUE_CAPACITIES, every_subset=False))
    cases = 0
    for queue in queues():
        for capacity, free in every_pool[:: 1 if len(queue) < 3 else 2]:
            check_plan(queue, free, capacity)
            cases += 1
    assert cases > 60_000


# --- rounds: nobody waits forever ---------------------------------------------------------------------


@dataclass
class Cluster:
    """Applies plans as the manager does: overtaken counts rise, placed jobs run `duration` rounds."""

    capacity: dict[str, int]
    max_overtaken: int
    queue: list[Request] = field(default_factory=list)
    running: list[tuple[int, str, Placement]] = field(default_factory=list)  # (end round, job, placement)
    started: dict[str, int] = field(default_factory=dict)
    first_hold: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.free = {node: set(range(cores)) for node, cores in self.capacity.items()}

    def round(self, now: int, arrivals: Sequence[Request], duration: Mapping[str, int]) -> None:
        for end, job_id, placement in [job for job in self.running if job[0] <= now]:
            self.running.remove((end, job_id, placement))
            for node, cores in placement.cores:
                self.free[node] |= set(cores)
        self.queue += arrivals
        result = plan(self.queue, {n: sorted(c) for n, c in self.free.items()}, self.capacity, self.max_overtaken)
        self.queue = [replace(r, overtaken=r.overtaken + (r.job_id in result.overtaken)) for r in self.queue]
        for job_id in result.reservations:
            self.first_hold.setdefault(job_id, now)
        for job_id, placement in result.placements:
            self.queue = [r for r in self.queue if r.job_id != job_id]
            self.running.append((now + duration[job_id], job_id, placement))
            self.started[job_id] = now
            for node, cores in placement.cores:
                self.free[node] -= set(cores)


@pytest.mark.parametrize(
    ("capacity", "big", "small_cores"),
    [
        pytest.param({"a": 4}, req("big", 4), 1, id="one-node"),
        pytest.param({"a": 2, "b": 2}, req("big", 2, 2), 1, id="two-nodes"),
        pytest.param({"a": 4, "b": 4, "c": 4}, req("big", 4, 2), 2, id="two-of-three-nodes"),
        pytest.param({"a": 2, "b": 4, "c": 3}, req("big", (3, 4), (1, 2)), 1, id="ranges"),
    ],
)
@pytest.mark.parametrize("max_overtaken", [1, 5])
def test_big_job_starts_while_small_jobs_keep_coming(
    capacity: dict[str, int], big: Request, small_cores: int, max_overtaken: int
) -> None:
    # The cluster starts full of small jobs that end one per round; one small job arrives every round
    # and runs as long as the cluster has small-job slots, so without a reservation the big job,
    # queued behind the first wave, would never see enough free cores at once.
    slots = sum(cores // small_cores for cores in capacity.values())
    first = [req(f"s{i:03d}", small_cores) for i in range(slots)]
    duration = {job.job_id: i + 1 for i, job in enumerate(first)} | {"big": 1}
    cluster = Cluster(capacity, max_overtaken)
    cluster.round(0, [*first, big], duration)
    rounds = 40 * slots + max_overtaken
    for now in range(1, rounds):
        arriving = req(f"s{slots + now:03d}", small_cores)
        duration[arriving.job_id] = slots
        cluster.round(now, [arriving], duration)
    assert "big" in cluster.started, f"big job still waiting after {rounds} rounds: {cluster.queue[:1]}"
    # Overtaken once per round until the limit, then it holds nodes; they drain within one small job's run.
    assert cluster.first_hold["big"] == max_overtaken + 1
    assert cluster.started["big"] <= cluster.first_hold["big"] + slots
    assert len(cluster.queue) <= slots, "small jobs kept starting after the big one"


def test_without_reservations_the_same_stream_starves_the_big_job() -> None:
    # The control for the test above: the reservation, not the workload, is what lets the big job in.
    capacity = {"a": 4}
    first = [req(f"s{i}") for i in range(4)]
    duration = {job.job_id: i + 1 for i, job in enumerate(first)}
    cluster = Cluster(capacity, max_overtaken=10**9)
    cluster.round(0, [*first, req("big", 4)], duration)
    for now in range(1, 200):
        duration[f"s{now + 4}"] = 4
        cluster.round(now, [req(f"s{now + 4}")], duration)
    assert "big" not in cluster.started
    assert cluster.queue[0].job_id == "big" and cluster.queue[0].overtaken == 199


# --- whole nodes ---------------------------------------------------------------------------------------


def whole(job_id: str, nodes: int = 1, most: int | None = None) -> Request:
    return Request(job_id, Range(1, 1), Range(nodes, most or nodes), exclusive=True)


@pytest.mark.parametrize(
    ("request_", "free", "capacity", "expected"),
    [
        pytest.param(whole("w"), {"a": [0, 1], "b": [1]}, {"a": 2, "b": 2}, (("a", (0, 1)),), id="only-idle-nodes"),
        pytest.param(whole("w"), {"a": [1], "b": [0]}, {"a": 2, "b": 2}, None, id="no-idle-node"),
        pytest.param(whole("w", 2), {"a": [0, 1], "b": [0, 1, 2, 3]}, {"a": 2, "b": 4},
                     (("a", (0, 1)), ("b", (0, 1, 2, 3))), id="every-core-of-uneven-nodes"),
        pytest.param(whole("w", 1, 3), {"a": [0], "b": [0], "c": []}, {"a": 1, "b": 1, "c": 1},
                     (("a", (0,)), ("b", (0,))), id="range-takes-the-idle-ones"),
    ],
)
def test_exclusive_jobs_take_whole_idle_nodes(request_, free, capacity, expected):
    result = plan([request_], free, capacity)
    assert (result.placements[0][1].cores if result.placements else None) == expected


def test_a_failed_whole_node_job_does_not_block_one_core_jobs() -> None:
    # A whole-node job that cannot start must not make the scheduler think one-core jobs cannot either.
    result = plan([whole("w"), Request("small", Range(1, 1), Range(1, 1))], {"a": [1]}, {"a": 2})
    assert [job for job, _ in result.placements] == ["small"]


def test_whole_node_never_fits_and_reservation() -> None:
    assert never_fits(whole("w", 3), {"a": 4, "b": 4}) == "needs 3 whole nodes; this allocation has 2"
    assert never_fits(whole("w", 2), {"a": 4, "b": 8}) is None
    starving = Request("w", Range(1, 1), Range(1, 1), overtaken=5, exclusive=True)
    result = plan([starving, Request("s", Range(1, 1), Range(1, 1))], {"a": [1], "b": [0, 1]}, {"a": 2, "b": 2},
                  max_overtaken=5)
    placed = dict(result.placements)
    assert placed["w"].cores == (("b", (0, 1)),) and placed["s"].cores == (("a", (1,)),)


# --- GPUs ------------------------------------------------------------------------------------------------


def gpu_job(job_id: str, gpus: int, cores: int = 1, nodes: int = 1) -> Request:
    return Request(job_id, Range(cores, cores), Range(nodes, nodes), gpus=gpus)


def test_gpus_are_handed_out_per_node_and_never_twice() -> None:
    free, capacity = {"a": [0, 1, 2, 3], "b": [0, 1, 2, 3]}, {"a": 4, "b": 4}
    gpus, gpu_capacity = {"a": ["0", "1"], "b": []}, {"a": 2, "b": 0}
    result = plan([gpu_job("x", 1), gpu_job("y", 1), gpu_job("z", 1), gpu_job("cpu", 1 - 1)], free, capacity,
                  free_gpus=gpus, gpu_capacity=gpu_capacity)
    placed = dict(result.placements)
    assert placed["x"].gpus == (("a", ("0",)),) and placed["y"].gpus == (("a", ("1",)),)
    assert "z" not in placed and placed["cpu"].gpus == ()  # z waits for a GPU although cores are free


def test_a_gpu_job_that_can_never_fit_says_why() -> None:
    reason = never_fits(gpu_job("x", 3), {"a": 4, "b": 4}, {"a": 2, "b": 0})
    assert reason == "needs 3 GPUs on each of 1 node(s); 0 node(s) here have that many (most GPUs on a node: 2)"
    assert never_fits(gpu_job("x", 2, nodes=1), {"a": 4}, {"a": 2}) is None
    assert never_fits(gpu_job("x", 1), {"a": 4}, None) is not None  # no GPUs at all


def test_whole_nodes_take_every_gpu_too() -> None:
    whole_node = Request("w", Range(1, 1), Range(1, 1), exclusive=True)
    result = plan([whole_node], {"a": [0, 1]}, {"a": 2}, free_gpus={"a": ["0", "1"]}, gpu_capacity={"a": 2})
    assert result.placements[0][1].gpus == (("a", ("0", "1")),)
    busy_gpu = plan([whole_node], {"a": [0, 1]}, {"a": 2}, free_gpus={"a": ["1"]}, gpu_capacity={"a": 2})
    assert busy_gpu.placements == ()
