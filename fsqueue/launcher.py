"""Start, signal and reap job processes: one small interface, one backend per way of launching.

Both backends start a child process of the manager and reap it with wait4; they differ in what
that child is. LocalLauncher runs the job itself (local mode: a laptop, a login node, one node).
SrunLauncher runs `srun`, which makes the job one step of the Slurm allocation on exactly the nodes
the scheduler chose; srun's own messages go to a launch log so that a failure to launch is told
apart from the job's own failure (docs/slurm.md).
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import re
import resource
import shutil
import signal
import time
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from fsqueue.model import Placement, Usage


@dataclass(frozen=True)
class Launch:
    """One job, ready to start: every path as given by the user, resolved against `wd`."""

    job_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    wd: str | None
    stdin: str | None
    stdout: str
    stderr: str
    cpus: frozenset[int] | None  # real CPUs to pin the job to; None when the cores are virtual
    placement: Placement | None = None
    tasks_per_node: int = 1
    launch_log: str | None = None  # where a launcher's own messages go (srun's stderr)
    gpus_per_node: int = 0


@dataclass(frozen=True)
class Exit:
    job_id: str
    exit_code: int | None  # None when a signal ended the job
    signal: int | None
    usage: Usage | None
    launch_failure: str | None = None  # the job never ran: the infrastructure failed, not the job
    failed_nodes: tuple[str, ...] = ()  # nodes the launch failure names
    detail: str | None = None  # what the launcher said about a failure, for the status reason
    ended_at: float | None = None  # wall time the launcher saw the end (the status file's end_time)


class LaunchError(Exception):
    """The job could not be started through its own fault; the message names the field (exec, wd, stdout...)."""


class Launcher(Protocol):
    def start(self, launch: Launch) -> float: ...  # the wall time the job started
    def reap(self) -> list[Exit]: ...
    def signal(self, job_id: str, signum: int) -> None: ...
    def pid_of(self, job_id: str) -> int | None: ...  # the job's process (its group and session leader)


class _Children:
    """The manager's child processes, one per job, each the leader of its own session."""

    def __init__(self) -> None:
        self._pids: dict[int, str] = {}
        self._by_job: dict[str, int] = {}
        self._home = os.getcwd()
        self._own_cpus = os.sched_getaffinity(0)  # what the manager runs on between spawns

    def spawn(self, job_id: str, program: str, argv: Sequence[str], env: Mapping[str, str],
              fds: tuple[int, int, int], cpus: frozenset[int] | None, wd: str | None) -> float:
        """Start the child; return the wall time it started (posix_spawn returns once it has exec'd)."""
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        pinned = cpus is not None and cpus != self._own_cpus
        if pinned:
            # The child inherits the spawning thread's CPU mask, so it is pinned before its first
            # instruction (an OpenMP runtime reads the mask at start-up; pinning afterwards is too late).
            os.sched_setaffinity(0, cpus)
        try:
            if wd:
                _enter(wd)
            pid = os.posix_spawn(program, list(argv), env, file_actions=actions, setsid=True)
        except OSError as error:
            raise LaunchError(f"exec: cannot run {program}: {error.strerror}") from error
        finally:
            if wd:
                os.chdir(self._home)
            if pinned:
                os.sched_setaffinity(0, self._own_cpus)
        self._pids[pid] = job_id
        self._by_job[job_id] = pid
        return time.time()

    def reap(self) -> list[tuple[str, int, os.struct_rusage, float]]:  # type: ignore[name-defined]
        """Every child that ended, with the wall time it was reaped (one clock reading per child)."""
        ended = []
        while self._pids:
            try:
                # WNOWAIT first: the zombie keeps its pid, so killing the rest of its session cannot
                # hit a stranger that reused the number.
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                break
            if info is None or info.si_pid == 0:
                break
            pid = info.si_pid
            _kill_group(pid, signal.SIGKILL)
            _, status, rusage = os.wait4(pid, 0)
            job_id = self._pids.pop(pid, None)
            if job_id is not None:
                del self._by_job[job_id]
                ended.append((job_id, status, rusage, time.time()))
        return ended

    def signal(self, job_id: str, signum: int) -> None:
        pid = self._by_job.get(job_id)
        if pid is not None:
            _kill_group(pid, signum)

    def pid_of(self, job_id: str) -> int | None:
        return self._by_job.get(job_id)


