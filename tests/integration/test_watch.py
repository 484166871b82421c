"""`fsq status --watch` under a real pseudo-terminal and through a pipe, and the progress of `fsq run` and
`fsq wait --all`. Every wait has a deadline and fails showing what the program had written so far."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from fsqueue import client, watch_view
from fsqueue.joblog import COLUMNS, HEADER
from fsqueue.spool import Spool
from tests.conftest import FSQ, RunningManager, run_fsq

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLS, ROWS = 100, 30


class Output:
    """What a child writes to one descriptor, read as it comes."""

    def __init__(self, fd: int) -> None:
        self.fd, self.data, self.closed = fd, b"", False

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace")

    @property
    def frame(self) -> str:
        """The last full screen drawn on a terminal, without colors."""
        return ANSI.sub("", self.text.rsplit("\x1b[H", 1)[-1])

    def _read(self, timeout: float) -> None:
        if select.select([self.fd], [], [], max(timeout, 0))[0]:
            try:
                chunk = os.read(self.fd, 65536)
            except OSError as error:  # a pty whose other end is closed reads as EIO
                if error.errno != errno.EIO:
                    raise
                chunk = b""
            self.closed = not chunk
            self.data += chunk

    def wait_for(self, predicate: Callable[[Output], Any], what: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if self.closed or time.monotonic() >= deadline:
                pytest.fail(f"{what}: not seen within {timeout} s (closed: {self.closed}); output:\n{self.text[-4000:]}")
            self._read(min(0.2, deadline - time.monotonic()))

    def wait_closed(self, timeout: float = 30) -> None:
        self.wait_for(lambda out: out.closed, "the end of the output", timeout)


class Watchers:
    """The fsq processes a test starts, each in its own session, killed at teardown if still running."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def pipe(self, *argv: str) -> tuple[subprocess.Popen[bytes], Output]:
        proc = subprocess.Popen([*FSQ, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=_env())
        self.procs.append(proc)
        assert proc.stdout is not None
        return proc, Output(proc.stdout.fileno())

    def terminal(self, *argv: str, cwd: Path | None = None) -> tuple[subprocess.Popen[bytes], Output]:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        proc = subprocess.Popen([*FSQ, *argv], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                env=_env(), cwd=cwd)
        os.close(slave)
        self.procs.append(proc)
        return proc, Output(master)

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _env() -> dict[str, str]:
    # COLUMNS and LINES would override the terminal's own size.
    return {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}


@pytest.fixture
def watchers() -> Iterator[Watchers]:
    owner = Watchers()
    yield owner
    owner.stop_all()


def exited(proc: subprocess.Popen[bytes], timeout: float = 30) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pid {proc.pid} still running after {timeout} s")


# -- a manager played by the test: manager.json, the joblog, status files -------------------------------


class FakeManager:
    def __init__(self, root: Path) -> None:
        self.spool = Spool.create(root)

    def beat(self, counts: dict[str, int], busy: tuple[int, int] = (0, 0), phase: str = "serving") -> None:
        nodes = [{"name": "n1", "cores": 2, "busy": busy[0]}, {"name": "n2", "cores": 2, "busy": busy[1]}]
        self.spool.write_manager_info({"version": 1, "host": "fakehost", "pid": 4242, "phase": phase,
                                       "started": time.time() - 5, "heartbeat": time.time(), "interval": 2.0,
                                       "poll": 1.0, "nodes": nodes, "counts": counts})

    def ended(self, job_id: str, name: str, state: str, exit_code: int, run_time: float = 2.0) -> str:
        """An attempt ends: its joblog line and its status file. Returns the job's stderr path."""
        now = time.time()
        stderr = str(self.spool.default_output(job_id, "stderr"))
        values = {"id": job_id, "name": name, "attempt": 1, "state": state, "exit_code": exit_code,
                  "submit_time": f"{now - run_time - 1:.3f}", "start_time": f"{now - run_time:.3f}",
                  "end_time": f"{now:.3f}", "run_time": f"{run_time:.3f}", "nodes": "n1", "cores": 1,
                  "placement": "n1:0", "reason": f"exit code {exit_code}" if exit_code else ""}
        self.spool.write_status(job_id, {"id": job_id, "name": name, "state": state, "stderr": stderr})
        with open(self.spool.joblog, "a") as log:
            if log.tell() == 0:
                log.write(HEADER)
            log.write("\t".join(str(values.get(column, "")) for column in COLUMNS) + "\n")
        return stderr


@pytest.fixture
def fake(tmp_path: Path) -> FakeManager:
    manager = FakeManager(tmp_path / "spool")
    manager.beat({"QUEUED": 2, "RUNNING": 2}, busy=(2, 0))
    return manager


def watch_args(fake: FakeManager) -> tuple[str, ...]:
    return ("status", "--watch", "--spool", str(fake.spool.root), "--interval", "0.1")


def test_plain_lines_through_a_pipe(fake, watchers):
    proc, out = watchers.pipe(*watch_args(fake))
    out.wait_for(lambda o: "QUEUED 2, RUNNING 2 | cores 2/4 busy |" in o.text, "the first status line")
    assert "manager serving on fakehost pid 4242" in out.text
    stderr = fake.ended("1m8c6ejd203ngkq0", "broken", "FAILED", 3)
    failure = f"FAILED 1m8c6ejd203ngkq0 broken: exit code 3 (stderr {stderr})"
    out.wait_for(lambda o: failure in o.text, "the failure, as it happened")
    fake.beat({"QUEUED": 1, "RUNNING": 2, "FAILED": 1}, busy=(2, 0))
    out.wait_for(lambda o: "QUEUED 1, RUNNING 2, FAILED 1 |" in o.text, "a line for the new counts")
    fake.beat({"SUCCEEDED": 3, "FAILED": 1}, phase="stopped")
    assert exited(proc) == 0
    out.wait_closed()
    lines = out.text.splitlines()
    assert "\x1b" not in out.text and "SUCCEEDED 3, FAILED 1 | cores 0/4 busy" in lines[-1]
    assert sum(failure in line for line in lines) == 1  # each failure once
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", line) for line in lines), lines


def test_live_screen_under_a_pseudo_terminal(fake, watchers):
    proc, out = watchers.terminal(*watch_args(fake))
    out.wait_for(lambda o: "RUNNING 2" in o.frame and "n2" in o.frame, "the first screen")
    screen = out.frame
    assert "\x1b[?25l" in out.text and "\x1b[36mRUNNING\x1b[0m" in out.text  # cursor hidden, states in color
    assert "manager serving on fakehost pid 4242, heartbeat" in screen
    assert re.search(r"n1\s+\[#{20}\] 2/2 busy", screen) and re.search(r"n2\s+\[\.{20}\] 0/2 busy", screen)
    assert "cores    2 busy, 2 free of 4" in screen and "failures (0)" in screen
    fake.ended("1m8c6ejd203ngkq1", "broken", "FAILED", 3, run_time=4.0)
    fake.beat({"QUEUED": 1, "RUNNING": 2, "FAILED": 1}, busy=(2, 0))
    out.wait_for(lambda o: "FAILED 1m8c6ejd203ngkq1 broken: exit code 3" in o.frame and "failures (1)" in o.frame,
                 "the failure on the screen")
    # One finished job of 4 core-seconds, 1 queued and 2 running (counted half done) on 4 cores: 2 s.
    assert "ETA 2 s" in out.frame
    fake.beat({"SUCCEEDED": 3, "FAILED": 1}, phase="stopped")
    assert exited(proc) == 0
    out.wait_closed()
    assert out.text.endswith("\x1b[?25h")  # the cursor is given back
    frames = out.text.split("\x1b[H")[1:]
    for frame in frames:
        lines = ANSI.sub("", frame).split("\r\n")
        assert len(lines) <= ROWS and all(len(line) <= COLS for line in lines), lines
    assert "nothing queued or running" in out.frame


def test_ctrl_c_ends_the_watch_and_gives_the_cursor_back(fake, watchers):
    proc, out = watchers.terminal(*watch_args(fake))
    out.wait_for(lambda o: "RUNNING 2" in o.frame, "the first screen")
    os.killpg(proc.pid, signal.SIGINT)
    assert exited(proc) == 0
    out.wait_closed()
    assert out.text.endswith("\x1b[?25h") and "Traceback" not in out.text


def test_watch_follows_a_real_manager_until_it_stops(start_manager, watchers):
    manager: RunningManager = start_manager("--cores", "2")
    proc, out = watchers.pipe("status", "--watch", "--spool", str(manager.spool), "--interval", "0.1")
    out.wait_for(lambda o: "no jobs | cores 0/2 busy" in o.text, "the idle spool")
    jobs = json.dumps([{"exec": "true"}, {"exec": "true"}, {"script": "exit 5"}]).encode()
    run_fsq("submit", "-", spool=manager.spool, input=jobs, check=True)
    out.wait_for(lambda o: "SUCCEEDED 2, FAILED 1 |" in o.text, "the finished jobs")
    run_fsq("shutdown", spool=manager.spool, check=True)
    assert exited(proc) == 0
    out.wait_closed()
    assert "manager not running since" in out.text.splitlines()[-1]


def test_watch_refuses_job_ids_and_json(fake):
    for extra in (["1m8c6ejd203ngkq0"], ["--json"]):
        result = run_fsq("status", "--watch", *extra, spool=fake.spool.root)
        assert result.returncode == 2 and "--watch follows the whole spool" in result.stderr.decode()


def test_the_screen_fits_any_number_of_nodes(fake):
    nodes = [{"name": f"node{n:03d}", "cores": 64, "busy": n % 65} for n in range(300)]
    look = watch_view.Look(time.time(), client.manager(fake.spool.root), {"RUNNING": 300}, nodes, 0, 2.5, 60.0)
    lines = watch_view.screen(look, [], lambda _: None, "/spool", 80, 24)
    assert len(lines) <= 24 and all(len(line) <= 80 for line in lines)
    assert any(re.fullmatch(r"  \.\.\. and \d+ more nodes", line) for line in lines)


@pytest.mark.parametrize(("queued", "running", "mean", "cores", "rate", "expected"), [
    (0, 0, None, 4, None, 0.0),     # nothing left
    (10, 0, 2.0, 4, None, 5.0),     # 10 jobs x 2 core-seconds on 4 cores
    (0, 4, 2.0, 4, None, 1.0),      # running jobs count half
    (10, 0, None, 4, 2.0, 5.0),     # no durations yet: the rate
    (10, 0, None, 4, None, None),   # nothing to go on
    (10, 0, 2.0, 0, 5.0, 2.0),      # no cores known: the rate
])
def test_eta(queued, running, mean, cores, rate, expected):
    assert watch_view.eta(queued, running, mean, cores, rate) == expected


# -- progress of fsq run and fsq wait --all ---------------------------------------------------------------


def test_wait_all_prints_progress_lines_into_a_log(start_manager):
    manager = start_manager("--cores", "2")
    jobs = json.dumps([{"script": "exit 0"}] * 3 + [{"script": "exit 1"}]).encode()
    run_fsq("submit", "-", spool=manager.spool, input=jobs, check=True)
    waited = run_fsq("wait", "--all", "--timeout", "60", spool=manager.spool)
    assert waited.returncode == 1 and waited.stdout.decode() == "FAILED 1, SUCCEEDED 3\n"
    progress = [line for line in waited.stderr.decode().splitlines() if line.startswith("fsq: progress: ")]
    assert progress and "\x1b" not in waited.stderr.decode() and "\r" not in waited.stderr.decode()
    assert progress[-1].startswith("fsq: progress: 4/4 done, 0 running, 1 not succeeded")


def test_wait_all_draws_a_bar_on_a_terminal(start_manager, watchers):
    manager = start_manager("--cores", "2")
    run_fsq("submit", "--", "true", spool=manager.spool, check=True)
    proc, out = watchers.terminal("wait", "--all", "--timeout", "60", "--spool", str(manager.spool))
    assert exited(proc) == 0
    out.wait_closed()
    assert re.search(r"\r\[#{30}\] 1/1 done, 0 running, 0 not succeeded", out.text) and "SUCCEEDED 1" in out.text


def test_run_draws_a_bar_on_a_terminal_and_lines_in_a_log(tmp_path, watchers):
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{"script": "sleep 0.1"}] * 4))
    proc, out = watchers.terminal("run", "--cores", "2", "--spool", str(tmp_path / "tty"), str(jobs), cwd=tmp_path)
    assert exited(proc, 60) == 0
    out.wait_closed()
    assert re.search(r"\r\[#{30}\] 4/4 done, 0 running, 0 not succeeded, [\d.]+ jobs/s", out.text)
    logged = run_fsq("run", "--cores", "2", str(jobs), spool=tmp_path / "log", cwd=tmp_path)
    assert logged.returncode == 0
    lines = logged.stderr.decode().splitlines()
    assert "fsq: progress: 4/4 done, 0 running, 0 not succeeded" in "\n".join(lines) and "\r" not in logged.stderr.decode()
