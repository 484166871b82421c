"""The manager lease: at most one manager per spool, across nodes, without trusting flock (R13).

flock does not exclude across nodes on NFS with nolock or local_lock, nor on Lustre without -o flock
(R14). So one manager per spool rests on `manager.lease` in the spool root, renewed by its holder by
rewriting it. Content (JSON, see Holder): format version, host, pid, boot_id, slurm_job_id, started
(wall time, for people), token (random, one per holder), beat (rises at each renewal), interval.

Acquiring is an exclusive create that works on every NFS version (open(2), O_EXCL): write the content
to a unique file beside the lease and link(2) it to the lease name, which fails if the name exists.
link(2) BUGS: on NFS a retransmitted LINK whose first try succeeded reports an error, so after any
error the link count of our unique file decides (2: the lease is ours).

A lease that exists is judged, cheapest proof first:
 (a) same host, same boot (boot_id), and its pid is gone or a zombie: dead at once;
 (b) it names a Slurm job that squeue lists as ended, or no longer knows: dead at once;
 (c) otherwise it is watched: unchanged for `stale_after` seconds of our own monotonic clock (default
     3 * its interval + 5) means dead; any change means alive, and acquire raises ManagerBusy. The
     holder's wall clock and the file's mtime are never compared with ours (R24).
A dead lease is renamed aside and compared, byte for byte, with what was judged (a renewal in between
is a sign of life); a different lease is put back with link(2). The aside copy is then removed; it
is kept only when the put-back fails because yet another lease appeared, as the displaced one's record.
A job id names a job on one cluster only: for a spool shared by two clusters pass `run=lambda argv:
None`, which leaves rule (b) out.

Limits: a lease names a claim; it does not fence one. Three managers starting at one dead lease, or
a holder frozen past its window that wakes inside a renewal, can leave two managers that believe they
hold it; the one whose token is gone learns it at its next renew() (LeaseLost). So the manager must
renew every interval and stop at LeaseLost.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import orjson

from fsqueue.errors import LeaseLost, ManagerBusy, SpoolError
from fsqueue.spool import atomic_write, heartbeat_window, read_bytes, write_all

VERSION = 1
# squeue(1) states in which no process of the job runs any more (PENDING: requeued, its tasks were
# killed first). Any other state, or an answer we do not understand, proves nothing: then we watch.
SLURM_ENDED = frozenset({"BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL",
                         "OUT_OF_MEMORY", "PENDING", "PREEMPTED", "TIMEOUT"})
_ATTEMPTS = 10  # rounds of create / judge / take over before acquire gives up on a lease that keeps moving

Runner = Callable[[Sequence[str]], "subprocess.CompletedProcess[str] | None"]


def run_command(argv: Sequence[str]) -> subprocess.CompletedProcess[str] | None:
    """Run a status command; None (no verdict) if it is not installed or gives no answer within 30 s."""
    try:
        return subprocess.run(list(argv), capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None


def read_boot_id() -> str:
    """This boot's id: a pid names a process only within one boot of one host. '' where there is none."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


@dataclass(frozen=True)
class Owner:
    """Who holds, or wants, the lease: enough for another process to tell whether it still lives."""

    host: str
    pid: int
    boot_id: str
    slurm_job_id: str | None = None

    @classmethod
    def this_process(cls, slurm_job_id: str | None = None) -> Owner:
        return cls(socket.gethostname(), os.getpid(), read_boot_id(), slurm_job_id)

    def describe(self) -> str:
        return f"host {self.host}, pid {self.pid}, Slurm job {self.slurm_job_id or '-'}"


