"""The manager lease with real processes: refusal, takeover of dead holders, races, and lost leases."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest

from fsqueue.errors import LeaseLost, ManagerBusy, SpoolError
from fsqueue.lease import Holder, Lease, Owner, _move_aside, read_boot_id
from fsqueue.spool import atomic_write
from tests.conftest import REPO, Processes, wait_until

MP = multiprocessing.get_context("spawn")
FOREIGN = "elsewhere.example"

# A manager holding the lease in a real process. Its host may be faked ("-" = the real one). With
# interval "manual" it renews once per line read on stdin, so a test decides when it is "frozen".
HOLDER = r"""
import sys, time
from fsqueue.errors import LeaseLost
from fsqueue.lease import Lease, Owner
path, host, interval, job = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] or None
me = Owner.this_process(job)
if host != "-":
    me = Owner(host, me.pid, "boot-of-" + host, job)
manual = interval == "manual"
lease = Lease.acquire(path, me, interval=2.0 if manual else float(interval), now=time.time(), run=lambda argv: None)
print("held", lease.holder.token, flush=True)
try:
    while True:
        if manual and not sys.stdin.readline():
            break
        if not manual:
            time.sleep(float(interval))
        lease.renew()
        print("beat", lease.holder.beat, flush=True)
except LeaseLost as error:
    print("lost:", error, flush=True)
    sys.exit(3)