class LocalLauncher:
    """Jobs as child processes of this one, pinned to their cores where the cores are real."""

    def __init__(self) -> None:
        self._children = _Children()
        self._which: dict[tuple[str, str | None], str | None] = {}
        self._devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)  # every job's default stdin
        # The manager's peak RSS as last read; it only grows, so a job at or below it is below the real one.
        self._own_peak_kib = 0

    def start(self, launch: Launch) -> float:
        program = self._resolve(launch.argv[0], launch.env.get("PATH"))
        fds = _open_streams(launch, self._devnull)
        try:
            return self._children.spawn(launch.job_id, program, launch.argv, launch.env, fds, launch.cpus, launch.wd)
        finally:
            for fd in fds:
                if fd != self._devnull:
                    os.close(fd)

    def _resolve(self, program: str, path: str | None) -> str:
        if "/" in program:
            return program
        key = (program, path)
        if key not in self._which:
            self._which[key] = shutil.which(program, path=path)
        found = self._which[key]
        if found is None:
            raise LaunchError(f"exec: {program!r} is not found in PATH")
        return found

    def reap(self) -> list[Exit]:
        exits = []
        for job_id, status, rusage, ended in self._children.reap():
            if rusage.ru_maxrss > self._own_peak_kib:
                # Only then may the manager's own peak have grown past the one known: read it again.
                self._own_peak_kib = _own_peak_kib()
            exits.append(_exit_of(job_id, status, rusage, ended, self._own_peak_kib))
        return exits

    def signal(self, job_id: str, signum: int) -> None:
        self._children.signal(job_id, signum)

    def pid_of(self, job_id: str) -> int | None:
        return self._children.pid_of(job_id)


