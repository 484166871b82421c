"""Nodes, cores and GPUs a manager may hand out, and where they come from
(local machine, --nodes option, Slurm allocation environment).

Pure: every function takes strings and Mappings and returns values. Nothing here reads
os.environ, the clock or a file; cli.py gathers those and passes them in. The one corner:
parse_scontrol_end_time(tz=None) lets the C library apply the machine's zone, as scontrol did.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, tzinfo
from itertools import product
from math import prod

# Letters, digits, '_', '.', '-', starting with a letter or digit. Names end up in srun
# argv (--nodelist) and in status files, so a leading '-' or a '/' must never get through.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# Slurm 22.05 refuses a single range of more than 64Ki hosts ("Too many hosts in range").
_MAX_RANGE = 65536
# No machine has a million nodes; this stops a typo like n[1-9999][1-9999] eating memory.
_MAX_HOSTS = 1 << 20
_RANGE = re.compile(r"([0-9]+)(?:-([0-9]+))?")
_CPU_GROUP = re.compile(r"([0-9]+)(?:\(x([0-9]+)\))?")
_END_TIME = re.compile(r"(?<!\S)EndTime=(\S+)")


class ResourceError(ValueError):
    """A resource description we cannot use; the message names the value and what is expected."""


@dataclass(frozen=True)
class Node:
    name: str
    cores: int
    cpu_ids: tuple[int, ...] | None = None
    gpus: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_name(self.name)
        if self.cores < 1:
            raise ResourceError(f"node {self.name!r} has cores={self.cores}: expected at least 1")
        if self.cpu_ids is not None and len(self.cpu_ids) != self.cores:
            raise ResourceError(f"node {self.name!r}: cpu_ids={self.cpu_ids} is not one per core")


@dataclass(frozen=True)
class Allocation:
    nodes: tuple[Node, ...]
    slurm_job_id: str | None = None
    end_time: float | None = None

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ResourceError("allocation has no nodes: expected at least one")
        seen: set[str] = set()
        for node in self.nodes:
            if node.name in seen:
                raise ResourceError(f"node name {node.name!r} appears twice: list each node once")
            seen.add(node.name)

    @property
    def total_cores(self) -> int:
        return sum(node.cores for node in self.nodes)


def _check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ResourceError(f"invalid node name {name!r}: expected letters, digits, '_.-'")


def _whole(text: str, what: str, minimum: int) -> int:
    """Parse a plain decimal count of at least `minimum`, naming `what` in the error."""
    if not re.fullmatch(r"[0-9]+", text.strip()) or int(text) < minimum:
        raise ResourceError(f"{what}={text!r}: expected a whole number of at least {minimum}")
    return int(text)


# --- local mode ------------------------------------------------------------------------


def local_allocation(cores: int | None, affinity: set[int] | frozenset[int], pin: bool = True) -> Allocation:
    """One node named "local" from the CPUs this process may run on (sched_getaffinity).

    Without `pin` the cores are counted but not tied to CPUs: jobs then run wherever the kernel puts
    them, which is better on a machine whose CPUs are shared with other work (a laptop, a login node).
    """
    cpus = tuple(sorted(affinity))
    if cores is None:
        if not cpus:
            raise ResourceError("CPU affinity set is empty: expected at least one usable CPU")
        return Allocation((Node("local", len(cpus), cpus if pin else None),))
    if cores < 1:
        raise ResourceError(f"cores={cores}: expected a whole number of at least 1")
    if cores <= len(cpus):
        return Allocation((Node("local", cores, cpus[:cores] if pin else None),))
    # More cores than CPUs: the user asked to oversubscribe, so the cores are slots, not CPUs.
    return Allocation((Node("local", cores, None),))


def parse_nodes_option(text: str) -> Allocation:
    """`--nodes n1:4,n2:4` (or n1:4:2 with 2 GPUs): virtual nodes for testing placement on one machine."""
    if not text.strip():
        raise ResourceError("--nodes is empty: expected NAME:CORES[:GPUS][,...], e.g. n1:4,n2:4")
    return Allocation(tuple(_node_spec(part.strip()) for part in text.split(",")))


def _node_spec(spec: str) -> Node:
    name, colon, counts = spec.partition(":")
    if not colon:
        raise ResourceError(f"--nodes entry {spec!r} has no ':': expected NAME:CORES[:GPUS], e.g. n1:4 or n1:4:2")
    _check_name(name)
    cores, _, gpus = counts.partition(":")
    gpu_count = _whole(gpus, f"--nodes entry {name!r} GPUs", 0) if gpus else 0
    return Node(name, _whole(cores, f"--nodes entry {name!r} cores", 1), gpus=tuple(map(str, range(gpu_count))))


# --- Slurm hostlists and CPU counts ----------------------------------------------------


def expand_hostlist(text: str) -> list[str]:
    """Expand a Slurm hostlist expression the way `scontrol show hostnames` does."""
    items = _split_top_level(text)
    if not items:
        raise ResourceError(f"hostlist {text!r} is empty: expected names like n1 or n[1-4]")
    choices = [_item_choices(item, text) for item in items]
    if sum(prod(len(c) for c in parts) for parts in choices) > _MAX_HOSTS:
        raise ResourceError(f"hostlist {text!r} expands to more than {_MAX_HOSTS} names")
    names = ["".join(combo) for parts in choices for combo in product(*parts)]
    for name in names:
        _check_name(name)
    return names


def _split_top_level(text: str) -> list[str]:
    """Split on ',' and whitespace outside brackets; empty items are skipped, as Slurm does."""
    items, current, depth = [], "", 0
    for char in text:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            raise ResourceError(f"hostlist {text!r} has unbalanced or nested brackets")
        if depth == 0 and (char == "," or char.isspace()):
            items.append(current)
            current = ""
        else:
            current += char
    if depth:
        raise ResourceError(f"hostlist {text!r} has an unclosed '['")
    return [item for item in [*items, current] if item]


def _item_choices(item: str, text: str) -> list[list[str]]:
    """'rack[1-2]-n[01-02]' -> [['rack'], ['1','2'], ['-n'], ['01','02']]; product() gives
    Slurm's order (the first bracket varies slowest)."""
    pieces = re.split(r"\[([^\]]*)\]", item)  # literal, group, literal, group, ..., literal
    if len(pieces) > 1 and pieces[-1]:
        # Slurm 22.05 rejects text after the last ']' ("Invalid hostlist: n[1-2]-ib").
        raise ResourceError(f"hostlist {text!r}: text {pieces[-1]!r} after ']' is not allowed")
    return [[piece] if i % 2 == 0 else _group(piece, text) for i, piece in enumerate(pieces)]


