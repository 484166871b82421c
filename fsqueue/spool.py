"""The on-disk spool protocol, written once and used by the manager and by every client.

The public description is docs/spool.md; this docstring and that file change together.

Layout under the spool root (all names are made by fsqueue or checked against one grammar):

    incoming/NAME.json        drop box. Clients publish here; names starting with '.' or ending in
                              .part or .tmp are files still being written and are ignored (R9)
    incoming/.NAME.json.lock  courtesy lock (filelock) for writers that cannot rename: held while writing
    tmp/                      staging for `fsq submit` (same filesystem as incoming/); the manager never reads it
    claimed/NAME.json         files the manager has taken out of incoming/ by rename and is reading now
    accepted/NAME.json        accepted submissions, every job stamped with its id (the manager's input record;
                              its durable copy is in journal.jsonl until the manager's next start)
    rejected/STAMP-NAME       refused files, each with STAMP-NAME.reason beside it, never deleted
    receipts/NAME.json        per submission: the job ids it got, or why it was rejected
    status/ID.json            one status file per job, replaced atomically, with a rising `seq`
    output/ID.out, ID.err     default standard output and error of each job
    control/NAME.json         requests to the manager: cancel, shutdown (same publishing rules as incoming/)
    manager.json              the manager's heartbeat: who serves the spool and the counts per state
    joblog.tsv                one tab-separated line per ended attempt of a job (fsqueue.joblog), appended
    journal.jsonl             the manager's own record of every transition, written before it acts (fsqueue.journal)
    manager.lease             who serves the spool, renewed every heartbeat (fsqueue.lease); works across nodes
    manager.lock              held (filelock) by the manager that serves the spool on this node

Assumptions, from ../shared/research/shared-filesystems.md and docs/filesystems.md (measured on NFS by
tests/nfs): rename(2) within one filesystem is the one atomic step (R1); inotify does not see writes made
on other nodes (R6), so the manager's periodic scan is the truth; a listing is fresh (opening a directory
revalidates it), but an NFS client trusts a name it looked up, found or not, for 30-60 s, so every read of
a file that another node writes first revalidates its directory (revalidate(), read_json) and nothing
waits on exists(); flock may not work across nodes, so locks are a courtesy between cooperating writers
on one node, never a correctness rule.
Only the manager writes claimed/, accepted/, rejected/, receipts/, status/ and manager.json (R12).
Permissions: private (0700) by default; group-shared (2750, files for readers 0640) when asked. Nobody
but the owner may write into a spool, and the manager runs only files its own user wrote.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

import orjson

from fsqueue.errors import SpoolError

ENV_VAR = "FSQ_SPOOL"
MAX_SUBMISSION_BYTES = 16 * 1024 * 1024
SPOOL_MODE = 0o700
# A group-shared spool (Spool.create(group_shared=True), `--group-shared`): setgid, so that files keep
# the spool's group; the group may enter and read, and only the owner writes. Never group-writable: a
# member who could write into output/ or accepted/ could plant a link the manager writes through, or a
# record it would run at its next start (docs/spool.md, "Permissions and group-shared spools").
GROUP_SHARED_MODE = 0o2750

# Job ids: 9 base32 characters of milliseconds since the epoch, then 7 of randomness (Crockford's
# alphabet, lower case). Fixed width, so ids sort by creation time as plain strings.
ID_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# An iteration of a sweep is SWEEP_ID.INDEX (docs/job-format.md, "Sweeps").
JOB_ID_RE = re.compile(r"^[0-9a-hjkmnp-tv-z]{16}(?:\.(?:0|[1-9][0-9]{0,6}))?\Z")  # \Z: "$" also matches before "\n"
_TIME_DIGITS, _RANDOM_DIGITS = 9, 7

# Names of submission and control files: a word character first, then a short run of safe characters.
SUBMISSION_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=@,-]{0,199}\.json\Z")
LOCK_SUFFIX = ".lock"
STAGING_SUFFIXES = (".part", ".tmp")

_DIRS = ("incoming", "tmp", "claimed", "accepted", "rejected", "receipts", "status", "output", "control")


def _base32(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 32)
        digits.append(ID_ALPHABET[digit])
    return "".join(reversed(digits))


class IdMaker:
    """Makes job ids that rise strictly within one process, even within one millisecond."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> str:
        stamp = int(time.time() * 1000) << (5 * _RANDOM_DIGITS)
        candidate = stamp | secrets.randbits(5 * _RANDOM_DIGITS - 8)
        self._last = max(candidate, self._last + 1)
        return _base32(self._last, _TIME_DIGITS + _RANDOM_DIGITS)

    def many(self) -> Iterable[str]:
        while True:
            yield self()


