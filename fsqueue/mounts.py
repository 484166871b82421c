"""What filesystem holds a path, from /proc/mounts, and what its type and mount options mean for fsqueue.

Pure: takes the text of /proc/mounts and returns findings (a level, a title, why and what to do) and
the guarantees that hold there. Used by `fsq doctor` (fsqueue.doctor). The rules come from
../shared/research/shared-filesystems.md (R13, R14, R26, R27), nfs(5), mount.lustre(8), inotify(7) and
what tests/nfs measured (docs/filesystems.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

LOCAL_TYPES = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "tmpfs", "ramfs", "zfs", "f2fs", "jfs", "bcachefs"})
NFS_TYPES = frozenset({"nfs", "nfs4"})
NFS_DEFAULTS = {"acregmin": 3.0, "acregmax": 60.0, "acdirmin": 30.0, "acdirmax": 60.0}  # nfs(5)


class Level(StrEnum):
    OK = "ok"
    NOTE = "note"
    WARNING = "warning"
    ERROR = "error"


RANK = {Level.OK: 0, Level.NOTE: 1, Level.WARNING: 2, Level.ERROR: 3}


@dataclass(frozen=True)
class Finding:
    level: Level
    code: str  # stable, for programs: "nfs.lookupcache", "spool.world-writable", ...
    title: str
    detail: str


@dataclass(frozen=True)
class Mount:
    device: str
    point: str
    fstype: str
    options: Mapping[str, str] = field(default_factory=dict)  # "rw" -> "", "vers" -> "4.2"

    def has(self, name: str) -> bool:
        return name in self.options


# -- /proc/mounts ----------------------------------------------------------------------------------------


def _unescape(text: str) -> str:
    # The kernel writes space, tab, newline and backslash in paths as \040, \011, \012, \134 (fstab(5)).
    return re.sub(r"\\([0-7]{3})", lambda match: chr(int(match.group(1), 8)), text)


def parse_options(text: str) -> dict[str, str]:
    pairs = (item.partition("=") for item in text.split(",") if item)
    return {name: value for name, _, value in pairs}


def parse_mounts(text: str) -> list[Mount]:
    """The lines of /proc/mounts (device, mount point, type, options, 0, 0); malformed lines are skipped."""
    mounts = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            mounts.append(Mount(_unescape(fields[0]), _unescape(fields[1]), fields[2], parse_options(fields[3])))
    return mounts


def mount_for(mounts: Iterable[Mount], path: str) -> Mount | None:
    """The mount that holds `path` (a real path): the longest mount point above it; the later of equals,
    since a later mount on the same point hides the earlier one."""
    best: Mount | None = None
    for mount in mounts:
        point = mount.point.rstrip("/") or "/"
        inside = path == point or path.startswith(point if point == "/" else point + "/")
        if inside and (best is None or len(point) >= len(best.point.rstrip("/") or "/")):
            best = mount
    return best


def kind(fstype: str) -> str:
    if fstype in LOCAL_TYPES:
        return "local"
    if fstype in NFS_TYPES:
        return "nfs"
    return fstype if fstype in ("lustre", "gpfs", "beegfs") else "other"


# -- judging the filesystem ------------------------------------------------------------------------------


def judge_filesystem(mount: Mount | None) -> list[Finding]:
    if mount is None:
        return [Finding(Level.NOTE, "fs.unknown", "filesystem unknown: no mount holds this path in /proc/mounts",
                        "fsq doctor cannot say what this filesystem guarantees; see docs/filesystems.md.")]
    judges: dict[str, Callable[[Mount], list[Finding]]] = {
        "local": _local, "nfs": judge_nfs, "lustre": judge_lustre, "gpfs": _gpfs, "beegfs": _beegfs}
    return judges.get(kind(mount.fstype), _other)(mount)


def _local(mount: Mount) -> list[Finding]:
    volatile = " tmpfs lives in memory: the spool is gone after a reboot." if mount.fstype in ("tmpfs", "ramfs") else ""
    return [Finding(Level.OK, "fs.local", f"local filesystem ({mount.fstype}): inotify sees every file at once",
                    "Only this machine sees the spool, so the manager's inotify watch wakes it for every file "
                    "as it arrives, and rename(2) is atomic. Clients on other nodes cannot reach it: to take "
                    f"jobs from other nodes, put the spool on the shared filesystem.{volatile}")]


@dataclass(frozen=True)
class NfsCache:
    """How long an NFS client trusts what it cached about files and directories, in seconds (nfs(5))."""

    acregmin: float
    acregmax: float
    acdirmin: float
    acdirmax: float
    noac: bool
    lookupcache: str  # all, positive or none
    cto: bool

    @property
    def defaults(self) -> bool:
        return not self.noac and all(getattr(self, name) == value for name, value in NFS_DEFAULTS.items())


def nfs_cache(options: Mapping[str, str]) -> NfsCache:
    """actimeo=N sets all four; /proc/mounts shows the four (only where not default) and never actimeo."""
    times = dict(NFS_DEFAULTS)
    if _number(options.get("actimeo")) is not None:
        times = dict.fromkeys(times, _number(options["actimeo"]))
    times.update({name: value for name in times if (value := _number(options.get(name))) is not None})
    noac = "noac" in options
    if noac:
        times = dict.fromkeys(times, 0.0)
    lookup = {"pos": "positive", "positive": "positive", "none": "none"}.get(options.get("lookupcache", ""), "all")
    return NfsCache(**times, noac=noac, lookupcache=lookup, cto="nocto" not in options)


def _number(text: str | None) -> float | None:
    try:
        return float(text) if text else None
    except ValueError:
        return None


def nfs_node_local_locks(options: Mapping[str, str]) -> bool:
    # nfs(5): with nolock, or local_lock=flock|all, flock() excludes only processes on the same client.
    return "nolock" in options or options.get("local_lock") in ("flock", "all")


def judge_nfs(mount: Mount) -> list[Finding]:
    cache = nfs_cache(mount.options)
    vers = mount.options.get("vers") or ("4" if mount.fstype == "nfs4" else "?")
    return [
        Finding(Level.NOTE, "nfs.inotify",
                f"NFS (vers {vers}): files from other nodes are found by the scan every --poll seconds",
                "inotify(7) sees only writes made through this machine's kernel, so the manager's watch wakes it "
                "early only for files written on its own node. Its scan every --poll seconds finds every file, and "
                "a listing is current at each scan (opening a directory asks the server, nfs(5)). Recommended: "
                f"`fsq manager --poll 1` (the default) while people wait on jobs, 2 to 5 for long unattended "
                f"runs; below 0.5 the scans cost the file server for little gain.{_poll_with_nocto(cache)}"),
        _nfs_version(vers), _nfs_cto(cache), _nfs_lookupcache(cache), _nfs_attribute_cache(cache),
        _nfs_locks(mount.options), *_nfs_soft(mount.options),
    ]


def _poll_with_nocto(cache: NfsCache) -> str:
    if cache.cto:
        return ""
    return (f" With nocto a listing itself can be {cache.acdirmax:g} s old, so a --poll much below that "
            "buys nothing.")


def _nfs_version(vers: str) -> Finding:
    if vers.startswith("3"):
        return Finding(Level.NOTE, "nfs.vers", "NFSv3: locks go through NLM",
                       "flock() is carried by the NLM protocol: rpc.statd must run on every client, or locking "
                       "fails. tests/nfs passes on NFSv3 with it (docs/filesystems.md).")
    return Finding(Level.OK, "nfs.vers", f"NFS version {vers}",
                   "NFSv4.1 and 4.2 are what tests/nfs measured fsqueue on (docs/filesystems.md).")


def _nfs_cto(cache: NfsCache) -> Finding:
    if cache.cto:
        return Finding(Level.OK, "nfs.cto", "close-to-open consistency on (cto, the default)",
                       "What a node wrote and closed is what another node reads when it opens the file, and "
                       "opening a directory makes the client ask the server (nfs(5)); fsqueue relies on both.")
    return Finding(Level.WARNING, "nfs.cto", "nocto: close-to-open consistency is off",
                   "With nocto the client may answer open() and directory listings from its cache (nfs(5), "
                   f"DATA AND METADATA COHERENCE): a reader on another node can miss a new file or read an old "
                   f"version for up to {cache.acdirmax:g} s (acdirmax), and fsqueue's revalidation (opening the "
                   "directory, spool.revalidate) no longer forces a fresh look. Remount without nocto.")


def _nfs_lookupcache(cache: NfsCache) -> Finding:
    if cache.lookupcache == "positive":
        return Finding(Level.OK, "nfs.lookupcache", "lookupcache=positive: a name not found is asked again",
                       "New files from other nodes are seen by open(), stat() and [ -e ] at once, by fsqueue and bash "
                       "alike. A file replaced by rename can still be read in an old version until its directory "
                       "is revalidated; fsqueue revalidates before it reads one (docs/filesystems.md).")
    if cache.lookupcache == "none":
        return Finding(Level.OK, "nfs.lookupcache", "lookupcache=none: every lookup asks the server",
                       "Every name is current, at one LOOKUP per open for every user of this mount.")
    return Finding(Level.NOTE, "nfs.lookupcache",
                   f"lookupcache=all (the default): a name not found stays missing for up to {cache.acdirmax:g} s",
                   "The client caches failed lookups too (nfs(5), Directory entry caching): a name this node "
                   "looked up before another node created it stays missing to open() and stat() until the "
                   f"directory's attributes expire ({cache.acdirmin:g} to {cache.acdirmax:g} s). fsqueue opens the "
                   "directory before each such read (spool.revalidate), so fsq status and fsq wait are current; a "
                   "bash script must open it first (`: < DIR`, docs/filesystems.md). lookupcache=positive spares "
                   "it that, at one LOOKUP per miss (R27).")


def _nfs_attribute_cache(cache: NfsCache) -> Finding:
    if cache.noac or cache.acdirmax == 0:
        return Finding(Level.NOTE, "nfs.actimeo", "noac or actimeo=0: no attribute caching",
                       "Every access is a GETATTR to the server, for every user of this mount, and with noac every "
                       "write is synchronous (nfs(5)). fsqueue does not need it: it revalidates where it must (R27).")
    title = (f"attribute cache: files {cache.acregmin:g} to {cache.acregmax:g} s, directories "
             f"{cache.acdirmin:g} to {cache.acdirmax:g} s{' (the defaults)' if cache.defaults else ''}")
    return Finding(Level.OK if cache.defaults else Level.NOTE, "nfs.actimeo", title,
                   "How long this node trusts what it cached about a file or directory without asking the server. "
                   "Listings and fsqueue's own reads are current; a script that tests a name without opening its "
                   f"directory can be up to {cache.acdirmax:g} s late. fsqueue works with the defaults (R27).")


def _nfs_locks(options: Mapping[str, str]) -> Finding:
    if not nfs_node_local_locks(options):
        return Finding(Level.OK, "nfs.locks",
                       f"flock reaches across nodes (local_lock={options.get('local_lock', 'none')})",
                       "manager.lock answers a second manager at once on any node (11 races of 11, docs/filesystems.md); "
                       "manager.lease keeps it out in any case (R13).")
    how = "nolock" if "nolock" in options else f"local_lock={options['local_lock']}"
    return Finding(Level.WARNING, "nfs.locks", f"{how}: flock is local to each node", _NODE_LOCAL_LOCKS)


_NODE_LOCAL_LOCKS = (
    "manager.lock then answers a second manager only on this node. On other nodes manager.lease keeps it out: "
    "created with link(2), renewed every heartbeat, taken over only from a holder proven dead (its pid gone, "
    "its Slurm job ended, or its lease unchanged for 3 heartbeats + 5 s), R13, R14. The courtesy lock of "
    "writers that write in place guards only writers on the manager's node; for the others the torn-file "
    "grace period does (docs/spool.md).")


def _nfs_soft(options: Mapping[str, str]) -> list[Finding]:
    if "soft" not in options and "softerr" not in options:
        return []
    return [Finding(Level.WARNING, "nfs.soft", "soft mount: operations fail when the server is slow",
                    "With soft or softerr a write, rename or fsync fails (EIO, ETIMEDOUT) after `retrans` retries "
                    "(nfs(5)): fsq submit then fails, and the manager stops on the error instead of waiting for "
                    "the server. Use hard (the default).")]


def judge_lustre(mount: Mount) -> list[Finding]:
    coherent = Finding(Level.NOTE, "lustre.scan",
                       "Lustre: coherent across clients; other nodes' files are found by the scan",
                       "Lustre's lock manager keeps metadata coherent, so there is no attribute-cache delay as on "
                       "NFS. inotify sees only this node's writes, so files from other nodes are found by the "
                       "manager's scan every --poll seconds (1 s by default; 2 to 5 for long runs spares the MDS). "
                       "Keep directories small: each scan lists incoming/ on the MDS (R19, R20).")
    if mount.has("flock"):
        lock = Finding(Level.OK, "lustre.flock", "flock: coherent across clients",
                       "manager.lock answers a second manager at once on any node (mount.lustre(8)); manager.lease "
                       "keeps it out in any case (R13).")
    elif mount.has("localflock"):
        lock = Finding(Level.WARNING, "lustre.flock", "localflock: flock is local to each node", _NODE_LOCAL_LOCKS)
    else:
        lock = Finding(Level.WARNING, "lustre.flock", "neither flock nor localflock: flock() fails with ENOSYS",
                       "Without either option flock() returns ENOSYS, Function not implemented (mount.lustre(8)). "
                       "filelock 3.30 and later then makes manager.lock a marker file (O_EXCL), seen on every node, "
                       "but a marker left by a manager killed on another node is never broken: remove "
                       "SPOOL/manager.lock by hand once that manager is gone. Older filelock cannot lock at all and "
                       "fsq manager stops. Ask for -o flock.")
    return [coherent, lock]


def _gpfs(mount: Mount) -> list[Finding]:
    return [Finding(Level.NOTE, "gpfs",
                    "GPFS (Storage Scale): coherent across nodes; other nodes' files are found by the scan",
                    "The token manager keeps metadata coherent. inotify sees only this node's writes (IBM's "
                    "clustered watch is not for users), so files from other nodes are found by the manager's "
                    "scan every --poll seconds. Whether flock excludes across nodes is reported both ways: run "
                    "two managers on two nodes once to see that one is refused (R14).")]


def _beegfs(mount: Mount) -> list[Finding]:
    return [Finding(Level.NOTE, "beegfs", "BeeGFS: flock is local to each node unless tuneUseGlobalFileLocks=true",
                    "That setting is in beegfs-client.conf, not in /proc/mounts: ask the administrators. inotify "
                    f"sees only this node's writes; files from other nodes are found by the scan. {_NODE_LOCAL_LOCKS}")]


def _other(mount: Mount) -> list[Finding]:
    return [Finding(Level.NOTE, "fs.other", f"{mount.fstype}: a filesystem fsqueue has not been checked on",
                    "fsqueue needs rename(2) to be atomic within the spool, O_CREAT|O_EXCL to be exclusive, and "
                    "what one node wrote and closed to be what another reads when it opens the file. The probe "
                    "below tries the first two from this node only; if other nodes submit, expect inotify to miss "
                    "their files and the scan (--poll) to find them.")]


# -- what fsqueue guarantees here ------------------------------------------------------------------------


def guarantees(mount: Mount | None, same_filesystem: bool, poll: float | None) -> list[str]:
    fs = kind(mount.fstype) if mount else "other"
    options = mount.options if mount else {}
    poll_text = f"{poll:g} s, as the manager runs now" if poll else "1 s by default"
    lines = ["Atomic: a submission is published by one rename(2), claimed by one rename, and every status file "
             "and manager.json is replaced by one rename: readers see a whole file or none."
             if same_filesystem else
             "Not atomic here: the spool spans filesystems, so rename(2) between its directories fails (EXDEV)."]
    if fs == "local":
        lines.append(f"Seen: a file submitted on this machine wakes the manager at once (inotify); the scan every "
                     f"--poll ({poll_text}) catches anything missed. Other nodes cannot see this filesystem.")
    else:
        lines.append(_seen_from_other_nodes(fs, options, poll_text))
    lines.append(_one_manager(fs, options))
    lines.append("Durable: fsq submit fsyncs the file and incoming/ before it returns, and the manager fsyncs "
                 "each acceptance in its journal before it answers; status files and manager.json are not "
                 "fsynced (the next manager rewrites them). Execution is at least once (docs/spool.md).")
    return lines


def _seen_from_other_nodes(fs: str, options: Mapping[str, str], poll_text: str) -> str:
    text = (f"Seen: a submission from another node is taken in within the manager's --poll ({poll_text}); one "
            "from the manager's own node at once (inotify, which does not cross nodes).")
    if fs != "nfs":
        return text + " Reads are coherent across nodes."
    cache = nfs_cache(options)
    if not cache.cto:
        return text + f" With nocto add up to {cache.acdirmax:g} s of attribute cache, for every reader."
    late = "" if cache.lookupcache != "all" else (
        f" A bash script on another node must open the directory first (`: < DIR`) or may be up to "
        f"{cache.acdirmax:g} s late.")
    return text + " fsq status and fsq wait on any node read what the manager wrote as soon as it is written." + late


def _one_manager(fs: str, options: Mapping[str, str]) -> str:
    local_locks = (fs == "nfs" and nfs_node_local_locks(options)) or (fs == "lustre" and "flock" not in options) \
        or fs in ("beegfs", "other")
    if local_locks:
        return ("One manager: flock may not reach across nodes here; manager.lease keeps a second manager out "
                "on every node (a new manager takes over a dead one's spool after at most 3 heartbeats + 5 s).")
    return ("One manager: manager.lease keeps a second manager out on every node; manager.lock (flock) "
            "answers at once.")
