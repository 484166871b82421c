"""`fsq doctor`: what holds a spool (filesystem, permissions, space, manager) and what fsqueue guarantees there.

`look` and `probe` are the only functions here that touch the disk; `judge` turns what they saw into
findings (with fsqueue.mounts for the filesystem), each with a level, a title and a sentence of why and
what to do, and `render` makes the report people read. fsq doctor never creates the spool: without one
it looks at the directory where the spool would be made.
"""

from __future__ import annotations

import errno
import os
import secrets
import stat
import textwrap
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from fsqueue.mounts import (
    RANK,
    Finding,
    Level,
    Mount,
    guarantees,
    judge_filesystem,
    kind,
    mount_for,
    parse_mounts,
)
from fsqueue.spool import (
    Spool,
    directory_problems,
    fsync_dir,
    manager_alive,
    read_json,
    revalidate,
    write_all,
)

FORMAT_VERSION = 1
MIN_FREE_BYTES = 1 << 30
MIN_FREE_FRACTION = 0.05
MIN_FREE_INODES = 10_000
MANY_FILES = 10_000  # R19: keep directories under about 10,000 entries on shared filesystems
PROBE_BYTES = 4096
WIDTH = 100  # of the report's lines
MOUNTS = Path("/proc/mounts")


@dataclass(frozen=True)
class Entry:
    """What lstat said about the spool root or one of its directories."""

    path: str
    exists: bool
    is_dir: bool = False
    uid: int = -1
    gid: int = -1
    mode: int = 0  # permission bits with setgid and sticky (stat.S_IMODE)
    dev: int = 0
    error: str | None = None  # why lstat failed, other than "no such file" (a colleague's private spool)


@dataclass(frozen=True)
class Space:
    free_bytes: int  # for unprivileged users (f_bavail)
    total_bytes: int
    free_inodes: int
    total_inodes: int  # 0 where the filesystem does not count them (btrfs)
    read_only: bool


@dataclass(frozen=True)
class Probe:
    where: str
    seconds: float | None  # create, write, fsync, rename, read back, unlink; None if it failed
    error: str | None = None


@dataclass(frozen=True)
class Observation:
    """Everything `look` saw; `judge` needs nothing else."""

    spool: str
    exists: bool
    checked: str  # the real path whose filesystem was examined: the spool, or where it would be made
    uid: int
    mount: Mount | None
    entries: tuple[Entry, ...] = ()  # the root first, then each directory fsqueue makes
    can_create: bool = True
    space: Space | None = None
    joblog_bytes: int | None = None
    status_files: int | None = None
    manager: dict[str, Any] | None = None
    probe: Probe | None = None


# -- judging the spool -----------------------------------------------------------------------------------


def judge_permissions(obs: Observation) -> list[Finding]:
    if not obs.exists:
        return [_missing(obs)]
    root = obs.entries[0]
    if not root.is_dir:
        return [Finding(Level.ERROR, "spool.not-directory", f"{root.path} is not a directory (a link?)",
                        "fsq refuses to use it: a spool's directories must not be links (docs/spool.md).")]
    found = [_entry_problems(entry, obs.uid) for entry in obs.entries]
    findings = [_problem(code, level, paths, obs.uid) for (code, level), paths in _by_problem(obs.entries, found).items()]
    return findings + ([] if found[0] else [_mode_summary(root, obs.uid)])


def _missing(obs: Observation) -> Finding:
    if not obs.can_create:
        return Finding(Level.ERROR, "spool.cannot-create",
                       f"no spool at {obs.spool}, and you cannot make it in {obs.checked}",
                       "fsq manager and fsq submit make the spool, which needs write access to the directory "
                       "above it. Choose a directory of your own, on the filesystem all nodes see.")
    return Finding(Level.NOTE, "spool.missing",
                   f"no spool at {obs.spool} yet; looked at {obs.checked}, where it would be made",
                   "fsq manager, fsq run and fsq submit make it, private (mode 0700), or group-shared with "
                   "--group-shared (2750). fsq doctor made nothing.")