class SrunLauncher:
    """Each job is one `srun` step, placed with an explicit node list and core count (docs/slurm.md)."""

    def __init__(self, srun: str = "srun", mem_per_cpu_mb: int | None = None, bind: bool = True) -> None:
        self._children = _Children()
        self._srun = shutil.which(srun) or srun
        self._mem_per_cpu_mb = mem_per_cpu_mb
        self._bind = bind
        self._logs: dict[str, str] = {}

    def start(self, launch: Launch) -> float:
        assert launch.placement is not None and launch.launch_log is not None
        argv = srun_argv(launch, self._srun, self._mem_per_cpu_mb, self._bind)
        try:
            log_fd = os.open(launch.launch_log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except OSError as error:
            raise LaunchError(f"launch log: cannot open {launch.launch_log}: {error.strerror}") from error
        null_in = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        null_out = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:
            started = self._children.spawn(launch.job_id, self._srun, argv, srun_environment(launch.env),
                                           (null_in, null_out, log_fd), None, None)
        finally:
            for fd in (log_fd, null_in, null_out):
                os.close(fd)
        self._logs[launch.job_id] = launch.launch_log
        return started

    def reap(self) -> list[Exit]:
        exits = []
        for job_id, status, _, ended in self._children.reap():
            log_path = self._logs.pop(job_id)
            code = os.waitstatus_to_exitcode(status)
            try:
                with open(log_path, errors="replace") as handle:
                    text = handle.read(65536)
            except OSError:
                text = ""
            exit = dataclasses.replace(classify_srun_exit(job_id, code, text), ended_at=ended)
            if exit.exit_code == 0:
                os.unlink(log_path)  # nothing to keep: few files per job on a shared filesystem (R21)
            exits.append(exit)
        return exits

    def signal(self, job_id: str, signum: int) -> None:
        # srun does not forward SIGTERM: it answers "forcing job termination" and SIGKILLs the tasks
        # (docs/slurm.md, known limitation). SIGKILL ends srun itself; slurmd then ends the orphaned step.
        self._children.signal(job_id, signum)

    def pid_of(self, job_id: str) -> int | None:
        return self._children.pid_of(job_id)


# -- processes left by a manager that died ------------------------------------------------------------


def job_process_groups(spool: str, job_ids: Container[str]) -> list[int]:
    """The process groups on this machine that run one of `job_ids` of `spool`.

    Found by the environment every job gets (FSQ_SPOOL, FSQ_JOB_ID), not by a pid the dead manager
    may not have had time to journal: its journal records a start before the process exists.
    """
    wanted_spool = f"FSQ_SPOOL={spool}".encode()
    groups: set[int] = set()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as handle:
                environ = handle.read().split(b"\0")
        except OSError:  # gone, or not ours to read
            continue
        if wanted_spool not in environ:
            continue
        job = next((item[11:].decode(errors="replace") for item in environ if item.startswith(b"FSQ_JOB_ID=")), None)
        if job not in job_ids:
            continue
        try:
            pgid = os.getpgid(int(entry.name))
        except OSError:  # gone since
            continue
        if pgid != os.getpgrp():
            groups.add(pgid)
    return sorted(groups)


def stop_orphans(groups: Iterable[int], grace: float) -> list[int]:
    """Stop process groups a dead manager left running: SIGTERM to each, up to `grace` seconds for
    them to go, then SIGKILL. Returns the groups that were still there and were signaled."""
    alive = [pgid for pgid in groups if _group_alive(pgid)]
    for pgid in alive:
        _kill_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    waiting = list(alive)
    while waiting and time.monotonic() < deadline:
        time.sleep(0.02)  # not our children: there is nothing to wait on but their disappearance
        waiting = [pgid for pgid in waiting if _group_alive(pgid)]
    for pgid in waiting:
        _kill_group(pgid, signal.SIGKILL)
    return alive


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def srun_argv(launch: Launch, srun: str = "srun", mem_per_cpu_mb: int | None = None, bind: bool = True) -> list[str]:
    """The srun command line that runs `launch` exactly where its placement says. Pure.

    Each flag is justified in docs/slurm.md, "The srun command line".
    """
    assert launch.placement is not None
    nodes = launch.placement.nodes
    per_node = min(len(cores) for _, cores in launch.placement.cores)
    tasks = launch.tasks_per_node
    argv = [
        srun,
        f"--nodes={len(nodes)}",
        f"--ntasks={len(nodes) * tasks}",
        f"--ntasks-per-node={tasks}",
        f"--cpus-per-task={max(1, per_node // tasks)}",
        f"--nodelist={','.join(nodes)}",
        "--exact",
        "--cpu-bind=cores" if bind else "--cpu-bind=none",
        "--kill-on-bad-exit=1",
        f"--job-name=fsq-{launch.job_id}",
        f"--input={_pattern_free(launch.stdin) if launch.stdin else 'none'}",
        f"--output={_pattern_free(launch.stdout)}",
        f"--error={_pattern_free(launch.stderr)}",
    ]
    if launch.wd:
        argv.append(f"--chdir={launch.wd}")
    if mem_per_cpu_mb:
        argv.append(f"--mem-per-cpu={mem_per_cpu_mb}")
    if launch.gpus_per_node:
        argv.append(f"--gpus-per-node={launch.gpus_per_node}")
    return [*argv, *launch.argv]


# Variables srun reads as defaults for options the manager does not give every step (srun(1), "INPUT
# ENVIRONMENT VARIABLES"). Set by the batch script's own options (sbatch --gpus-per-node=4, --export=NONE,
# --hint=nomultithread), they would make each step of a CPU-only job ask for GPUs and queue behind the
# others inside srun, or drop the job's environment. A step asks for what the manager placed, nothing more.
SRUN_DEFAULTS_FROM_ENV = frozenset({
    "SLURM_GPUS", "SLURM_GPUS_PER_NODE", "SLURM_GPUS_PER_SOCKET", "SLURM_GPUS_PER_TASK", "SLURM_CPUS_PER_GPU",
    "SLURM_MEM_PER_GPU", "SLURM_NTASKS_PER_GPU", "SLURM_GPU_BIND", "SLURM_GPU_FREQ", "SLURM_GRES",
    "SLURM_TRES_PER_TASK", "SLURM_TRES_BIND", "SLURM_NTASKS_PER_TRES", "SLURM_HINT", "SLURM_DISTRIBUTION",
    "SLURM_DIST_PLANESIZE", "SLURM_NTASKS_PER_CORE", "SLURM_NTASKS_PER_SOCKET", "SLURM_THREADS_PER_CORE",
    "SLURM_OVERCOMMIT", "SLURM_EXPORT_ENV", "SRUN_EXPORT_ENV",
})


def srun_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment srun runs with: the job's, without the option defaults above. Pure."""
    return {key: value for key, value in env.items() if key not in SRUN_DEFAULTS_FROM_ENV}


def _pattern_free(path: str) -> str:
    # srun expands %j, %t, %N... in --input/--output/--error; %% is a literal percent sign.
    return path.replace("%", "%%")


# Lines srun prints when a task of the step ended badly: the step ran, so the job failed.
_TASK_ENDED = re.compile(r"^srun: error: (\S+): tasks? [0-9,\-]+: (.*)$", re.MULTILINE)
# Lines that say the step never ran properly: the infrastructure failed, not the job.
_LAUNCH_FAILED = re.compile(
    r"Unable to create step|Task launch for \S+ failed on node (\S+?):|Job credential|Socket timed out|"
    r"Unable to contact slurm controller|Communication connection failure|Zero Bytes were transmitted|"
    r"Unable to confirm allocation|Nodes? (\S+) (?:are|is) still not ready|Application launch failed|"
    r"Slurm job queue full|Requested nodes are busy"
)
_NODE_IN_ERROR = re.compile(r"(?:on node|node[s]?) ([A-Za-z0-9][A-Za-z0-9_.\-]*)")


def classify_srun_exit(job_id: str, code: int, log_text: str) -> Exit:
    """Tell a job's own failure from a failure to launch it, from srun's exit and its messages. Pure."""
    if code < 0:  # srun itself was killed by a signal: we stopped it
        return Exit(job_id, None, -code, None)
    if code == 0:
        return Exit(job_id, 0, None, None)
    tasks_ended = _TASK_ENDED.findall(log_text)
    launch_errors = [line for line in log_text.splitlines() if _LAUNCH_FAILED.search(line)]
    if launch_errors and not tasks_ended:
        nodes = tuple(dict.fromkeys(match for line in launch_errors for match in _NODE_IN_ERROR.findall(line)))
        return Exit(job_id, code, None, None, launch_failure=launch_errors[-1].strip(), failed_nodes=nodes)
    detail = "; ".join(f"{node}: {what}" for node, what in tasks_ended[:3]) or None
    # srun reports a task killed by a signal as 128 + the signal number (137 for SIGKILL), and names
    # it as strsignal(3) does ("Killed", "Segmentation fault (core dumped)"): the same signal as local
    # mode reports, not an exit code.
    if tasks_ended and code > 128 and (described := _signal_text(code - 128)) and any(
            what.startswith(described) for _, what in tasks_ended):
        return Exit(job_id, None, code - 128, None, detail=detail)
    return Exit(job_id, code, None, None, detail=detail)


def _signal_text(number: int) -> str | None:
    try:
        return signal.strsignal(number)
    except ValueError:
        return None


def _exit_of(job_id: str, status: int, rusage: os.struct_rusage,  # type: ignore[name-defined]
             ended: float, manager_peak_kib: int) -> Exit:
    code = os.waitstatus_to_exitcode(status)
    # At exec the kernel carries the parent's peak RSS into the child's (exec_mmap keeps the larger),
    # so a job that stayed below the manager's own peak reads as the manager's: unknown, not that.
    peak = rusage.ru_maxrss if rusage.ru_maxrss > manager_peak_kib else None
    usage = Usage(round(rusage.ru_utime, 6), round(rusage.ru_stime, 6), peak)
    if code < 0:
        return Exit(job_id, None, -code, usage, ended_at=ended)
    return Exit(job_id, code, None, usage, ended_at=ended)


def _own_peak_kib() -> int:
    """This process's own peak RSS (VmHWM), which the kernel carries into every child it execs.

    Not getrusage(RUSAGE_SELF): that also holds the peak of whatever started the manager (a Python
    driver of 300 MiB, say), which no job of ours inherits.
    """
    try:
        with open("/proc/self/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # no /proc: an upper bound


def _kill_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def _enter(wd: str) -> None:
    try:
        os.chdir(wd)
    except OSError as error:
        raise LaunchError(f"wd: cannot enter {wd}: {error.strerror}") from error


def _open_streams(launch: Launch, devnull: int) -> tuple[int, int, int]:
    opened: list[int] = [] if launch.stdin else [devnull]
    plan = (
        *((("stdin", launch.stdin, os.O_RDONLY),) if launch.stdin else ()),
        ("stdout", launch.stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ("stderr", launch.stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    )
    try:
        for field, path, flags in plan:
            full = path if os.path.isabs(path) or not launch.wd else os.path.join(launch.wd, path)
            try:
                # O_NONBLOCK: opening a FIFO would otherwise wait for its other end, and hold up the
                # manager with every job. A FIFO with no reader fails (ENXIO) instead; the job's own
                # reads and writes block as usual once it is open.
                fd = os.open(full, flags | os.O_CLOEXEC | os.O_NONBLOCK, 0o644)
            except OSError as error:
                hint = " (a FIFO with no reader)" if error.errno == errno.ENXIO else ""
                raise LaunchError(f"{field}: cannot open {full}: {error.strerror}{hint}") from error
            opened.append(fd)
            # Blocking again for the job, in one call (os.set_blocking reads the flags first): none of the
            # flags F_SETFL could set (O_APPEND, O_ASYNC, O_DIRECT, O_NOATIME) is ever used here.
            fcntl.fcntl(fd, fcntl.F_SETFL, 0)
    except LaunchError:
        for fd in opened:
            if fd != devnull:
                os.close(fd)
        raise
    return opened[0], opened[1], opened[2]
