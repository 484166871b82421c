"""Start, signal and reap job processes: one small interface, one backend per way of launching.

LocalLauncher runs each job as a direct child process of the manager (local mode: a laptop, a login
node, or one node of an allocation). Each job gets its own session, so a signal reaches every process
it started, and whatever is left of that session when the main process ends is killed, the way a
Slurm step ends.
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from fsqueue.model import Usage


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


@dataclass(frozen=True)
class Exit:
    job_id: str
    exit_code: int | None  # None when a signal ended the job
    signal: int | None
    usage: Usage | None


class LaunchError(Exception):
    """The job could not be started; the message names the field at fault (exec, wd, stdout...)."""


class Launcher(Protocol):
    def start(self, launch: Launch) -> None: ...
    def reap(self) -> list[Exit]: ...
    def signal(self, job_id: str, signum: int) -> None: ...


class LocalLauncher:
    """Jobs as child processes of this one, started with posix_spawn and reaped with wait4."""

    def __init__(self) -> None:
        self._pids: dict[int, str] = {}
        self._by_job: dict[str, int] = {}
        self._home = os.getcwd()
        self._which: dict[tuple[str, str | None], str | None] = {}

    def start(self, launch: Launch) -> None:
        program = self._resolve(launch.argv[0], launch.env.get("PATH"))
        fds = _open_streams(launch)
        try:
            pid = self._spawn(program, launch, fds)
        finally:
            for fd in fds:
                os.close(fd)
        self._pids[pid] = launch.job_id
        self._by_job[launch.job_id] = pid

    def _spawn(self, program: str, launch: Launch, fds: tuple[int, int, int]) -> int:
        actions = [(os.POSIX_SPAWN_DUP2, fd, target) for target, fd in enumerate(fds)]
        saved_affinity = None
        if launch.cpus is not None:
            # The child inherits the spawning thread's CPU mask, so it is pinned before its first
            # instruction (an OpenMP runtime reads the mask at start-up; pinning afterwards is too late).
            saved_affinity = os.sched_getaffinity(0)
            os.sched_setaffinity(0, launch.cpus)
        try:
            if launch.wd:
                _enter(launch.wd)
            return os.posix_spawn(program, list(launch.argv), launch.env, file_actions=actions, setsid=True)
        except OSError as error:
            raise LaunchError(f"exec: cannot run {program}: {error.strerror}") from error
        finally:
            if launch.wd:
                os.chdir(self._home)
            if saved_affinity is not None:
                os.sched_setaffinity(0, saved_affinity)

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
            if job_id is None:
                continue
            del self._by_job[job_id]
            exits.append(_exit_of(job_id, status, rusage))
        return exits

    def signal(self, job_id: str, signum: int) -> None:
        pid = self._by_job.get(job_id)
        if pid is not None:
            _kill_group(pid, signum)

    @property
    def running(self) -> int:
        return len(self._pids)


def _exit_of(job_id: str, status: int, rusage: os.struct_rusage) -> Exit:  # type: ignore[name-defined]
    code = os.waitstatus_to_exitcode(status)
    usage = Usage(round(rusage.ru_utime, 6), round(rusage.ru_stime, 6), rusage.ru_maxrss)
    if code < 0:
        return Exit(job_id, None, -code, usage)
    return Exit(job_id, code, None, usage)


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


def _open_streams(launch: Launch) -> tuple[int, int, int]:
    opened: list[int] = []
    plan = (
        ("stdin", launch.stdin or os.devnull, os.O_RDONLY),
        ("stdout", launch.stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ("stderr", launch.stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
    )
    try:
        for field, path, flags in plan:
            full = path if os.path.isabs(path) or not launch.wd else os.path.join(launch.wd, path)
            try:
                opened.append(os.open(full, flags | os.O_CLOEXEC, 0o644))
            except OSError as error:
                raise LaunchError(f"{field}: cannot open {full}: {error.strerror}") from error
    except LaunchError:
        for fd in opened:
            os.close(fd)
        raise
    return opened[0], opened[1], opened[2]