def _by_problem(entries: tuple[Entry, ...], found: list[list[tuple[str, Level]]]) -> dict[tuple[str, Level], list[str]]:
    problems: dict[tuple[str, Level], list[str]] = {}
    for entry, entry_problems in zip(entries, found, strict=True):
        for problem in entry_problems:
            problems.setdefault(problem, []).append(entry.path)
    return problems


def _entry_problems(entry: Entry, uid: int) -> list[tuple[str, Level]]:
    if entry.error:
        return [("spool.unreadable", Level.ERROR)]
    if not entry.exists:
        return [("spool.incomplete", Level.NOTE)]
    # Spool.check's rule; the filesystem of each directory is judge_same_filesystem's finding.
    problems = directory_problems(is_dir=entry.is_dir, mode=entry.mode, owner=entry.uid, uid=uid)
    return [(f"spool.{problem}", Level.ERROR) for problem in problems]


_PROBLEM_TEXT = {  # code -> (title, why and what to do)
    "spool.incomplete": ("missing: {paths}", "fsq manager and fsq submit make what is missing."),
    "spool.unreadable": ("cannot look at: {paths}",
                         ("Permission denied: you cannot enter the directory above them. Only the spool's owner "
                          "can use a spool; run fsq doctor as that user.")),
    "spool.not-directory": ("not a directory (a link?): {paths}",
                            "fsq refuses a spool whose directories are links (docs/spool.md)."),
    "spool.owner": ("not yours (uid {uid}): {paths}",
                    ("fsq refuses a spool it does not own: the manager must never run a file another user could "
                     "have written.")),
    "spool.world-writable": ("writable by everyone: {paths}",
                             ("Anyone could drop, replace or link files there, and fsq refuses it. Run `chmod o-w` "
                              "on them, then check that nothing inside belongs to another user.")),
    "spool.group-writable": ("writable by the group: {paths}",
                             ("fsq refuses it: others could plant files the manager acts on. Run `chmod g-w` on "
                              "them, or give --group-shared to fsq manager or fsq submit, which makes the spool "
                              "2750 (the group reads, only you write).")),
}


def _problem(code: str, level: Level, paths: list[str], uid: int) -> Finding:
    title, detail = _PROBLEM_TEXT[code]
    return Finding(level, code, title.format(paths=", ".join(paths), uid=uid), detail)


def _mode_summary(root: Entry, uid: int) -> Finding:
    mode = root.mode
    if not mode & (stat.S_IRWXG | stat.S_IRWXO):
        return Finding(Level.OK, "spool.private", f"private: yours (uid {uid}), mode {mode:04o}",
                       "Only you can enter the spool; the manager runs only files you wrote.")
    if mode & stat.S_IRWXO:
        return Finding(Level.NOTE, "spool.others-read", f"others may enter the spool (mode {mode:04o})",
                       "Everyone on the machine can list it and read job output (mode 0644 less the umask). "
                       "`chmod o-rwx` the spool and its directories to keep them out.")
    keeps = ("files made in it keep its group" if mode & stat.S_ISGID
             else "without the setgid bit, files keep the group of whoever makes them (`chmod g+s`)")
    return Finding(Level.OK, "spool.group-shared", f"group-shared with gid {root.gid} (mode {mode:04o})",
                   f"The group reads status files, receipts, manager.json and output; only you write; {keeps}. "
                   "Submissions from other users are refused (docs/spool.md).")


def judge_same_filesystem(entries: tuple[Entry, ...]) -> list[Finding]:
    present = [entry for entry in entries if entry.exists and entry.is_dir]
    if len(present) < 2:
        return []
    # Compared with the first directory present: the root, unless it is missing.
    elsewhere = [entry.path for entry in present[1:] if entry.dev != present[0].dev]
    if not elsewhere:
        return [Finding(Level.OK, "spool.same-filesystem",
                        "one filesystem: rename between the spool's directories is atomic",
                        "Publishing (tmp/ to incoming/), claiming and rejecting are renames between directories.")]
    return [Finding(Level.ERROR, "spool.same-filesystem",
                    f"on another filesystem than {present[0].path}: {', '.join(elsewhere)}",
                    "fsqueue publishes from tmp/ into incoming/ and claims from incoming/ by rename(2), which does "
                    "not cross filesystems (EXDEV): submissions and claims fail. Keep the whole spool on one "
                    "filesystem, with nothing mounted inside it.")]


