"""fsqueue.resources against the real Slurm 22.05 cluster from ../shared/slurm (up.sh first):
our hostlist expansion must agree with `scontrol show hostnames`, and the environment of a
real `salloc` must turn into the allocation Slurm granted."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from fsqueue.resources import (
    Allocation,
    ResourceError,
    allocation_from_slurm_env,
    expand_hostlist,
    parse_scontrol_end_time,
)

pytestmark = pytest.mark.slurm

DEFAULT_SLURM_CONF = "/tmp/fsq-slurm/etc/slurm.conf"
# salloc waits while another test holds the nodes; this bounds the wait, not the work.
TIMEOUT = 180


@pytest.fixture(scope="module")
def slurm_env() -> dict[str, str]:
    """The caller's environment minus any outer job's SLURM_* (so a run inside salloc still
    tests a fresh allocation), with SLURM_CONF pointing at the shared cluster."""
    if shutil.which("scontrol") is None:
        pytest.skip("scontrol is not on PATH: no Slurm client (bash ../shared/slurm/up.sh)")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SLURMD_"))}
    env["SLURM_CONF"] = os.environ.get("SLURM_CONF", DEFAULT_SLURM_CONF)
    return env


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        argv, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT, check=False
    )


def scontrol_hostnames(expression: str, env: dict[str, str]) -> list[str] | None:
    """Slurm's expansion, or None when Slurm calls the expression invalid."""
    proc = run(["scontrol", "show", "hostnames", expression], env)
    stderr = proc.stderr.decode()
    # scontrol 22.05 exits 0 for a bad expression and says "Invalid hostlist" on stderr.
    if "Invalid hostlist" in stderr:
        return None
    assert proc.returncode == 0, f"scontrol failed (rc {proc.returncode}): {stderr}"
    return proc.stdout.decode().split()


def salloc_env(args: list[str], env: dict[str, str]) -> dict[str, str]:
    """The environment a command started by `salloc ARGS` sees (env -0: values may hold '\\n')."""
    proc = run(["salloc", "-Q", "-J", "fsq-test-resources", *args, "env", "-0"], env)
    assert proc.returncode == 0, f"salloc {args} failed (rc {proc.returncode}): {proc.stderr!r}"
    pairs = (item.split("=", 1) for item in proc.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


@pytest.mark.parametrize(
    "expression",
    [
        "n1",
        "n[1-4]",
        "n[2,4]",
        "a[1-2],b3",
        "n[001-010,015]",
        "nid[001234-001240,001300]",
        "cn[0001-0004]",
        "gpu-a[01-02],gpu-b07",
        "rack[1-2]-n[01-02]",
        "n[1-2][3-4]",
        "n[9-11]",
        "n[1-010]",
        "n[0007-10]",
        "login1.cluster.example.org,node-01",
        "n_[1-2]",
        "[1-3]",
        "n1,n1",
        "n[1-3,2]",
        "n[1-3],",
        "n1 n2",
        "n[00001-20000]",
    ],
)
def test_expand_hostlist_agrees_with_scontrol(expression: str, slurm_env: dict[str, str]) -> None:
    assert expand_hostlist(expression) == scontrol_hostnames(expression, slurm_env)


@pytest.mark.parametrize(
    "expression",
    ["n[5-3]", "n[010-1]", "n[a-b]", "n[]", "n[1,,2]", "n[-1]", "n[1-2-3]", "n[1-2]-ib",
     "x[00-02]y[8-9]z", "n[[1-2]]", "n[1-2]]", "n[1-65537]"],
)  # fmt: skip
def test_expand_hostlist_rejects_what_scontrol_rejects(
    expression: str, slurm_env: dict[str, str]
) -> None:
    assert scontrol_hostnames(expression, slurm_env) is None
    with pytest.raises(ResourceError):
        expand_hostlist(expression)


def check_against_slurm(allocation: Allocation | None, env: dict[str, str], cores: int) -> None:
    """Names as scontrol expands the job's nodelist, one count per node, summing to the -n."""
    assert allocation is not None
    assert allocation.slurm_job_id == env["SLURM_JOB_ID"]
    names = scontrol_hostnames(env["SLURM_JOB_NODELIST"], env)
    assert [node.name for node in allocation.nodes] == names
    assert allocation.total_cores == cores
    assert all(node.cpu_ids is None and node.gpus == () for node in allocation.nodes)


def test_salloc_whole_cluster(slurm_env: dict[str, str]) -> None:
    env = salloc_env(["-N4", "-n16"], slurm_env)
    allocation = allocation_from_slurm_env(env)
    check_against_slurm(allocation, env, 16)
    assert allocation is not None
    assert [(node.name, node.cores) for node in allocation.nodes] == [
        ("n1", 4),
        ("n2", 4),
        ("n3", 4),
        ("n4", 4),
    ]


def test_salloc_uneven(slurm_env: dict[str, str]) -> None:
    env = salloc_env(["-N3", "-n5"], slurm_env)
    allocation = allocation_from_slurm_env(env)
    check_against_slurm(allocation, env, 5)
    assert allocation is not None
    assert len(allocation.nodes) == 3
    # On an idle cluster Slurm packs this as 3,1(x2) (MEASURED.md); busy nodes may shift it.
    if env["SLURM_JOB_CPUS_PER_NODE"] == "3,1(x2)":
        assert [node.cores for node in allocation.nodes] == [3, 1, 1]


def test_step_inside_allocation_sees_the_whole_job(slurm_env: dict[str, str]) -> None:
    """A manager started as a one-node step must still see every node of its job."""
    env = salloc_env(["-N2", "-n8", "srun", "-N1", "-n1"], slurm_env)
    assert env["SLURM_STEP_NUM_NODES"] == "1"
    check_against_slurm(allocation_from_slurm_env(env), env, 8)


def test_scontrol_end_time_of_real_jobs(slurm_env: dict[str, str]) -> None:
    show = ["bash", "-c", 'scontrol show job "$SLURM_JOB_ID"']
    started = time.time()
    limited = run(["salloc", "-Q", "-N1", "-n1", "-t", "5", *show], slurm_env)
    assert limited.returncode == 0, limited.stderr
    end = parse_scontrol_end_time(limited.stdout.decode())  # scontrol and we share a clock
    assert end is not None
    assert abs(end - (started + 300)) < 60
    unlimited = run(["salloc", "-Q", "-N1", "-n1", *show], slurm_env).stdout.decode()
    end = parse_scontrol_end_time(unlimited)
    assert (end is None) == ("TimeLimit=UNLIMITED" in unlimited)