@dataclass(frozen=True)
class Holder:
    """The lease's content."""

    owner: Owner
    started: float
    token: str
    beat: int
    interval: float

    def dumps(self) -> bytes:
        document = {"fsqueue_lease": VERSION, **asdict(self.owner), "started": self.started, "token": self.token,
                    "beat": self.beat, "interval": self.interval}
        return orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE)

    @classmethod
    def loads(cls, data: bytes) -> Holder | None:
        """The holder a lease names; None if it is not a lease this fsqueue can read."""
        try:
            doc = orjson.loads(data)
            if doc["fsqueue_lease"] != VERSION:
                return None
            job = doc["slurm_job_id"]
            owner = Owner(str(doc["host"]), int(doc["pid"]), str(doc["boot_id"]), None if job is None else str(job))
            return cls(owner, float(doc["started"]), str(doc["token"]), int(doc["beat"]), float(doc["interval"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None


@dataclass(frozen=True)
class _Patience:
    """How acquire judges a holder that gives no proof of death: the caller's clock, sleep and squeue."""

    interval: float
    stale_after: float | None
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    run: Runner


class Lease:
    """The spool's lease, held by this process: renew() it every `interval` seconds, release() it at the end."""

    def __init__(self, path: Path, holder: Holder, took_over: str | None = None) -> None:
        self.path = path
        self.holder = holder
        self.took_over = took_over  # whose lease was taken over and why it was judged dead, for the log

    @classmethod
    def acquire(cls, path: str | os.PathLike[str], owner: Owner, *, interval: float, now: float,
                stale_after: float | None = None, clock: Callable[[], float] = time.monotonic,
                sleep: Callable[[float], None] = time.sleep, run: Runner = run_command) -> Lease:
        """Become the lease's holder, taking it over from a dead holder; ManagerBusy if it lives.

        Blocks up to `stale_after` seconds while it watches a holder that gives no other sign.
        """
        path = Path(path)
        mine = Holder(owner, now, secrets.token_hex(16), 0, interval)
        patience = _Patience(interval, stale_after, clock, sleep, run)
        for _ in range(_ATTEMPTS):
            if _create(path, mine):
                return cls(path, mine)
            seen = _read(path)
            if seen is None:
                continue  # gone between our create and our read: create again
            verdict = _judge(path, seen, owner, patience)
            if verdict is not None and _take_over(path, seen, mine):
                return cls(path, mine, verdict)
        raise ManagerBusy(f"the manager lease {path} changed hands {_ATTEMPTS} times while this manager tried "
                          f"to take it: another manager is starting; try again")

    def renew(self) -> None:
        """Rewrite the lease with beat + 1, if it still carries our token; LeaseLost if another's does."""
        following = replace(self.holder, beat=self.holder.beat + 1)
        data = _read(self.path)
        if data is None:  # removed by hand, or moved aside by a taker that put it back too late
            if not _create(self.path, following):
                raise LeaseLost(self._lost(_read(self.path)))
        elif _token(data) != self.holder.token:
            raise LeaseLost(self._lost(data))
        else:
            atomic_write(self.path, following.dumps(), durable=True, sync_directory=False)
        self.holder = following

    def release(self) -> bool:
        """Remove the lease if it is still ours; never another's. True if it was removed."""
        aside = self.path.with_name(f"{self.path.name}.released.{self.holder.token}")
        return bool(_move_aside(self.path, aside, lambda data: _token(data) == self.holder.token))

    def _lost(self, data: bytes | None) -> str:
        return (f"this manager lost the manager lease {self.path} to {_who(data)}, which judged it dead; "
                f"this manager stops (see `fsq status --spool {self.path.parent}` for the one that serves it)")


def _judge(path: Path, seen: bytes, me: Owner, patience: _Patience) -> str | None:
    """Why the holder of the lease `seen` is dead; None if the lease went away; ManagerBusy if it lives."""
    holder = Holder.loads(seen)
    reason = _dead_at_once(holder.owner, me, patience.run) if holder else None
    if reason is None:
        interval = holder.interval if holder else patience.interval
        window = patience.stale_after if patience.stale_after is not None else heartbeat_window(interval)
        reason = _watch(path, seen, window, min(max(interval / 2, 0.05), 1.0), patience)
    return None if reason is None else f"took over from {_who(seen)}: {reason}"


def _dead_at_once(holder: Owner, me: Owner, run: Runner) -> str | None:
    if holder.host == me.host and holder.boot_id and holder.boot_id == me.boot_id and not _pid_alive(holder.pid):
        return f"pid {holder.pid} no longer runs on this host"
    if holder.slurm_job_id:
        return _slurm_job_ended(holder.slurm_job_id, run)
    return None


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return True  # kill(2) would signal a process group; no proof either way
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; only its parent has not collected it yet
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[:1] != ["Z"]


def _slurm_job_ended(job_id: str, run: Runner) -> str | None:
    if not (job_id.isascii() and job_id.isdigit()):
        return None  # not a job id we would pass to squeue
    # -t all: without it squeue hides ended jobs, and an empty answer proves nothing (the job may be hidden
    # by PrivateData as well), so only a listed ended state or "Invalid job id" counts (measured, Slurm 22.05).
    result = run(["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"])
    if result is None:
        return None
    if result.returncode != 0:
        # squeue answers a job it has forgotten (ended more than MinJobAge ago) with "Invalid job id specified".
        known = "Invalid job id" not in result.stderr + result.stdout
        return None if known else f"Slurm no longer knows its job {job_id}"
    states = set(result.stdout.split())
    if states and states <= SLURM_ENDED:
        return f"its Slurm job {job_id} is {'/'.join(sorted(states))}"
    return None


def _watch(path: Path, seen: bytes, window: float, poll: float, patience: _Patience) -> str | None:
    """Watch the lease for `window` seconds of our clock: dead if it never changes (R24)."""
    start = last = patience.clock()
    while last - start < window:
        patience.sleep(poll)
        data = _read(path)
        now = patience.clock()
        if data is None:
            return None
        if data != seen:
            raise ManagerBusy(_busy(path, data, f"its lease changed within the last {now - last:.1f} s, as seen "
                                                f"from here"))
        last = now
    return f"its lease did not change for {last - start:.1f} s"


def _take_over(path: Path, seen: bytes, mine: Holder) -> bool:
    """Move the dead lease `seen` aside and create ours; False if it vanished first (the caller retries)."""
    now = _read(path)
    if now is not None and now != seen:  # cheap check first: it narrows the window of _move_aside
        raise ManagerBusy(_busy(path, now, "it renewed or took the lease while this manager judged it dead"))
    moved = _move_aside(path, path.with_name(f"{path.name}.stale.{mine.token}"), lambda data: data == seen)
    if moved is None:
        return False
    if moved and _create(path, mine):
        return True
    now = _read(path)
    raise ManagerBusy(_busy(path, now, "it took the lease at the moment this manager took it over"))


def _move_aside(path: Path, aside: Path, expected: Callable[[bytes], bool]) -> bool | None:
    """Rename the lease to `aside` and remove it if `expected`; else put it back. None if there was none.

    Renaming first means that of two managers moving one lease, only one gets it. A lease that was not
    the expected one is put back with link(2), which fails if yet another lease appeared meanwhile:
    then the aside copy is kept as the record of a displaced holder (who learns it at its next renew).
    """
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return None
    if expected(aside.read_bytes()):
        aside.unlink()
        return True
    if _link(aside, path):
        aside.unlink()
    return False


def _create(path: Path, holder: Holder) -> bool:
    """Create the lease with `holder` in it if there is none (the NFS-safe link recipe); False if there is."""
    temp = _temp(path, holder)
    try:
        return _link(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _link(source: Path, target: Path) -> bool:
    try:
        os.link(source, target)
    except OSError as error:
        # link(2) BUGS, open(2) O_EXCL: on NFS the reply to a retransmitted LINK can be an error although
        # the first try was carried out; the link count of our own unique file tells the truth.
        if os.stat(source).st_nlink == 2:
            return True
        if error.errno == errno.EEXIST:
            return False
        raise
    return True


def _temp(path: Path, holder: Holder) -> Path:
    """Write `holder` to a file beside the lease, unique to the holder, and fsync it."""
    temp = path.with_name(f".{path.name}.{holder.token}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        write_all(fd, holder.dumps())
        os.fsync(fd)  # so that a lease never exists without its content, even after a crash of this node
    finally:
        os.close(fd)
    return temp


def _read(path: Path) -> bytes | None:
    """The lease as the file server has it now (R11: another node may just have replaced it); None if absent."""
    try:
        return read_bytes(path, nofollow=True)
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise SpoolError(f"the manager lease {path} is a symbolic link: remove it and start again") from error
        raise


def _token(data: bytes) -> str | None:
    holder = Holder.loads(data)
    return holder.token if holder else None


def _who(data: bytes | None) -> str:
    if data is None:
        return "another manager"
    holder = Holder.loads(data)
    return holder.owner.describe() if holder else "an unreadable lease"


def _busy(path: Path, data: bytes | None, how: str) -> str:
    return (f"another manager serves {path.parent}: {_who(data)}; {how}; "
            f"stop it with `fsq shutdown --spool {path.parent}` first")