def judge_space(space: Space | None) -> list[Finding]:
    if space is None:
        return []
    if space.read_only:
        return [Finding(Level.ERROR, "space.read-only", "mounted read-only", "Nothing can be submitted or recorded.")]
    low_bytes = space.free_bytes < MIN_FREE_BYTES or space.free_bytes < MIN_FREE_FRACTION * space.total_bytes
    low_inodes = space.total_inodes > 0 and (space.free_inodes < MIN_FREE_INODES
                                             or space.free_inodes < MIN_FREE_FRACTION * space.total_inodes)
    inodes = f", {space.free_inodes:,} of {space.total_inodes:,} inodes free" if space.total_inodes else ""
    title = f"{_size(space.free_bytes)} free of {_size(space.total_bytes)}{inodes}"
    if space.free_bytes == 0 or (space.total_inodes and space.free_inodes == 0):
        return [Finding(Level.ERROR, "space.full", title, "Nothing can be submitted or recorded until space is freed.")]
    level = Level.WARNING if low_bytes or low_inodes else Level.OK
    return [Finding(level, "space.free", title,
                    f"fsq doctor warns under {_size(MIN_FREE_BYTES)} or 5% free, or {MIN_FREE_INODES:,} inodes: "
                    "every job adds a status file and its output files. Quotas (`quota -s`, `lfs quota`) are not "
                    "seen here.")]


def judge_files(joblog_bytes: int | None, status_files: int | None) -> list[Finding]:
    if joblog_bytes is None and status_files is None:
        return []
    parts = [f"joblog.tsv {_size(joblog_bytes)}" if joblog_bytes is not None else "no joblog.tsv yet",
             f"{status_files or 0:,} status files"]
    many = (status_files or 0) > MANY_FILES
    return [Finding(Level.NOTE if many else Level.OK, "spool.size", ", ".join(parts),
                    "fsq list, fsq report and a starting manager read every status file; above about "
                    f"{MANY_FILES:,} files per directory shared filesystems slow down (R19): start a new spool "
                    "for each campaign." if many else "Sizes of what the manager keeps.")]


def judge_manager(info: dict[str, Any] | None, now: float) -> Finding:
    if not info:
        return Finding(Level.NOTE, "manager.none", "no manager has served this spool yet",
                       "Start one with `fsq manager`; submissions wait in incoming/ until then.")
    beat = float(info.get("heartbeat", 0))
    age = max(0.0, now - beat)
    who = f"{info.get('host', '?')} pid {info.get('pid', '?')}"
    if manager_alive(info, now):  # the rule of fsq status
        return Finding(Level.OK, "manager.alive", f"manager {info.get('phase')} on {who}, heartbeat {age:.1f} s ago",
                       f"It scans the spool every {_seconds(info.get('poll'))}.")
    return Finding(Level.NOTE, "manager.stopped",
                   f"no manager running; the last was on {who}, heartbeat {_age(age)} ago",
                   "Submissions wait in incoming/ until `fsq manager` serves the spool again.")


def judge_probe(result: Probe | None) -> list[Finding]:
    if result is None:
        return [Finding(Level.NOTE, "probe.skipped", "I/O probe skipped: nowhere to write",
                        "The probe writes only in the spool's tmp/ or, without a spool, where it would be made.")]
    if result.error:
        return [Finding(Level.ERROR, "probe.failed", f"I/O probe failed in {result.where}: {result.error}",
                        "fsqueue publishes every file this way: create, write, fsync, rename into place.")]
    return [Finding(Level.OK, "probe.ok", f"I/O probe in {result.where}: {1000 * (result.seconds or 0):.1f} ms",
                    "Created a file exclusively, wrote it, fsynced it, renamed it into place, read it back and "
                    "removed it (the figure is for information; it is not judged).")]