def _group(body: str, text: str) -> list[str]:
    return [name for part in body.split(",") for name in _range(part, text)]


def _range(part: str, text: str) -> list[str]:
    match = _RANGE.fullmatch(part)
    if match is None:
        raise ResourceError(f"hostlist {text!r}: bad range {part!r}, expected N or N-M, e.g. 1-4")
    low, high = int(match[1]), int(match[2] or match[1])
    if high < low or high - low >= _MAX_RANGE:
        raise ResourceError(f"hostlist {text!r}: range {part!r} must rise, {_MAX_RANGE} hosts max")
    width = len(match[1])  # "001-010" keeps 3 digits; "1-010" gives n1..n10, as in Slurm
    return [f"{number:0{width}d}" for number in range(low, high + 1)]


def parse_cpus_per_node(text: str) -> list[int]:
    """SLURM_JOB_CPUS_PER_NODE ("40,128(x3)") -> one CPU count per node, in nodelist order."""
    counts: list[int] = []
    for part in text.split(","):
        match = _CPU_GROUP.fullmatch(part.strip())
        repeat = int(match[2] or 1) if match else 0
        if match is None or int(match[1]) < 1 or not 0 < repeat <= _MAX_HOSTS - len(counts):
            raise ResourceError(
                f"CPU counts {text!r}: bad part {part!r}, expected forms like 4, 4(x3), 40,128(x3)"
            )
        counts.extend([int(match[1])] * repeat)
    return counts


# --- Slurm allocation ------------------------------------------------------------------


def allocation_from_slurm_env(
    env: Mapping[str, str], end_time: float | None = None
) -> Allocation | None:
    """The allocation this environment lives in, or None outside Slurm."""
    list_key = "SLURM_JOB_NODELIST" if env.get("SLURM_JOB_NODELIST") else "SLURM_NODELIST"
    job_id, nodelist = env.get("SLURM_JOB_ID"), env.get(list_key)
    if not job_id or not nodelist:
        return None
    names = expand_hostlist(nodelist)
    if not env.get("SLURM_JOB_CPUS_PER_NODE"):
        raise ResourceError("SLURM_JOB_ID is set but SLURM_JOB_CPUS_PER_NODE is not: expected both")
    cores = parse_cpus_per_node(env["SLURM_JOB_CPUS_PER_NODE"])
    if len(cores) != len(names):
        raise ResourceError(
            f"SLURM_JOB_CPUS_PER_NODE={env['SLURM_JOB_CPUS_PER_NODE']!r} gives {len(cores)} "
            f"counts but {list_key}={nodelist!r} names {len(names)} nodes: expected one per node"
        )
    gpus = _gpu_counts(env, names)
    # cpu_ids stay None: srun places each step on CPUs of its choosing, we only count them.
    nodes = tuple(
        Node(name, count, None, _gpu_ids(env, name, gpus.get(name, 0)))
        for name, count in zip(names, cores, strict=True)
    )
    return Allocation(nodes, job_id, end_time)