def is_job_id(text: str) -> bool:
    return bool(JOB_ID_RE.match(text))


def is_submission_name(name: str) -> bool:
    return bool(SUBMISSION_RE.match(name)) and ".." not in name


@dataclass(frozen=True)
class Listing:
    """One names-only scan of a drop directory (no stat per entry, rule R20)."""

    candidates: tuple[str, ...]  # names to process, in name order
    locked: frozenset[str]  # names whose courtesy lock file exists


def atomic_write(path: str | os.PathLike[str], data: bytes, *, durable: bool = False,
                 sync_directory: bool = True, mode: int = 0o600) -> None:
    """Replace `path` with `data` in one rename, so readers see the old or the new file, never a mix.

    String paths throughout: status files go through here at every transition of every job.
    """
    path = os.fspath(path)
    directory, name = os.path.split(path)
    tmp = f"{directory}/.{name}.{os.getpid()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW
    try:
        fd = os.open(tmp, flags, mode)
    except FileExistsError:
        # Left by a writer of the same pid that died, or planted (a hard link to a file outside the
        # spool): removed, never written through.
        os.unlink(tmp)
        fd = os.open(tmp, flags, mode)
    try:
        try:
            if mode != 0o600:
                os.fchmod(fd, mode)  # past the umask (a user's 077 would keep a group-shared spool unreadable)
            write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, path)
    except BaseException:
        # A full disk must not fill up further with the partial copies of every failed try.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if durable and sync_directory:
        fsync_dir(Path(directory))