# -- the report ------------------------------------------------------------------------------------------


def judge(obs: Observation, now: float) -> dict[str, Any]:
    """The whole report, as JSON-ready data (`fsq doctor --json`)."""
    same_filesystem = judge_same_filesystem(obs.entries)
    manager = judge_manager(obs.manager, now) if obs.exists else None
    findings = [*judge_filesystem(obs.mount), *judge_permissions(obs), *same_filesystem,
                *judge_space(obs.space), *judge_files(obs.joblog_bytes, obs.status_files),
                *([manager] if manager is not None else []), *judge_probe(obs.probe)]
    same = all(f.level is not Level.ERROR for f in same_filesystem)  # none (fewer than two directories) or OK
    alive = manager is not None and manager.code == "manager.alive"
    poll = (obs.manager or {}).get("poll") if alive else None
    worst = max((f.level for f in findings), key=RANK.__getitem__, default=Level.OK)
    return {
        "version": FORMAT_VERSION, "spool": obs.spool, "exists": obs.exists, "checked": obs.checked,
        "filesystem": _mount_doc(obs.mount), "worst": worst.value,
        "findings": [{**asdict(f), "level": f.level.value} for f in findings],
        "space": asdict(obs.space) if obs.space else None,
        "probe": asdict(obs.probe) if obs.probe else None,
        "guarantees": guarantees(obs.mount, same, float(poll) if isinstance(poll, int | float) else None),
    }


def _mount_doc(mount: Mount | None) -> dict[str, Any] | None:
    if mount is None:
        return None
    return {"type": mount.fstype, "kind": kind(mount.fstype), "mount_point": mount.point, "device": mount.device,
            "options": dict(mount.options)}


def render(report: dict[str, Any]) -> str:
    """The report for people: what holds the spool, one block per finding, then the guarantees."""
    fs = report["filesystem"]
    where = (f"{fs['type']} on {fs['mount_point']} from {fs['device']}" if fs else "unknown")
    missing = "" if report["exists"] else f" (no spool yet; looked at {report['checked']})"
    lines = [f"fsq doctor: {report['spool']}{missing}",
             f"filesystem: {where}", ""]
    for finding in report["findings"]:
        lines.append(f"{finding['level']:<8} {finding['title']}")
        lines += textwrap.wrap(finding["detail"], WIDTH, initial_indent=" " * 9, subsequent_indent=" " * 9)
    lines += ["", "What fsqueue guarantees here:"]
    for text in report["guarantees"]:
        lines += textwrap.wrap(text, WIDTH, initial_indent="  - ", subsequent_indent="    ")
    counts = {level: sum(f["level"] == level for f in report["findings"]) for level in ("error", "warning")}
    lines += ["", f"{counts['error']} error(s), {counts['warning']} warning(s)"]
    return "\n".join(lines)


def _size(count: int | None) -> str:
    value = float(count or 0)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _seconds(value: Any) -> str:
    return f"{value:g} s" if isinstance(value, int | float) else "? s"


def _age(seconds: float) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= length:
            return f"{seconds / length:.1f} {unit}"
    return f"{seconds:.1f} s"


# -- looking (the only I/O) ------------------------------------------------------------------------------