"""


class FakeTime:
    """A clock that moves only when slept on; `on_sleep` runs after each sleep (a holder acting meanwhile)."""

    def __init__(self, on_sleep: Callable[[], object] = lambda: None) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        self.on_sleep()


def never_sleep(seconds: float) -> None:
    raise AssertionError(f"the holder should be judged dead at once, not watched (sleep {seconds})")


def no_squeue(argv: Sequence[str]) -> subprocess.CompletedProcess[str] | None:
    return None


class SqueueSays:
    """A stand-in for squeue that gives one answer and remembers how it was called."""

    def __init__(self, stdout: str, returncode: int = 0, stderr: str = "") -> None:
        self.answer = (returncode, stdout, stderr)
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(list(argv))
        return subprocess.CompletedProcess(list(argv), *self.answer)


def me() -> Owner:
    return Owner.this_process()


def write_lease(path: Path, owner: Owner, *, interval: float = 2.0, beat: int = 0, token: str = "d" * 32) -> bytes:
    data = Holder(owner, 0.0, token, beat, interval).dumps()
    atomic_write(path, data)
    return data


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def start_holder(processes: Processes, path: Path, *, host: str = "-", interval: str = "0.2",
                 job: str = "") -> subprocess.Popen[bytes]:
    proc = processes.start([sys.executable, "-c", HOLDER, str(path), host, interval, job], cwd=REPO, name="holder")
    wait_until(lambda: "held" in processes.log_of(proc) or proc.poll() is not None, 30,
               lambda: processes.log_of(proc))
    assert proc.poll() is None, processes.log_of(proc)
    return proc


def beats(processes: Processes, proc: subprocess.Popen[bytes]) -> int:
    return processes.log_of(proc).count("beat ")


@pytest.fixture
def lease_path(tmp_path: Path) -> Path:
    spool = tmp_path / "spool"
    spool.mkdir()
    return spool / "manager.lease"


# -- acquire, renew, release ---------------------------------------------------------------------------


def test_the_lease_names_its_holder_and_each_renewal_raises_the_beat(lease_path: Path) -> None:
    lease = Lease.acquire(lease_path, Owner.this_process("77"), interval=2.0, now=123.0)
    doc = orjson.loads(lease_path.read_bytes())
    assert doc == {"fsqueue_lease": 1, "host": socket.gethostname(), "pid": os.getpid(), "boot_id": read_boot_id(),
                   "slurm_job_id": "77", "started": 123.0, "token": lease.holder.token, "beat": 0, "interval": 2.0}
    assert len(doc["token"]) == 32 and lease.took_over is None
    info = os.stat(lease_path)
    assert stat.S_IMODE(info.st_mode) == 0o600 and info.st_nlink == 1
    for beat in (1, 2, 3):
        lease.renew()
        assert orjson.loads(lease_path.read_bytes())["beat"] == beat
    assert orjson.loads(lease_path.read_bytes())["token"] == doc["token"]
    assert os.listdir(lease_path.parent) == ["manager.lease"], "no temporary files left"
    assert lease.release() is True
    assert os.listdir(lease_path.parent) == []
    assert lease.release() is False, "releasing twice is harmless"


def test_tokens_are_unique_per_holder(lease_path: Path) -> None:
    tokens = set()
    for _ in range(20):
        lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0)
        tokens.add(lease.holder.token)
        lease.release()
    assert len(tokens) == 20


def test_renew_after_being_displaced_raises_lease_lost_and_leaves_the_new_lease(lease_path: Path) -> None:
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0)
    other = write_lease(lease_path, Owner("other-node", 4321, "b", "99"), token="e" * 32)
    with pytest.raises(LeaseLost, match=r"lost the manager lease .* to host other-node, pid 4321, Slurm job 99"):
        lease.renew()
    assert lease_path.read_bytes() == other


def test_release_never_removes_another_managers_lease(lease_path: Path) -> None:
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0)
    other = write_lease(lease_path, Owner("other-node", 4321, "b"), token="e" * 32)
    assert lease.release() is False
    assert lease_path.read_bytes() == other
    assert os.listdir(lease_path.parent) == ["manager.lease"]


def test_renew_recreates_a_lease_that_vanished(lease_path: Path) -> None:
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0)
    lease_path.unlink()
    lease.renew()
    doc = orjson.loads(lease_path.read_bytes())
    assert doc["token"] == lease.holder.token and doc["beat"] == 1


def test_a_symlinked_lease_is_refused(lease_path: Path, tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("precious")
    lease_path.symlink_to(target)
    with pytest.raises(SpoolError, match="symbolic link"):
        Lease.acquire(lease_path, me(), interval=2.0, now=0.0)
    assert target.read_text() == "precious" and lease_path.is_symlink()


# -- a live holder is refused ----------------------------------------------------------------------------


def test_a_second_manager_is_refused_while_the_holder_renews(processes: Processes, lease_path: Path) -> None:
    holder = start_holder(processes, lease_path, job="4242")
    before = orjson.loads(lease_path.read_bytes())["token"]
    squeue = SqueueSays("RUNNING\n")
    with pytest.raises(ManagerBusy) as refused:
        Lease.acquire(lease_path, me(), interval=2.0, now=0.0, run=squeue)
    message = str(refused.value)
    for part in (f"host {socket.gethostname()}", f"pid {holder.pid}", "Slurm job 4242", "changed within the last",
                 f"fsq shutdown --spool {lease_path.parent}"):
        assert part in message, message
    assert squeue.calls == [["squeue", "-h", "-t", "all", "-j", "4242", "-o", "%T"]]
    assert orjson.loads(lease_path.read_bytes())["token"] == before, "the holder keeps its lease"
    assert holder.poll() is None


def test_a_foreign_holder_that_keeps_renewing_is_refused(processes: Processes, lease_path: Path) -> None:
    start_holder(processes, lease_path, host=FOREIGN, interval="0.1")
    with pytest.raises(ManagerBusy, match=f"host {FOREIGN}"):
        Lease.acquire(lease_path, me(), interval=2.0, now=0.0, stale_after=30.0)


# -- dead holders are taken over ----------------------------------------------------------------------------


def test_a_holder_killed_on_this_host_is_taken_over_at_once(processes: Processes, lease_path: Path) -> None:
    holder = start_holder(processes, lease_path)
    holder.kill()
    holder.wait()
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, sleep=never_sleep)
    assert f"pid {holder.pid} no longer runs on this host" in (lease.took_over or "")
    assert orjson.loads(lease_path.read_bytes())["token"] == lease.holder.token
    assert os.listdir(lease_path.parent) == ["manager.lease"], "the dead lease is not kept"


def test_a_zombie_holder_counts_as_dead(processes: Processes, lease_path: Path) -> None:
    holder = start_holder(processes, lease_path)
    os.kill(holder.pid, signal.SIGKILL)  # not reaped: it stays a zombie until the fixture collects it
    wait_until(lambda: Path(f"/proc/{holder.pid}/stat").read_text().rpartition(")")[2].split()[0] == "Z", 20)
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, sleep=never_sleep)
    assert f"pid {holder.pid} no longer runs" in (lease.took_over or "")


def test_a_foreign_holder_that_stops_renewing_is_taken_over_after_the_window(processes: Processes,
                                                                            lease_path: Path) -> None:
    holder = start_holder(processes, lease_path, host=FOREIGN, interval="0.1")
    wait_until(lambda: beats(processes, holder) >= 2, 20, lambda: processes.log_of(holder))
    holder.kill()  # its pid means nothing here: the host differs, so only watching can tell
    holder.wait()
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, stale_after=1.0)  # real clock, real sleep
    assert f"took over from host {FOREIGN}, pid {holder.pid}" in (lease.took_over or "")
    assert "did not change for" in (lease.took_over or "")


def test_the_default_window_is_three_of_the_holders_intervals_plus_five_seconds(lease_path: Path) -> None:
    write_lease(lease_path, Owner(FOREIGN, 1, "b"), interval=2.0)
    fake = FakeTime()
    lease = Lease.acquire(lease_path, me(), interval=0.5, now=0.0, clock=fake.clock, sleep=fake.sleep)
    assert lease.took_over is not None
    assert 11.0 <= fake.now <= 12.0, fake.sleeps  # 3 * 2 + 5, then at most one poll (1 s) more
    assert set(fake.sleeps) == {1.0}


def test_a_frozen_holder_is_taken_over_and_stops_when_it_wakes(processes: Processes, lease_path: Path) -> None:
    holder = processes.start([sys.executable, "-c", HOLDER, str(lease_path), "-", "manual", ""], cwd=REPO,
                             name="holder", stdin=subprocess.PIPE)
    assert holder.stdin is not None

    def output() -> str:
        return processes.log_of(holder)

    try:
        wait_until(lambda: "held" in output(), 30, output)
        holder.stdin.write(b"tick\n")
        holder.stdin.flush()
        wait_until(lambda: "beat 1" in output(), 30, output)
        # Alive (its pid runs here) but renewing no more: only the window can tell.
        lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, stale_after=0.5)
        assert "did not change" in (lease.took_over or "")
        holder.stdin.write(b"tick\n")  # it wakes up and tries to renew
        holder.stdin.flush()
        assert holder.wait(timeout=30) == 3, output()
        assert f"lost: this manager lost the manager lease {lease_path} to host {socket.gethostname()}, " \
               f"pid {os.getpid()}" in output()
        lease.renew()  # ours is intact
    finally:
        holder.stdin.close()  # the processes fixture kills and reaps it


@pytest.mark.parametrize(("answer", "verdict"), [
    (("COMPLETED\n", 0, ""), "its Slurm job 555 is COMPLETED"),
    (("CANCELLED\n", 0, ""), "its Slurm job 555 is CANCELLED"),
    (("PENDING\n", 0, ""), "its Slurm job 555 is PENDING"),
    (("", 1, "slurm_load_jobs error: Invalid job id specified\n"), "Slurm no longer knows its job 555"),
    (("RUNNING\n", 0, ""), None),
    (("COMPLETING\n", 0, ""), None),
    (("SUSPENDED\n", 0, ""), None),
    (("", 0, ""), None),
    (("", 1, "slurm_load_jobs error: Unable to contact slurm controller (connect failure)\n"), None),
    (None, None),
], ids=["completed", "cancelled", "pending", "invalid-id", "running", "completing", "suspended", "empty",
        "no-controller", "no-squeue"])
def test_squeue_proves_death_only_for_a_job_that_ended(lease_path: Path, answer: tuple[str, int, str] | None,
                                                       verdict: str | None) -> None:
    write_lease(lease_path, Owner(FOREIGN, 1, "b", "555"))
    run = SqueueSays(*answer) if answer else no_squeue
    fake = FakeTime()
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, clock=fake.clock, sleep=fake.sleep, run=run)
    if verdict:
        assert verdict in (lease.took_over or "") and fake.sleeps == [], "dead at once"
    else:
        assert "did not change" in (lease.took_over or "") and fake.sleeps, "no proof: watched"


def test_a_job_id_that_is_not_a_number_never_reaches_squeue(lease_path: Path) -> None:
    write_lease(lease_path, Owner(FOREIGN, 1, "b", "--help"))
    squeue = SqueueSays("COMPLETED\n")
    fake = FakeTime()
    Lease.acquire(lease_path, me(), interval=2.0, now=0.0, clock=fake.clock, sleep=fake.sleep, run=squeue)
    assert squeue.calls == []


# -- odd leases ------------------------------------------------------------------------------------------------


def test_an_unreadable_lease_is_watched_and_taken_over_if_it_never_changes(lease_path: Path) -> None:
    lease_path.write_bytes(b"")
    fake = FakeTime()
    lease = Lease.acquire(lease_path, me(), interval=1.0, now=0.0, clock=fake.clock, sleep=fake.sleep)
    assert "took over from an unreadable lease" in (lease.took_over or "")
    assert fake.now >= 3 * 1.0 + 5  # our own interval stands in for the unknown holder's


def test_an_unreadable_lease_that_changes_is_respected(lease_path: Path) -> None:
    lease_path.write_bytes(b"garbage 0")
    fake = FakeTime(lambda: lease_path.write_bytes(f"garbage {fake.now}".encode()))
    with pytest.raises(ManagerBusy, match="an unreadable lease"):
        Lease.acquire(lease_path, me(), interval=1.0, now=0.0, clock=fake.clock, sleep=fake.sleep)


def test_a_lease_released_while_watched_is_simply_acquired(lease_path: Path) -> None:
    write_lease(lease_path, Owner(FOREIGN, 1, "b"))
    fake = FakeTime(lambda: lease_path.unlink(missing_ok=True))
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, clock=fake.clock, sleep=fake.sleep)
    assert lease.took_over is None and fake.sleeps == [1.0]


def test_a_holder_that_renews_just_as_its_window_ends_is_not_displaced(lease_path: Path) -> None:
    owner = Owner(FOREIGN, 1, "b")
    write_lease(lease_path, owner)
    renewed: list[bytes] = []

    def clock() -> float:  # the holder renews right after our last look, before we move its lease
        if fake.now >= 11.0 and not renewed:
            renewed.append(write_lease(lease_path, owner, beat=1))
        return fake.now

    fake = FakeTime()
    with pytest.raises(ManagerBusy, match=f"host {FOREIGN}.*renewed or took the lease"):
        Lease.acquire(lease_path, me(), interval=2.0, now=0.0, clock=clock, sleep=fake.sleep)
    assert lease_path.read_bytes() == renewed[0]


def test_moving_aside_puts_back_a_lease_that_was_not_the_expected_one(lease_path: Path) -> None:
    fresh = write_lease(lease_path, Owner(FOREIGN, 1, "b"), token="f" * 32)
    aside = lease_path.with_name("manager.lease.stale.x")
    assert _move_aside(lease_path, aside, lambda data: False) is False
    assert lease_path.read_bytes() == fresh and not aside.exists() and os.stat(lease_path).st_nlink == 1
    assert _move_aside(lease_path.with_name("absent"), aside, lambda data: True) is None


def test_moving_aside_keeps_the_displaced_lease_if_yet_another_appeared(lease_path: Path) -> None:
    fresh = write_lease(lease_path, Owner(FOREIGN, 1, "b"), token="f" * 32)
    aside = lease_path.with_name("manager.lease.stale.x")

    def third_manager_arrives(data: bytes) -> bool:
        lease_path.write_bytes(b"third")  # created in the moment the name was free
        return False

    assert _move_aside(lease_path, aside, third_manager_arrives) is False
    assert lease_path.read_bytes() == b"third" and aside.read_bytes() == fresh


# -- races between real processes ------------------------------------------------------------------------------


def _racer(path: str, rounds: int, start: Any, end: Any, done: Any, results: Any) -> None:
    owner = Owner.this_process()
    for round_ in range(rounds):
        start.wait()
        try:
            lease = Lease.acquire(path, owner, interval=0.05, now=time.time(), stale_after=60.0, run=no_squeue)
        except ManagerBusy:
            results.put((round_, "busy"))
        else:
            results.put((round_, "won"))
            results.put((round_, _hold(lease, done)))
        end.wait()


def _hold(lease: Lease, done: Any) -> str:
    """Renew until the round is over, then once more: a winner that was displaced learns it here."""
    try:
        while not done.wait(0.02):
            lease.renew()
        lease.renew()
    except LeaseLost:
        return "lost"
    lease.release()
    return "kept"


@pytest.fixture
def racers(request: pytest.FixtureRequest, lease_path: Path) -> Iterator[tuple[int, int, Any, Any, Any, Any]]:
    count, rounds = request.param, 30
    start, end = MP.Barrier(count + 1, timeout=60), MP.Barrier(count + 1, timeout=60)
    done, results = MP.Event(), MP.Queue()
    procs = [MP.Process(target=_racer, args=(str(lease_path), rounds, start, end, done, results))
             for _ in range(count)]
    for proc in procs:
        proc.start()
    yield count, rounds, start, end, done, results
    for proc in procs:
        proc.join(60)
        if proc.is_alive():
            proc.kill()
            proc.join()
    assert [proc.exitcode for proc in procs] == [0] * count, "a racer failed (see its stderr)"


@pytest.mark.parametrize("racers", [2, 3], indirect=True, ids=["2-takers", "3-takers"])
def test_racing_takers_of_one_dead_lease_leave_exactly_one_holder(racers: tuple[Any, ...], lease_path: Path) -> None:
    count, rounds, start, end, done, results = racers
    host, boot = socket.gethostname(), read_boot_id()
    kept_aside = 0
    for round_ in range(rounds):
        write_lease(lease_path, Owner(host, dead_pid(), boot), interval=0.05, token=f"{round_:032x}")
        start.wait()
        seen: list[str] = []
        while seen.count("won") + seen.count("busy") < count:
            seen.append(results.get(timeout=60)[1])
        done.set()
        while seen.count("kept") + seen.count("lost") < seen.count("won"):
            seen.append(results.get(timeout=60)[1])
        end.wait()
        done.clear()
        assert seen.count("kept") == 1, f"round {round_}: {seen}"
        if count == 2:
            assert seen.count("won") == 1, f"round {round_}: {seen}"
        assert not lease_path.exists(), f"round {round_}: the winner released it"
        for name in os.listdir(lease_path.parent):  # a displaced winner's lease, kept as its record
            assert name.startswith("manager.lease.stale."), name
            os.unlink(lease_path.parent / name)
            kept_aside += 1
    assert count > 2 or kept_aside == 0


# -- the real squeue -----------------------------------------------------------------------------------------


@pytest.fixture
def slurm(monkeypatch: pytest.MonkeyPatch) -> None:
    if shutil.which("squeue") is None:
        pytest.skip("squeue is not installed")
    monkeypatch.setenv("SLURM_CONF", os.environ.get("SLURM_CONF", "/tmp/fsq-slurm/etc/slurm.conf"))
    probe = subprocess.run(["squeue", "-h"], capture_output=True, text=True, timeout=60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"no Slurm cluster answers (bash ../shared/slurm/up.sh starts one): {probe.stderr.strip()}")


def job_state(job_id: str) -> str:
    done = subprocess.run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"], capture_output=True, text=True,
                          check=False)
    return done.stdout.strip() or done.stderr.strip()


def test_the_real_squeue_tells_a_running_job_from_an_ended_one(slurm: None, lease_path: Path) -> None:
    submitted = subprocess.run(["sbatch", "--parsable", "-n1", "-o", "/dev/null", "--wrap", "sleep 300"],
                               capture_output=True, text=True, timeout=60, check=True)
    job = submitted.stdout.strip().split(";")[0]
    try:
        wait_until(lambda: job_state(job) == "RUNNING", 120, lambda: job_state(job))
        write_lease(lease_path, Owner(FOREIGN, 1, "b", job))
        fake = FakeTime()
        lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, clock=fake.clock, sleep=fake.sleep)
        assert "did not change" in (lease.took_over or "") and fake.sleeps, "a running job proves nothing"

        subprocess.run(["scancel", job], check=True, timeout=60)
        wait_until(lambda: job_state(job) not in ("RUNNING", "COMPLETING"), 120, lambda: job_state(job))
        write_lease(lease_path, Owner(FOREIGN, 1, "b", job))
        lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, sleep=never_sleep)
        assert f"Slurm job {job} is CANCELLED" in (lease.took_over or "") or \
               f"Slurm no longer knows its job {job}" in (lease.took_over or ""), lease.took_over
    finally:
        subprocess.run(["scancel", job], capture_output=True, timeout=60, check=False)
    write_lease(lease_path, Owner(FOREIGN, 1, "b", "987654321"))
    lease = Lease.acquire(lease_path, me(), interval=2.0, now=0.0, sleep=never_sleep)
    assert "Slurm no longer knows its job 987654321" in (lease.took_over or "")
