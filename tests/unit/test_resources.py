"""fsqueue.resources with real strings: the rows of shared/slurm/MEASURED.md (Slurm 22.05 on
the local cluster) and node-list forms seen at large sites."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest

from fsqueue.resources import (
    Allocation,
    Node,
    ResourceError,
    allocation_from_slurm_env,
    expand_hostlist,
    local_allocation,
    parse_cpus_per_node,
    parse_nodes_option,
    parse_scontrol_end_time,
)


def env_block(text: str) -> dict[str, str]:
    """MEASURED.md prints environments as whitespace-separated KEY=VALUE pairs."""
    return dict(pair.split("=", 1) for pair in text.split())


# `salloc -N4 -n16` on the local cluster, verbatim from MEASURED.md (runs on the submit host).
SALLOC_N4_N16 = env_block("""
SLURM_CLUSTER_NAME=fsq  SLURM_CONF=/tmp/fsq-slurm/etc/slurm.conf  SLURM_JOB_ID=1  SLURM_JOBID=1
SLURM_JOB_NAME=interactive  SLURM_JOB_NODELIST=n[1-4]  SLURM_NODELIST=n[1-4]
SLURM_JOB_NUM_NODES=4  SLURM_NNODES=4  SLURM_NTASKS=16  SLURM_NPROCS=16
SLURM_JOB_CPUS_PER_NODE=4(x4)  SLURM_TASKS_PER_NODE=4(x4)  SLURM_JOB_PARTITION=debug
SLURM_NODE_ALIASES=(null)  SLURM_SUBMIT_DIR=/tmp  SLURM_SUBMIT_HOST=vm
""")

# What an `sbatch -N4 -n16` batch script adds: it runs on n1.
SBATCH_EXTRA = env_block("""
SLURMD_NODENAME=n1  SLURM_CPUS_ON_NODE=4  SLURM_NODEID=0  SLURM_PROCID=0  SLURM_LOCALID=0
SLURM_GTIDS=0  SLURM_JOB_UID=0  SLURM_JOB_USER=root  SLURM_JOB_GID=0  SLURM_TASK_PID=950
SLURM_TOPOLOGY_ADDR=n1  SLURM_TOPOLOGY_ADDR_PATTERN=node  SLURM_PRIO_PROCESS=0
SLURM_WORKING_CLUSTER=fsq:127.0.0.1:16817:9728:109
""")

# Inside `srun --exact -N1 -n1` in that allocation: the step sees one node, the job four.
STEP_ENV = env_block("""
SLURM_JOB_ID=1  SLURMD_NODENAME=n1  SLURM_STEP_ID=0  SLURM_STEPID=0  SLURM_STEP_NODELIST=n1
SLURM_STEP_NUM_NODES=1  SLURM_STEP_NUM_TASKS=1  SLURM_STEP_TASKS_PER_NODE=1  SLURM_NNODES=1
SLURM_NTASKS=1  SLURM_CPUS_ON_NODE=1  SLURM_JOB_NODELIST=n[1-4]  SLURM_JOB_CPUS_PER_NODE=4(x4)
SLURM_JOB_CPUS_PER_NODE_PACK_GROUP_0=4(x4)  SLURM_TASKS_PER_NODE=1  SLURM_DISTRIBUTION=cyclic
""")

# `scontrol show job` on the local cluster for `salloc -N1 -n1 -t 5`, trimmed.
SCONTROL_T5 = """JobId=2 JobName=interactive
   UserId=root(0) GroupId=root(0) MCS_label=N/A
   JobState=RUNNING Reason=None Dependency=(null)
   RunTime=00:00:00 TimeLimit=00:05:00 TimeMin=N/A
   SubmitTime=2026-11-26T14:20:48 EligibleTime=2026-11-26T14:20:48
   AccrueTime=Unknown
   StartTime=2026-11-26T14:20:48 EndTime=2026-11-26T14:25:48 Deadline=N/A
   SuspendTime=None SecsPreSuspend=0 LastSchedEval=2026-11-26T14:20:48 Scheduler=Main
   NodeList=n1