def look(spool_path: str | os.PathLike[str], *, uid: int) -> Observation:
    """Look at the spool, or at where it would be made, without making it."""
    spool = Spool(Path(spool_path).absolute())
    _revalidate(spool.root.parent)  # on NFS, a spool made on another node may hide behind a cached miss
    _revalidate(spool.root)  # and the root's own attributes may be old; this also serves manager.json below
    root = _entry(spool.root)
    exists = root.exists and root.error is None  # as os.path.lexists: a root we may not lstat is not there
    checked = os.path.realpath(spool.root if exists else _nearest_directory(spool.root))
    mount = mount_for(parse_mounts(_read_text(MOUNTS)), checked)
    base = Observation(str(spool.root), exists, checked, uid, mount, space=_space(checked))
    if not exists:
        writable = os.access(checked, os.W_OK | os.X_OK)
        where = Path(checked)
        return replace(base, can_create=writable, probe=probe(where, where) if writable else None)
    entries = {path: root if path == spool.root else _entry(path) for path in spool.directories()}
    # Probe only where fsqueue itself would write: our own, real directories.
    usable = all(entries[path].is_dir and entries[path].uid == uid for path in (spool.root, spool.tmp, spool.incoming))
    return replace(base, entries=tuple(entries.values()), joblog_bytes=_file_size(spool.joblog),
                   status_files=_count(spool.status_dir),
                   manager=_manager_info(spool) if root.is_dir else None,
                   probe=probe(spool.tmp, spool.incoming) if usable else None)


def _revalidate(directory: Path) -> None:
    try:
        revalidate(directory)
    except OSError:
        pass  # may not open it: the lstat calls that follow say what we can see


def _read_text(path: Path) -> str:
    try:
        return path.read_text(errors="surrogateescape")
    except OSError:
        return ""  # not Linux, or /proc not mounted: the filesystem is reported unknown


def _nearest_directory(path: Path) -> Path:
    for candidate in path.parents:
        if os.path.isdir(candidate):  # False also where we may not look
            return candidate
    return Path("/")


def _entry(path: Path) -> Entry:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return Entry(str(path), False)
    except OSError as error:
        return Entry(str(path), True, error=error.strerror or str(error))
    return Entry(str(path), True, stat.S_ISDIR(info.st_mode), info.st_uid, info.st_gid, stat.S_IMODE(info.st_mode),
                 info.st_dev)


def _space(path: str) -> Space | None:
    try:
        vfs = os.statvfs(path)
    except OSError:
        return None
    return Space(vfs.f_bavail * vfs.f_frsize, vfs.f_blocks * vfs.f_frsize, vfs.f_favail, vfs.f_files,
                 bool(vfs.f_flag & os.ST_RDONLY))


def _file_size(path: Path) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _count(directory: Path) -> int | None:
    try:
        with os.scandir(directory) as entries:
            return sum(1 for entry in entries if not entry.name.startswith("."))  # names only (R20)
    except OSError:
        return None


def _manager_info(spool: Spool) -> dict[str, Any] | None:
    try:
        info = read_json(spool.manager_file, fresh=False)  # look revalidated the root
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def probe(staging: Path, target: Path) -> Probe:
    """Publish one file the way fsqueue does, read it back and remove it; how long that took.

    The name starts with a dot, so a manager scanning `target` skips it (R9).
    """
    name = f".fsq-doctor-{os.getpid()}-{secrets.token_hex(4)}"
    part, final = staging / f"{name}.part", target / name
    data = secrets.token_bytes(PROBE_BYTES)
    step = "create"
    start = time.perf_counter()
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            step = "write"
            write_all(fd, data)
            step = "fsync"
            os.fsync(fd)
        finally:
            os.close(fd)
        step = "exclusive create"
        _expect_exists(part)
        step = "rename"
        os.rename(part, final)
        fsync_dir(target)
        step = "read back"
        if final.read_bytes() != data:
            return Probe(str(staging), None, "read back: the data differs from what was written")
        step = "remove"
        final.unlink()
        return Probe(str(staging), time.perf_counter() - start)
    except OSError as error:
        return Probe(str(staging), None, f"{step}: {error.strerror or error}")
    finally:
        part.unlink(missing_ok=True)
        final.unlink(missing_ok=True)


def _expect_exists(path: Path) -> None:
    """A second exclusive create of the same name must fail (open(2): O_EXCL)."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        return
    os.close(fd)
    raise OSError(errno.EEXIST, "a second O_CREAT|O_EXCL of the same name succeeded")