def write_all(fd: int, data: bytes) -> None:
    """os.write until all of `data` is written (a write may be short)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def revalidate(directory: Path) -> None:
    """Make this node's next lookups in `directory` ask the file server instead of its own cache.

    An NFS client trusts the names it has looked up in a directory, "no such file" included, for as
    long as it trusts its copy of the directory's attributes: 30 to 60 s with default mount options
    (acdirmin, acdirmax in nfs(5)). Until then a file that another node created stays invisible to
    open() and stat(), and a file it replaced by rename can be read in an old version (both measured
    by tests/nfs; docs/filesystems.md). Opening the directory makes the client fetch its attributes
    (close-to-open holds for directories too), and a directory that changed drops its cached names.
    One GETATTR on NFS; two system calls on a local filesystem.
    """
    try:
        os.close(os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
    except FileNotFoundError:
        pass  # then the file is not there either; the caller's own open says so


def _fchmod_nofollow(path: Path, mode: int, flags: int) -> None:
    """chmod without following a link planted in place of `path` (Linux has no lchmod)."""
    fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    # fsync(2): syncing a file does not sync its directory entry; a rename is durable only after this.
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def syncfs(fd: int) -> None:
    """syncfs(2) on the filesystem holding `fd`: every dirty page of it, written back and waited for.

    Python has no os.syncfs; where libc lacks it (not Linux), sync(2) does the same for every filesystem.
    """
    function = _libc_syncfs()
    if function is None:
        os.sync()
    elif function(fd) != 0:
        import ctypes

        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@functools.cache
def _libc_syncfs() -> Any:
    import ctypes  # here: only a starting manager needs it, and every client imports this module

    try:
        function = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    function.argtypes, function.restype = [ctypes.c_int], ctypes.c_int
    return function


class Unsafe(Exception):
    """A file in a drop directory that must not be read as a request; the message says why."""


class DirectoryProblem(StrEnum):
    """Why a directory of the spool is refused (Spool.check), as directory_problems finds it."""

    NOT_DIRECTORY = "not-directory"
    OTHER_FILESYSTEM = "other-filesystem"
    OWNER = "owner"
    WORLD_WRITABLE = "world-writable"
    GROUP_WRITABLE = "group-writable"


def directory_problems(*, is_dir: bool, mode: int, owner: int, uid: int, on_root_device: bool = True,
                       group_may_write: bool = False) -> list[DirectoryProblem]:
    """The rule of Spool.check, for one directory's lstat facts, in the order Spool.check reports them;
    also `fsq doctor`'s. A non-directory has that one problem; world-writable hides group-writable, and
    `group_may_write` lets a group-writable directory pass."""
    if not is_dir:
        return [DirectoryProblem.NOT_DIRECTORY]
    # rename(2) does not cross filesystems (EXDEV): nothing could be published or claimed.
    found = [] if on_root_device else [DirectoryProblem.OTHER_FILESYSTEM]
    if owner != uid:
        found.append(DirectoryProblem.OWNER)
    if mode & stat.S_IWOTH:
        found.append(DirectoryProblem.WORLD_WRITABLE)
    elif mode & stat.S_IWGRP and not group_may_write:
        found.append(DirectoryProblem.GROUP_WRITABLE)
    return found


_REFUSALS = {  # DirectoryProblem -> Spool.check's message
    DirectoryProblem.NOT_DIRECTORY: "{path} is not a directory (a link?): refusing to use this spool",
    DirectoryProblem.OTHER_FILESYSTEM: ("{path} is on another filesystem than {root}; keep the whole spool on one "
                                        "filesystem, with nothing mounted inside it (`fsq doctor` shows what is "
                                        "where)"),
    DirectoryProblem.OWNER: "{path} belongs to uid {owner}, not to you ({uid}): refusing to use it",
    DirectoryProblem.WORLD_WRITABLE: "{path} is writable by everyone; run `chmod o-w {path}` first",
    DirectoryProblem.GROUP_WRITABLE: (
        "{path} is writable by its group (gid {gid}), so others could plant files that the manager acts on; run "
        "`chmod g-w {path}`, or give --group-shared to make the spool group-shared (mode 2750: the group reads, "
        "only you write)"),
}


@dataclass(frozen=True)
class Spool:
    """A spool directory: where each file lives, and the protocol's operations on them.

    `group_shared`: the group may read what the manager writes for readers (status files, receipts,
    manager.json: mode 0640 instead of 0600). Spool.create sets it when the group can enter the root.
    """

    root: Path
    group_shared: bool = False

    # -- layout ----------------------------------------------------------------------------
    # The directories are cached: the manager joins names to them several times per job.
    @functools.cached_property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @functools.cached_property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @functools.cached_property
    def claimed(self) -> Path:
        return self.root / "claimed"

    @functools.cached_property
    def accepted(self) -> Path:
        return self.root / "accepted"

    @functools.cached_property
    def rejected(self) -> Path:
        return self.root / "rejected"

    @functools.cached_property
    def receipts(self) -> Path:
        return self.root / "receipts"

    @functools.cached_property
    def status_dir(self) -> Path:
        return self.root / "status"

    @functools.cached_property
    def output(self) -> Path:
        return self.root / "output"

    @functools.cached_property
    def control(self) -> Path:
        return self.root / "control"

    @property
    def manager_file(self) -> Path:
        return self.root / "manager.json"

    @property
    def manager_lock(self) -> Path:
        return self.root / "manager.lock"

    @property
    def joblog(self) -> Path:
        return self.root / "joblog.tsv"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"

    @property
    def manager_lease(self) -> Path:
        return self.root / "manager.lease"

    def status_path(self, job_id: str) -> Path:
        if not is_job_id(job_id):
            raise SpoolError(f"{job_id!r} is not a job id")
        return self.status_dir / f"{job_id}.json"

    # Strings, not Paths: the manager asks for these for every job it takes in or starts.
    def default_output(self, job_id: str, stream: str) -> str:
        return f"{self.output}/{job_id}.{'out' if stream == 'stdout' else 'err'}"

    def launch_log(self, job_id: str) -> str:
        """Where a launcher's own messages about the job go (srun's stderr)."""
        return f"{self.output}/{job_id}.launch"

    # -- creation and checks ------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike[str], group_shared: bool = False) -> Spool:
        """Make the spool (private, 0700) or open an existing one, and check that it is ours.

        `group_shared` makes the root and every directory 2750 (GROUP_SHARED_MODE), an existing
        spool's too: this also takes write access away from a group that had it.
        """
        path = Path(root).absolute()
        try:
            path.mkdir(mode=SPOOL_MODE, parents=True, exist_ok=True)
            cls(path).check_root()  # before making anything inside: the root may be a link elsewhere
            for name in _DIRS:
                (path / name).mkdir(mode=SPOOL_MODE, exist_ok=True)
            if group_shared:
                cls(path)._share_with_group()
        except OSError as error:
            raise SpoolError(f"cannot create the spool ({path}): {error.strerror}") from error
        spool = cls(path, group_shared=group_shared or cls(path).group_can_enter())
        spool.check()
        return spool

    def _share_with_group(self) -> None:
        self.check(allow_group_write=True)  # ours, no links, not world-writable: only then open it up
        for path in self.directories():
            _fchmod_nofollow(path, GROUP_SHARED_MODE, os.O_RDONLY | os.O_DIRECTORY)
        # The manager creates the joblog 0600 (fsqueue.joblog); an existing one keeps its mode.
        _fchmod_nofollow(self.joblog, 0o640, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NONBLOCK)

    def directories(self) -> tuple[Path, ...]:
        """The root and every directory fsqueue makes in it."""
        return (self.root, *(self.root / name for name in _DIRS))

    @classmethod
    def existing(cls, root: str | os.PathLike[str]) -> Spool:
        path = Path(root).absolute()
        if not (path / "incoming").is_dir():
            revalidate(path.parent)  # a spool made on another node may hide behind a cached miss
            revalidate(path)
        if not (path / "incoming").is_dir():
            raise SpoolError(f"no spool at {path}: start `fsq manager --spool {path}` or submit once to create it")
        return cls(path)

    def check_root(self) -> None:
        info = os.lstat(self.root)
        if not stat.S_ISDIR(info.st_mode):
            raise SpoolError(f"{self.root} is not a directory (a link?): refusing to use this spool")

    def check(self, *, allow_group_write: bool = False) -> None:
        """Refuse a spool whose directories are links, are not ours, or that others could write into.

        `allow_group_write` lets a group-writable directory pass (never a world-writable one); only
        for a caller that takes the group's write access away next (create with group_shared).
        """
        uid = os.geteuid()
        device: int | None = None
        for path in self.directories():
            info = os.lstat(path)
            device = info.st_dev if device is None else device  # the root comes first
            problems = directory_problems(is_dir=stat.S_ISDIR(info.st_mode), mode=info.st_mode, owner=info.st_uid,
                                          uid=uid, on_root_device=info.st_dev == device,
                                          group_may_write=allow_group_write)
            if problems:
                raise SpoolError(_REFUSALS[problems[0]].format(path=path, root=self.root, owner=info.st_uid, uid=uid,
                                                               gid=info.st_gid))

    def group_can_enter(self) -> bool:
        return bool(os.stat(self.root).st_mode & (stat.S_IXGRP | stat.S_IWGRP))

    @property
    def reader_mode(self) -> int:
        """Mode of the files the manager writes for readers: status files, receipts, manager.json."""
        return 0o640 if self.group_shared else 0o600

    # -- publishing (clients) ------------------------------------------------------------------
    def publish(self, directory: Path, name: str, data: bytes) -> Path:
        """Write to tmp/, fsync, rename into `directory` (rules R1, R2): readers never see a partial file."""
        if not is_submission_name(name):
            raise SpoolError(f"{name!r} is not a valid submission file name")
        staging = self.tmp / f"{name}.{os.getpid()}.{secrets.token_hex(4)}.part"
        target = directory / name
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            try:
                write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(staging, target)
        except BaseException:
            staging.unlink(missing_ok=True)  # nothing else would ever remove it from tmp/
            raise
        fsync_dir(directory)
        return target

    # -- scanning and claiming (manager) -------------------------------------------------------
    def scan(self, directory: Path) -> Listing:
        """List a drop directory by name only; dot-names (staging, locks, NFS silly renames) and
        *.part / *.tmp (files still being written, rule R9) are skipped."""
        try:
            with os.scandir(directory) as entries:
                names = [entry.name for entry in entries]
        except FileNotFoundError:
            return Listing((), frozenset())
        locks = {name[1 : -len(LOCK_SUFFIX)] for name in names if name.startswith(".") and name.endswith(LOCK_SUFFIX)}
        candidates = sorted(name for name in names if not name.startswith(".") and not name.endswith(STAGING_SUFFIXES))
        return Listing(tuple(candidates), frozenset(locks & set(candidates)))

    def claim(self, source: Path, name: str) -> bool:
        """Take a file out of a drop directory by rename into claimed/; False if another claimer was first."""
        # String paths here and below: each runs once or more per submission, and a pathlib join costs
        # more than the rename it names.
        try:
            os.rename(f"{source}/{name}", f"{self.claimed}/{name}")
        except FileNotFoundError:
            return False
        return True

    def read_request(self, path: str | Path) -> bytes:
        """Read a claimed file, refusing anything that another user owns or could have written."""
        return self._read_checked(path, MAX_SUBMISSION_BYTES)

    def read_accepted(self, name: str) -> bytes:
        """Read accepted/NAME with read_request's checks: the manager runs what it holds, so a link, a
        file another user owns or could have written, or one with a second name is refused. No size
        limit: stamping ids into a file makes it larger than the limit it was read under."""
        return self._read_checked(f"{self.accepted}/{name}", None)

    def _read_checked(self, path: str | Path, max_size: int | None) -> bytes:
        # Refuse by type before opening: opening a device node as root can act (a tape rewinds, a
        # watchdog arms), and a socket fails with ENXIO, which names no cause. fstat below re-checks.
        try:
            info = os.lstat(path)
        except OSError as error:
            raise Unsafe(f"it cannot be opened: {error.strerror}") from error
        if stat.S_ISLNK(info.st_mode):
            raise Unsafe("it is a symbolic link; links are never followed out of the spool")
        if not stat.S_ISREG(info.st_mode):
            raise Unsafe(f"it is not a regular file (mode {stat.filemode(info.st_mode)})")
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            if error.errno == errno.ELOOP:
                raise Unsafe("it is a symbolic link; links are never followed out of the spool") from error
            raise Unsafe(f"it cannot be opened: {error.strerror}") from error
        try:
            info = os.fstat(fd)
            # The group may write files of its own into a spool it cannot enter, not into one it can.
            _check_owned_file(info, group_may_write=lambda: not self.group_can_enter(), single_link=True,
                              max_size=max_size)
            return _read_all(fd, info.st_size, max_size)
        finally:
            os.close(fd)

    def read_parameter_file(self, path: str) -> str:
        """A sweep's parameter file, named by a job: its lines become arguments, so it must be the user's
        own and writable by nobody else, the group included (it lies outside the spool, in any directory).
        ValueError says why not, for the job's rejection."""
        info = os.stat(path)  # by type before opening, as read_request: opening a device can act
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"it is not a regular file (mode {stat.filemode(info.st_mode)})")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            info = os.fstat(fd)
            _check_owned_file(info, hint="; run `chmod go-w` on it")
            return _read_all(fd, info.st_size).decode()
        except Unsafe as error:
            raise ValueError(str(error)) from error
        finally:
            os.close(fd)

    def reject(self, claimed: str | Path, original_name: str, reason: str, *, receipt: bool = True) -> Path:
        """Move a refused file aside with a readable reason beside it; never delete it.

        `receipt=False` for a duplicate, whose name already has the receipt of the accepted original.
        """
        safe = original_name if is_submission_name(original_name) else _sanitize(original_name)
        stamp = time.strftime("%Y%m%dT%H%M%S") + f".{time.time_ns() % 10**9:09d}"
        target = self.rejected / f"{stamp}-{safe}"
        text = f"fsq: rejected {original_name!r}: {reason}\n"
        atomic_write(target.with_name(target.name + ".reason"), text.encode(), durable=True)
        # The receipt before the move: if it cannot be written (a full disk), the file is still in
        # claimed/ and the next try rejects it again, receipt and all. After the move, a failed receipt
        # would leave a retry with no file to read, and a receipt saying so.
        if receipt and is_submission_name(original_name):
            self.write_receipt(original_name, {"state": "REJECTED", "reason": reason, "file": str(target)})
        try:
            os.rename(claimed, target)
        except FileNotFoundError:
            pass  # already moved by an earlier, interrupted attempt; the reason file says why
        return target

    def accept(self, name: str, stamped: bytes, *, durable: bool = False) -> None:
        """Write an accepted submission with every job's id. Not fsynced: the manager's journal holds the
        same document and is the durable record (docs/reliability.md); the claimed copy stays until the
        journal has been synced (drop_claimed)."""
        atomic_write(f"{self.accepted}/{name}", stamped, durable=durable, sync_directory=False)

    def drop_claimed(self, name: str) -> None:
        """The claimed copy of a submission whose acceptance is durable: no longer needed."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{self.claimed}/{name}")

    def sync_accepted(self) -> None:
        """Make every accepted file written so far durable, before the journal records that hold them go.

        One syncfs(2) of the spool's filesystem instead of an fsync per file: after a manager was killed,
        thousands of accepted files may still be dirty, and syncfs flushes them in one pass. Then one fsync
        of accepted/ makes their names durable too.
        """
        fd = os.open(self.accepted, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            syncfs(fd)
            os.fsync(fd)
        finally:
            os.close(fd)

    def is_known_submission(self, name: str) -> bool:
        """Whether accepted/ has `name`; the caller revalidated accepted/ first (one GETATTR per batch)."""
        return os.path.lexists(f"{self.accepted}/{name}")

    def write_accepted_receipt(self, name: str, ids: Iterable[str]) -> None:
        self.write_receipt(name, accepted_receipt(ids))

    def write_receipt(self, name: str, document: dict[str, Any]) -> None:
        atomic_write(f"{self.receipts}/{name}", orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE),
                     mode=self.reader_mode)

    def read_receipt(self, name: str, *, fresh: bool = True) -> dict[str, Any] | None:
        return read_json(self.receipts / name, fresh=fresh)

    # -- status files ----------------------------------------------------------------------------
    def write_status(self, job_id: str, document: dict[str, Any]) -> None:
        # Not fsynced: status files are a view the manager can rewrite from its records.
        atomic_write(f"{self.root}/status/{job_id}.json", orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE),
                     mode=self.reader_mode)

    def read_status(self, job_id: str) -> dict[str, Any] | None:
        """The job's status as the file server has it now; None while the job has no status file."""
        return read_json(self.status_path(job_id))

    def read_statuses(self, job_ids: Iterable[str]) -> dict[str, dict[str, Any] | None]:
        """Several status files, each at least as new as the moment this call began.

        One revalidation of status/ for all of them, rather than one per file as read_status does.
        """
        job_ids = list(job_ids)
        if not job_ids:
            return {}  # nothing to read: no GETATTR either (recovery asks once per accepted file)
        revalidate(self.status_dir)
        return {job_id: read_json(self.status_path(job_id), fresh=False) for job_id in job_ids}

    def status_ids(self) -> list[str]:
        with os.scandir(self.status_dir) as entries:
            names = [entry.name[:-5] for entry in entries if entry.name.endswith(".json")]
        return sorted(name for name in names if is_job_id(name))

    # -- manager heartbeat -------------------------------------------------------------------------
    def write_manager_info(self, document: dict[str, Any]) -> None:
        atomic_write(self.manager_file, orjson.dumps(document, option=orjson.OPT_APPEND_NEWLINE), mode=self.reader_mode)

    def read_manager_info(self) -> dict[str, Any] | None:
        return read_json(self.manager_file)


