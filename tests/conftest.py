"""Shared fixtures: real processes owned by the test, and waiting on conditions against a deadline."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from fsqueue.launcher import Exit, Launch
from fsqueue.manager import Manager, Now
from fsqueue.spool import Spool, read_json

REPO = Path(__file__).resolve().parent.parent
FSQ = [sys.executable, "-m", "fsqueue"]


def wait_until(predicate: Callable[[], Any], timeout: float = 20.0, describe: Callable[[], str] | str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail with what was last seen at the deadline."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            seen = describe() if callable(describe) else describe
            pytest.fail(f"condition not met within {timeout} s; last seen: {seen}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.1)


@dataclass
class Processes:
    """Every process a test starts: own session, output to a log file, killed (whole group) at teardown."""

    logs: Path
    started: list[tuple[subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def start(self, argv: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
              name: str = "proc", stdin: int = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
        log = self.logs / f"{name}-{len(self.started)}.log"
        with open(log, "wb") as out:
            proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, stdin=stdin,
                                    env=env, cwd=cwd, start_new_session=True)
        self.started.append((proc, log))
        return proc

    def log_of(self, proc: subprocess.Popen[bytes]) -> str:
        for candidate, log in self.started:
            if candidate is proc:
                return log.read_text(errors="replace")
        raise KeyError(proc)

    def stop_all(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    logs = tmp_path / "logs"
    logs.mkdir()
    owner = Processes(logs)
    yield owner
    owner.stop_all()


def run_fsq(*args: str, spool: Path | None = None, input: bytes | None = None, timeout: float = 60,
            cwd: Path | None = None, check: bool = False) -> subprocess.CompletedProcess[bytes]:
    # --spool goes right after the command, before any `-- CMD ARGS`.
    argv = [*FSQ, args[0], *(["--spool", str(spool)] if spool is not None else []), *args[1:]]
    result = subprocess.run(argv, input=input, capture_output=True, timeout=timeout, cwd=cwd, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{argv} exited {result.returncode}: {result.stderr.decode(errors='replace')}")
    return result


@dataclass
class RunningManager:
    spool: Path
    proc: subprocess.Popen[bytes]
    processes: Processes

    def info(self) -> dict[str, Any] | None:
        return read_json(self.spool / "manager.json")

    def log(self) -> str:
        return self.processes.log_of(self.proc)

    def status(self, job_id: str) -> dict[str, Any] | None:
        return Spool(self.spool).read_status(job_id)

    def state(self, job_id: str) -> str | None:
        """The job's state, or None while its file waits in incoming/."""
        return (self.status(job_id) or {}).get("state")

    def wait_state(self, job_id: str, state: str, timeout: float = 30) -> dict[str, Any]:
        wait_until(lambda: self.state(job_id) == state, timeout,
                   lambda: f"{self.status(job_id)}\nmanager log:\n{self.log()}")
        return self.status(job_id) or {}

    def wait_final(self, job_id: str, timeout: float = 30) -> dict[str, Any]:
        final = {"SUCCEEDED", "FAILED", "CANCELED", "REJECTED", "SKIPPED", "TIMEOUT"}
        return wait_until(lambda: (doc := self.status(job_id)) and doc["state"] in final and doc,
                          timeout, lambda: f"{self.status(job_id)}\nmanager log:\n{self.log()}")

    def wait_exit(self, timeout: float = 30) -> int:
        wait_until(lambda: self.proc.poll() is not None, timeout, lambda: f"manager still running:\n{self.log()}")
        return self.proc.returncode


@pytest.fixture(params=["inotify", "polling"])
def watch_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_manager(processes: Processes, tmp_path: Path, watch_mode: str) -> Callable[..., RunningManager]:
    """Start a real `fsq manager` process on a spool and wait until it serves."""

    def start(*extra: str, spool: Path | None = None, wait: bool = True, command: Sequence[str] = FSQ) -> RunningManager:
        """`command` runs fsqueue's CLI with the arguments after it (FSQ, or a wrapper that execs it)."""
        root = spool or tmp_path / "spool"
        # In inotify mode the scan is an hour away, so only events can make the manager see a file:
        # a broken watch fails the test instead of hiding behind the poll.
        mode = ["--no-watch", "--poll", "0.2"] if watch_mode == "polling" else ["--poll", "3600"]
        argv = [*command, "manager", "--spool", str(root), *mode, *extra]
        proc = processes.start(argv, name="manager")
        manager = RunningManager(root, proc, processes)
        if wait:
            wait_until(lambda: (info := manager.info()) and info.get("pid") == proc.pid and proc.poll() is None,
                       20, lambda: f"no heartbeat from pid {proc.pid}; exit {proc.poll()}\n{manager.log()}")
        return manager

    return start


# -- a manager stepped in this process, with its clock passed in ---------------------------------------------


def now(ahead: float = 0.0) -> Now:
    """The clock to pass to Manager.step; `ahead` seconds in the future on the monotonic clock only."""
    return Now(time.time(), time.monotonic() + ahead)


def stop_in_process(manager: Manager) -> None:
    """Stop a manager stepped in this process: its jobs signalled, stepped until they ended, then finished."""
    manager.stop("test over", now())
    wait_until(lambda: manager.step(now()) or manager.finished, 20, "the manager to stop its jobs")
    manager.finish(now())


class RecordingLauncher:
    """A launcher that starts nothing: it records each launch; its jobs never end unless told to."""

    def __init__(self) -> None:
        self.launches: list[Launch] = []
        self.ended: list[Exit] = []

    def start(self, launch: Launch) -> float:
        self.launches.append(launch)
        return time.time()

    def reap(self) -> list[Exit]:
        ended, self.ended = self.ended, []
        return ended

    def signal(self, job_id: str, signum: int) -> None:
        pass

    def pid_of(self, job_id: str) -> int | None:
        return None


@contextlib.contextmanager
def small_tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `directory`, to fill up for real; skips the test where it cannot be."""
    if os.geteuid() != 0:
        pytest.skip(f"mounting a {size} tmpfs to fill up needs root")
    directory.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        if subprocess.run(["umount", str(directory)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(directory)], check=True)


def fill_up(path: Path) -> Path:
    """Write `path` until its filesystem has no free byte left (ENOSPC for data from then on); return it.

    Unbuffered, in pages and then byte by byte, so that even the rest of the last page gets used.
    """
    with open(path, "wb", buffering=0) as handle:
        for size in (4096, 1):
            try:
                while True:
                    handle.write(b"x" * size)
            except OSError as error:
                assert error.errno == errno.ENOSPC, error
    return path