def _gpu_counts(env: Mapping[str, str], names: list[str]) -> dict[str, int]:
    """GPUs per node. Slurm 22.05 exports no GPU list covering every node (sbatch(1) and
    salloc(1), OUTPUT ENVIRONMENT VARIABLES). gres_gpu.so fills SLURM_JOB_GPUS,
    SLURM_GPUS_ON_NODE and CUDA_VISIBLE_DEVICES from the node the process runs on (the batch
    host under sbatch); salloc runs its command on the submit host, where none exist. So:
    - SLURM_GPUS_PER_NODE, exported by salloc and sbatch for --gpus-per-node, the "GPUs
      required for the job on each node": every node has that many;
    - SLURM_GPUS_ON_NODE, "Number of GPUs allocated to the batch step", is the node-local
      truth for SLURMD_NODENAME and wins there.
    Other nodes get 0, so we never hand out a GPU Slurm did not give us: --gres=gpu:N alone
    exports no count the submit host can see, and SLURM_GPUS (--gpus) is a job total whose
    split across nodes is Slurm's choice."""
    counts: dict[str, int] = {}
    if env.get("SLURM_GPUS_PER_NODE"):
        counts = dict.fromkeys(names, _gpus_per_node(env["SLURM_GPUS_PER_NODE"]))
    here, on_node = env.get("SLURMD_NODENAME"), env.get("SLURM_GPUS_ON_NODE")
    if here in names and on_node:
        counts[here] = _whole(on_node, "SLURM_GPUS_ON_NODE", 0)
    return counts


def _gpus_per_node(text: str) -> int:
    """'2', 'gpu:2', 'a100:2', 'gpu:a100:2', 'volta:3,kepler:1' (summed: 4)."""
    try:
        return sum(_whole(entry.rsplit(":", 1)[-1], "count", 0) for entry in text.split(","))
    except ResourceError:
        raise ResourceError(
            f"SLURM_GPUS_PER_NODE={text!r}: expected [type:]count[,...], e.g. 2 or a100:2"
        ) from None


def _gpu_ids(env: Mapping[str, str], name: str, count: int) -> tuple[str, ...]:
    """CUDA_VISIBLE_DEVICES names the GPUs of the node this env was read on, and only that
    one. Elsewhere, or when it is unset, Slurm's "NoDevFiles" placeholder (gres.conf without
    File=) or of another length (left over from a login shell), the ids are 0..n-1: what a
    step sees when cgroup.conf has ConstrainDevices=yes (gres_common.c, local index)."""
    visible = env.get("CUDA_VISIBLE_DEVICES", "")
    ids = tuple(part.strip() for part in visible.split(",") if part.strip())
    if name == env.get("SLURMD_NODENAME") and len(ids) == count and visible != "NoDevFiles":
        return ids
    return tuple(str(index) for index in range(count))


def parse_scontrol_end_time(
    scontrol_show_job_output: str, tz: tzinfo | None = None
) -> float | None:
    """EndTime= from `scontrol show job <id>` as epoch seconds; None when Slurm does not know
    it (TimeLimit=UNLIMITED prints EndTime=Unknown). scontrol prints the machine's local
    time; tz=None means exactly that, tests pass a fixed zone."""
    match = _END_TIME.search(scontrol_show_job_output)
    if match is None:
        text = scontrol_show_job_output[:120]
        raise ResourceError(f"no EndTime= in {text!r}: expected `scontrol show job <id>` output")
    if match[1] in ("Unknown", "None", "N/A"):
        return None
    try:
        when = datetime.strptime(match[1], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        raise ResourceError(f"EndTime={match[1]!r}: expected YYYY-MM-DDTHH:MM:SS") from None
    return when.replace(tzinfo=tz).timestamp()


def mem_per_cpu_mb(env: Mapping[str, str], allocation: Allocation) -> int | None:
    """Memory each step should ask per CPU, from the allocation's own request, or None if it made none.

    Without an explicit amount a Slurm step may be given all of a node's memory, and the next step
    on that node then waits for memory instead of cores (radical.pilot#2620, optimas#266).
    """
    per_cpu = env.get("SLURM_MEM_PER_CPU", "")
    if per_cpu.isdigit() and int(per_cpu) > 0:
        return int(per_cpu)
    per_node = env.get("SLURM_MEM_PER_NODE", "")
    if per_node.isdigit() and int(per_node) > 0:
        return max(1, int(per_node) // max(node.cores for node in allocation.nodes))
    return None