"""
# The same for a job in a partition with no time limit (the local cluster's `debug`).
SCONTROL_UNLIMITED = SCONTROL_T5.replace("TimeLimit=00:05:00", "TimeLimit=UNLIMITED").replace(
    "EndTime=2026-11-26T14:25:48", "EndTime=Unknown"
)


# --- expand_hostlist -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n1", ["n1"]),
        ("n[1-4]", ["n1", "n2", "n3", "n4"]),  # salloc -N4 here
        ("n[2,4]", ["n2", "n4"]),  # salloc -w 'n[2,4]' here
        ("n[1-2]", ["n1", "n2"]),
        ("a[1-2],b3", ["a1", "a2", "b3"]),
        ("n[001-010,015]", [f"n{i:03d}" for i in range(1, 11)] + ["n015"]),
        ("nid[001234-001240,001300]", [f"nid{i:06d}" for i in range(1234, 1241)] + ["nid001300"]),
        ("cn[0001-0004]", ["cn0001", "cn0002", "cn0003", "cn0004"]),
        ("gpu-a[01-02],gpu-b07", ["gpu-a01", "gpu-a02", "gpu-b07"]),
        ("rack[1-2]-n[01-02]", ["rack1-n01", "rack1-n02", "rack2-n01", "rack2-n02"]),
        ("n[1-2][3-4]", ["n13", "n14", "n23", "n24"]),
        ("n[9-11]", ["n9", "n10", "n11"]),
        ("n[1-010]", [f"n{i}" for i in range(1, 11)]),  # width comes from the low end
        ("n[0007-10]", ["n0007", "n0008", "n0009", "n0010"]),
        ("login1.cluster.example.org", ["login1.cluster.example.org"]),
        ("node-01,node-02", ["node-01", "node-02"]),
        ("n_[1-2]", ["n_1", "n_2"]),
        ("[1-3]", ["1", "2", "3"]),
        ("n1,n1", ["n1", "n1"]),  # scontrol keeps duplicates too
        ("n[1-3],", ["n1", "n2", "n3"]),  # Slurm skips empty items
        ("n1 n2", ["n1", "n2"]),
        ("n[1-3,2]", ["n1", "n2", "n3", "n2"]),
    ],
)
def test_expand_hostlist(text: str, expected: list[str]) -> None:
    assert expand_hostlist(text) == expected


def test_expand_hostlist_keeps_the_largest_range_slurm_allows() -> None:
    assert len(expand_hostlist("n[1-65536]")) == 65536


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        (" , ", "empty"),
        ("n[1-2", "unclosed"),
        ("n1-2]", "unbalanced"),
        ("n[[1-2]]", "nested"),
        ("n[5-3]", "'5-3' must rise"),
        ("n[010-1]", "must rise"),
        ("n[a-b]", "bad range 'a-b'"),
        ("n[]", "bad range ''"),
        ("n[1,,2]", "bad range ''"),
        ("n[-1]", "bad range '-1'"),
        ("n[1-]", "bad range '1-'"),  # scontrol reads this as n1; we refuse to guess
        ("n[1-2-3]", "bad range"),
        ("n[ 1-2]", "bad range"),
        ("n[1-2]-ib", "text '-ib' after ']'"),  # Slurm 22.05: Invalid hostlist
        ("x[00-02]y[8-9]z", "text 'z' after ']'"),
        ("n[1-65537]", "65536"),
        ("n[1-9999][1-9999]", "more than"),
        ("-n1", "invalid node name '-n1'"),
        ("n/1", "invalid node name 'n/1'"),
        ("n@1", "invalid node name"),
    ],
)
def test_expand_hostlist_rejects(text: str, message: str) -> None:
    with pytest.raises(ResourceError, match=message) as caught:
        expand_hostlist(text)
    assert repr(text) in str(caught.value)


# --- parse_cpus_per_node ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("4(x4)", [4, 4, 4, 4]),  # salloc -N4 -n16 here
        ("4,2", [4, 2]),  # salloc -n6 here
        ("3,1(x2)", [3, 1, 1]),  # salloc -N3 -n5 here
        ("3(x2)", [3, 3]),  # salloc -N2 --ntasks-per-node=3 here
        ("3,1", [3, 1]),  # salloc -w 'n[2,4]' -n4 here
        ("1", [1]),  # salloc -N1 -n1 here
        ("40,128(x3)", [40, 128, 128, 128]),  # sbatch(1) example form
        ("128(x2),64", [128, 128, 64]),
        (" 4 , 2 ", [4, 2]),
    ],
)
def test_parse_cpus_per_node(text: str, expected: list[int]) -> None:
    assert parse_cpus_per_node(text) == expected


def test_parse_cpus_per_node_big_site() -> None:
    assert parse_cpus_per_node("36(x1024)") == [36] * 1024


@pytest.mark.parametrize(
    "text", ["", "0", "4(x0)", "4x4", "4(4)", "-1", "four", "4,,2", "4(x2", "1(x2000000)"]
)
def test_parse_cpus_per_node_rejects(text: str) -> None:
    with pytest.raises(ResourceError, match=r"expected forms like 4, 4\(x3\)") as caught:
        parse_cpus_per_node(text)
    assert repr(text) in str(caught.value)


# --- local_allocation ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "affinity", "want_cores", "want_ids"),
    [
        (None, {0, 1, 2, 3}, 4, (0, 1, 2, 3)),
        (None, frozenset({9, 3, 5}), 3, (3, 5, 9)),  # taskset -c 3,5,9: sorted, pinned
        (2, {0, 1, 2, 3}, 2, (0, 1)),
        (2, {7, 3, 5}, 2, (3, 5)),
        (4, {0, 1, 2, 3}, 4, (0, 1, 2, 3)),
        (8, {0, 1}, 8, None),  # oversubscribed: virtual cores, no pinning
        (1, set(), 1, None),
    ],
)
def test_local_allocation(
    cores: int | None, affinity: set[int], want_cores: int, want_ids: tuple[int, ...] | None
) -> None:
    allocation = local_allocation(cores, affinity)
    assert allocation == Allocation((Node("local", want_cores, want_ids),))
    assert allocation.total_cores == want_cores
    assert allocation.slurm_job_id is None
    assert allocation.end_time is None


@pytest.mark.parametrize(("cores", "affinity", "want_cores"), [(None, {0, 1, 2, 3}, 4), (2, {7, 3, 5}, 2)])
def test_local_allocation_without_pinning_counts_cores_but_names_no_cpu(
    cores: int | None, affinity: set[int], want_cores: int
) -> None:
    assert local_allocation(cores, affinity).nodes[0].cpu_ids is not None  # pinned by default
    assert local_allocation(cores, affinity, pin=False) == Allocation((Node("local", want_cores, None),))


@pytest.mark.parametrize(
    ("cores", "affinity", "message"),
    [
        (0, {0, 1}, "cores=0: expected a whole number of at least 1"),
        (-3, {0, 1}, "cores=-3"),
        (None, set(), "affinity set is empty"),
    ],
)
def test_local_allocation_rejects(cores: int | None, affinity: set[int], message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        local_allocation(cores, affinity)


# --- parse_nodes_option ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("n1:4,n2:4", (Node("n1", 4), Node("n2", 4))),
        ("local:1", (Node("local", 1),)),
        (" n1:2 , n2:3 ", (Node("n1", 2), Node("n2", 3))),
        ("gpu-a01:8,gpu-b07:64", (Node("gpu-a01", 8), Node("gpu-b07", 64))),
    ],
)
def test_parse_nodes_option(text: str, expected: tuple[Node, ...]) -> None:
    allocation = parse_nodes_option(text)
    assert allocation == Allocation(expected)
    assert all(node.cpu_ids is None and node.gpus == () for node in allocation.nodes)
    assert allocation.total_cores == sum(node.cores for node in expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "--nodes is empty: expected NAME:CORES"),
        ("  ", "--nodes is empty"),
        ("n1", "entry 'n1' has no ':'"),
        ("n1:4,", "entry '' has no ':'"),
        ("n1:0", "'n1' cores='0': expected a whole number of at least 1"),
        ("n1:x", "'n1' cores='x'"),
        ("n1:-2", "'n1' cores='-2'"),
        ("n1:4.5", "'n1' cores='4.5'"),
        ("n1:4,n1:2", "node name 'n1' appears twice"),
        (":4", "invalid node name ''"),
        ("-n1:4", "invalid node name '-n1'"),
        ("n/1:4", "invalid node name 'n/1'"),
    ],
)
def test_parse_nodes_option_rejects(text: str, message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        parse_nodes_option(text)


# --- allocation_from_slurm_env ---------------------------------------------------------


def test_allocation_from_salloc_env() -> None:
    allocation = allocation_from_slurm_env(SALLOC_N4_N16, end_time=1234.5)
    nodes = tuple(Node(f"n{i}", 4) for i in range(1, 5))
    assert allocation == Allocation(nodes, slurm_job_id="1", end_time=1234.5)
    assert allocation.total_cores == 16


@pytest.mark.parametrize("env", [SALLOC_N4_N16 | SBATCH_EXTRA, STEP_ENV], ids=["sbatch", "step"])
def test_batch_script_and_step_see_the_whole_job(env: dict[str, str]) -> None:
    allocation = allocation_from_slurm_env(env)
    assert allocation is not None
    assert [(node.name, node.cores) for node in allocation.nodes] == [
        ("n1", 4),
        ("n2", 4),
        ("n3", 4),
        ("n4", 4),
    ]


@pytest.mark.parametrize(
    ("nodelist", "cpus", "expected"),
    [  # the salloc table of MEASURED.md
        ("n[1-2]", "4,2", [("n1", 4), ("n2", 2)]),
        ("n[1-3]", "3,1(x2)", [("n1", 3), ("n2", 1), ("n3", 1)]),
        ("n[1-2]", "3(x2)", [("n1", 3), ("n2", 3)]),
        ("n[2,4]", "3,1", [("n2", 3), ("n4", 1)]),
        ("n1", "1", [("n1", 1)]),
        ("nid[001234-001236]", "128(x3)", [(f"nid00123{i}", 128) for i in (4, 5, 6)]),
    ],
)
def test_allocation_from_measured_rows(
    nodelist: str, cpus: str, expected: list[tuple[str, int]]
) -> None:
    env = {"SLURM_JOB_ID": "7", "SLURM_JOB_NODELIST": nodelist, "SLURM_JOB_CPUS_PER_NODE": cpus}
    allocation = allocation_from_slurm_env(env)
    assert allocation is not None
    assert [(node.name, node.cores) for node in allocation.nodes] == expected
    assert all(node.cpu_ids is None for node in allocation.nodes)


def test_falls_back_to_slurm_nodelist() -> None:
    env = {"SLURM_JOB_ID": "3", "SLURM_NODELIST": "n[2,4]", "SLURM_JOB_CPUS_PER_NODE": "3,1"}
    allocation = allocation_from_slurm_env(env)
    assert allocation is not None
    assert [n.name for n in allocation.nodes] == ["n2", "n4"]


@pytest.mark.parametrize(
    "env",
    [
        {},
        {"PATH": "/usr/bin", "HOME": "/root"},
        {"SLURM_JOB_ID": "1"},
        {"SLURM_JOB_NODELIST": "n[1-4]", "SLURM_JOB_CPUS_PER_NODE": "4(x4)"},
        {"SLURM_JOB_ID": "", "SLURM_JOB_NODELIST": "n1", "SLURM_JOB_CPUS_PER_NODE": "1"},
    ],
)
def test_not_inside_slurm(env: dict[str, str]) -> None:
    assert allocation_from_slurm_env(env) is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"SLURM_JOB_CPUS_PER_NODE": "4(x3)"},
            r"SLURM_JOB_CPUS_PER_NODE='4\(x3\)' gives 3 counts but "
            r"SLURM_JOB_NODELIST='n\[1-4\]' names 4 nodes",
        ),
        ({"SLURM_JOB_CPUS_PER_NODE": ""}, "SLURM_JOB_CPUS_PER_NODE is not"),
        ({"SLURM_JOB_CPUS_PER_NODE": "4(4)"}, r"CPU counts '4\(4\)'"),
        ({"SLURM_JOB_NODELIST": "n[4-1]"}, r"hostlist 'n\[4-1\]'"),
    ],
)
def test_allocation_from_slurm_env_rejects(change: dict[str, str], message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        allocation_from_slurm_env(SALLOC_N4_N16 | change)


def gpus_by_node(env: dict[str, str]) -> dict[str, tuple[str, ...]]:
    allocation = allocation_from_slurm_env(env)
    assert allocation is not None
    return {node.name: node.gpus for node in allocation.nodes}


TWO = ("0", "1")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ({}, {"n1": (), "n2": (), "n3": (), "n4": ()}),
        # salloc/sbatch --gpus-per-node: the submit host sees only SLURM_GPUS_PER_NODE
        ({"SLURM_GPUS_PER_NODE": "2"}, dict.fromkeys(["n1", "n2", "n3", "n4"], TWO)),
        ({"SLURM_GPUS_PER_NODE": "gpu:2"}, dict.fromkeys(["n1", "n2", "n3", "n4"], TWO)),
        ({"SLURM_GPUS_PER_NODE": "a100:2"}, dict.fromkeys(["n1", "n2", "n3", "n4"], TWO)),
        ({"SLURM_GPUS_PER_NODE": "gpu:a100:2"}, dict.fromkeys(["n1", "n2", "n3", "n4"], TWO)),
        (
            {"SLURM_GPUS_PER_NODE": "volta:3,kepler:1"},
            dict.fromkeys(["n1", "n2", "n3", "n4"], ("0", "1", "2", "3")),
        ),
        # a CUDA_VISIBLE_DEVICES left over from the login shell says nothing about the nodes
        (
            {"SLURM_GPUS_PER_NODE": "1", "CUDA_VISIBLE_DEVICES": "5"},
            dict.fromkeys(["n1", "n2", "n3", "n4"], ("0",)),
        ),
        # batch script on n1 (no device cgroup): real ids there, per-node count elsewhere
        (
            {
                "SLURM_GPUS_PER_NODE": "2",
                "SLURMD_NODENAME": "n1",
                "SLURM_GPUS_ON_NODE": "2",
                "SLURM_JOB_GPUS": "2,3",
                "CUDA_VISIBLE_DEVICES": "2,3",
            },
            {"n1": ("2", "3"), "n2": TWO, "n3": TWO, "n4": TWO},
        ),
        # --gres=gpu:2 alone: only the batch node's count is known; others get none
        (
            {"SLURMD_NODENAME": "n1", "SLURM_GPUS_ON_NODE": "2", "CUDA_VISIBLE_DEVICES": "0,1"},
            {"n1": TWO, "n2": (), "n3": (), "n4": ()},
        ),
        # gres without device files: Slurm writes NoDevFiles; fall back to 0..n-1
        (
            {
                "SLURMD_NODENAME": "n1",
                "SLURM_GPUS_ON_NODE": "1",
                "CUDA_VISIBLE_DEVICES": "NoDevFiles",
            },
            {"n1": ("0",), "n2": (), "n3": (), "n4": ()},
        ),
        # SLURM_GPUS_ON_NODE is the node-local truth and wins over the request on that node
        (
            {"SLURM_GPUS_PER_NODE": "1", "SLURMD_NODENAME": "n2", "SLURM_GPUS_ON_NODE": "4"},
            {"n1": ("0",), "n2": ("0", "1", "2", "3"), "n3": ("0",), "n4": ("0",)},
        ),
        (
            {
                "SLURMD_NODENAME": "n1",
                "SLURM_GPUS_ON_NODE": "2",
                "CUDA_VISIBLE_DEVICES": "MIG-a,MIG-b",
            },
            {"n1": ("MIG-a", "MIG-b"), "n2": (), "n3": (), "n4": ()},
        ),
    ],
)
def test_gpus(extra: dict[str, str], expected: dict[str, tuple[str, ...]]) -> None:
    assert gpus_by_node(SALLOC_N4_N16 | extra) == expected


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"SLURM_GPUS_PER_NODE": "two"}, "SLURM_GPUS_PER_NODE='two': expected"),
        ({"SLURM_GPUS_PER_NODE": "gpu:"}, "SLURM_GPUS_PER_NODE='gpu:'"),
        ({"SLURM_GPUS_PER_NODE": "a100:-1"}, "SLURM_GPUS_PER_NODE='a100:-1'"),
        ({"SLURMD_NODENAME": "n1", "SLURM_GPUS_ON_NODE": "x"}, "SLURM_GPUS_ON_NODE='x'"),
    ],
)
def test_gpus_rejects(extra: dict[str, str], message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        allocation_from_slurm_env(SALLOC_N4_N16 | extra)


# --- Node and Allocation ---------------------------------------------------------------


def test_resource_error_is_a_value_error() -> None:
    assert issubclass(ResourceError, ValueError)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Node("n1", 0), "cores=0"),
        (lambda: Node("n1", 2, (0,)), r"cpu_ids=\(0,\) is not one per core"),
        (lambda: Node("bad name", 1), "invalid node name 'bad name'"),
        (lambda: Allocation(()), "no nodes"),
        (lambda: Allocation((Node("a", 1), Node("a", 2))), "'a' appears twice"),
    ],
)
def test_invariants(build: Callable[[], object], message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        build()


def test_nodes_are_frozen() -> None:
    node = Node("n1", 1)
    with pytest.raises(AttributeError):
        node.cores = 2  # type: ignore[misc]


# --- parse_scontrol_end_time -----------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "expected"),
    [
        (UTC, datetime(2026, 11, 26, 14, 25, 48, tzinfo=UTC).timestamp()),
        (timezone(timedelta(hours=1)), datetime(2026, 11, 26, 13, 25, 48, tzinfo=UTC).timestamp()),
        (timezone(timedelta(hours=-5)), datetime(2026, 11, 26, 19, 25, 48, tzinfo=UTC).timestamp()),
    ],
)
def test_parse_scontrol_end_time(tz: timezone, expected: float) -> None:
    assert parse_scontrol_end_time(SCONTROL_T5, tz) == expected


def test_parse_scontrol_end_time_defaults_to_local_time() -> None:
    assert parse_scontrol_end_time(SCONTROL_T5) == datetime(2026, 11, 26, 14, 25, 48).timestamp()


@pytest.mark.parametrize(
    "text", [SCONTROL_UNLIMITED, "StartTime=None EndTime=None", "EndTime=N/A Deadline=N/A"]
)
def test_parse_scontrol_end_time_unknown(text: str) -> None:
    assert parse_scontrol_end_time(text, UTC) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("slurm_load_jobs error: Invalid job id specified", "no EndTime= in 'slurm_load_jobs"),
        ("", "no EndTime="),
        ("SuspendEndTime=2026-11-26T14:25:48", "no EndTime="),
        ("EndTime=2026-13-45T99:00:00", r"EndTime='2026-13-45T99:00:00': expected YYYY"),
        ("EndTime=26/11/2026", "EndTime='26/11/2026'"),
    ],
)
def test_parse_scontrol_end_time_rejects(text: str, message: str) -> None:
    with pytest.raises(ResourceError, match=message):
        parse_scontrol_end_time(text, UTC)