def accepted_receipt(ids: Iterable[str]) -> dict[str, Any]:
    """receipts/NAME of an accepted submission: the ids of its jobs, in file order (docs/spool.md)."""
    return {"state": "ACCEPTED", "ids": list(ids)}


def heartbeat_window(interval: float) -> float:
    """How long a heartbeat renewed every `interval` seconds (manager.json, manager.lease) may stay
    unchanged before its writer counts as dead: 3 intervals plus 5 s, the slack for clocks of two nodes."""
    return 3 * interval + 5


def manager_alive(info: dict[str, Any], now: float) -> bool:
    """The heartbeat rule of docs/spool.md (manager.json): alive unless stopped or its heartbeat is older
    than heartbeat_window(interval), judged on the reader's clock `now`."""
    stale = now - float(info.get("heartbeat", 0)) > heartbeat_window(float(info.get("interval", 2)))
    return info.get("phase") != "stopped" and not stale


def read_bytes(path: Path, *, fresh: bool = True, nofollow: bool = False) -> bytes | None:
    """Read a whole file that another node may replace; None if it does not exist (yet).

    `fresh` revalidates the directory first, so that the answer is the file server's, not a name
    this node cached before another node wrote the file. False when the caller has just done it.
    `nofollow`: a symbolic link in its place fails with ELOOP instead of being followed.
    """
    if fresh:
        revalidate(path.parent)
    for _ in range(3):
        try:
            with open(path, "rb", opener=_open_nofollow if nofollow else None) as handle:
                return handle.read()
        except FileNotFoundError:
            return None
        except OSError as error:
            # ESTALE: the file was replaced under our handle on NFS; the next open sees the new one (R11).
            if error.errno != errno.ESTALE:
                raise
    return None


def _open_nofollow(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_NOFOLLOW)


def read_json(path: Path, *, fresh: bool = True) -> Any:
    """Read a whole JSON file written by atomic_write; None if it does not exist (yet). `fresh` as read_bytes."""
    data = read_bytes(path, fresh=fresh)
    return None if data is None else orjson.loads(data)


def _check_owned_file(info: os.stat_result, *, group_may_write: Callable[[], bool] = lambda: False,
                      single_link: bool = False, hint: str = "", max_size: int | None = MAX_SUBMISSION_BYTES) -> None:
    """Refuse a file the manager would act on that another user owns or could have written, or that is
    not a regular file or too big (the rule for job files, control files and parameter files).
    `group_may_write` is asked only about a group-writable file (it may stat the spool root);
    `single_link`: a file in the spool with a second name may be a file from outside it;
    `hint` ends the message about a file others could write."""
    if not stat.S_ISREG(info.st_mode):
        raise Unsafe(f"it is not a regular file (mode {stat.filemode(info.st_mode)})")
    if info.st_uid != os.geteuid():
        raise Unsafe(f"it belongs to uid {info.st_uid}, not to the manager's user ({os.geteuid()})")
    if single_link and info.st_nlink != 1:
        raise Unsafe(f"it has {info.st_nlink} hard links; it may be a file from outside the spool")
    if info.st_mode & stat.S_IWOTH or (info.st_mode & stat.S_IWGRP and not group_may_write()):
        raise Unsafe(f"other users could have written it (mode {stat.filemode(info.st_mode)}){hint}")
    if max_size is not None and info.st_size > max_size:
        raise Unsafe(f"it is {info.st_size} bytes; the limit is {max_size}")


def _read_all(fd: int, size_hint: int, max_size: int | None = MAX_SUBMISSION_BYTES) -> bytes:
    chunks: list[bytes] = []
    while True:
        chunk = os.read(fd, max(size_hint, 65536))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        if max_size is not None and sum(map(len, chunks)) > max_size:
            raise Unsafe(f"it grew past {max_size} bytes while being read")


def _sanitize(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.+=@,-]", "_", name).lstrip(".") or "unnamed"
    return cleaned[:100]
