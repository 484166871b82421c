"""fsq doctor's judging, on real-looking /proc/mounts lines and made-up spool facts: pure, no disk.

The lines are in the form the Linux kernel writes them (options it shows only when not default, `lookupcache=pos`,
octal escapes in paths). What each level means for a user is in docs/cli.md (fsq doctor).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from fsqueue.doctor import (
    Entry,
    Observation,
    Probe,
    Space,
    judge,
    judge_manager,
    judge_space,
    render,
)
from fsqueue.mounts import (
    Level,
    Mount,
    guarantees,
    judge_filesystem,
    kind,
    mount_for,
    nfs_cache,
    parse_mounts,
)
from fsqueue.spool import Spool

NFS4_POSITIVE = ("fs1.cluster:/export/scratch /scratch nfs4 rw,relatime,vers=4.2,rsize=1048576,wsize=1048576,"
                 "namlen=255,hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.5,lookupcache=pos,"
                 "local_lock=none,addr=10.0.0.1 0 0")
NFS4_DEFAULT = ("fs1.cluster:/export/home /home nfs4 rw,relatime,vers=4.1,rsize=1048576,wsize=1048576,namlen=255,"
                "hard,proto=tcp,timeo=600,retrans=2,sec=sys,clientaddr=10.0.0.5,local_lock=none,addr=10.0.0.1 0 0")
NFS3_NOLOCK = ("fileserver:/proj /proj nfs rw,relatime,vers=3,rsize=65536,wsize=65536,namlen=255,hard,nolock,"
               "proto=tcp,timeo=600,retrans=2,sec=sys,mountaddr=10.1.0.2,mountvers=3,mountport=635,mountproto=udp,"
               "local_lock=all,addr=10.1.0.2 0 0")
NFS4_NOCTO = ("fs1:/export/x /x nfs4 rw,relatime,vers=4.2,hard,nocto,proto=tcp,acregmin=10,acregmax=120,"
              "acdirmin=10,acdirmax=120,sec=sys,local_lock=none,addr=10.0.0.1 0 0")
NFS3_NOAC = "fs1:/export/y /y nfs rw,sync,relatime,vers=3,hard,noac,proto=tcp,local_lock=none,addr=10.0.0.1 0 0"
NFS4_SOFT_FLOCK = "fs1:/export/z /z nfs4 rw,relatime,vers=4.2,soft,proto=tcp,local_lock=flock,addr=10.0.0.1 0 0"
LUSTRE_FLOCK = "10.10.0.1@o2ib:10.10.0.2@o2ib:/lustre1 /lustre lustre rw,flock,lazystatfs,encrypt 0 0"
LUSTRE_LOCALFLOCK = "10.10.0.1@o2ib:/work /work lustre rw,localflock,lazystatfs 0 0"
LUSTRE_NOFLOCK = "10.10.0.1@o2ib:/old /old lustre rw,lazystatfs 0 0"
GPFS = "gpfs1 /gpfs/fs1 gpfs rw,relatime 0 0"
EXT4 = "/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0"
TMPFS = "tmpfs /tmp tmpfs rw,nosuid,nodev,size=8388608k,inode64 0 0"
SPACES = r"fs1:/export/proj\040data /mnt/proj\040data nfs4 rw,relatime,vers=4.2,hard,local_lock=none 0 0"
SSHFS = "u@login:/home/u /mnt/remote fuse.sshfs rw,nosuid,nodev,relatime,user_id=1000,group_id=1000 0 0"
MOUNTS = "".join(f"{line}\n" for line in (EXT4, TMPFS, NFS4_DEFAULT, NFS4_POSITIVE, NFS3_NOLOCK, LUSTRE_FLOCK,
                                          GPFS, SPACES, SSHFS))


def one(line: str) -> Mount:
    [mount] = parse_mounts(line)
    return mount


def by_code(findings: list) -> dict[str, object]:
    return {finding.code: finding for finding in findings}


# -- /proc/mounts ---------------------------------------------------------------------------------------


def test_parse_mounts_reads_fields_options_and_octal_escapes() -> None:
    mounts = parse_mounts(MOUNTS + "garbage\n\n")
    assert len(mounts) == 9
    nfs = one(NFS4_POSITIVE)
    assert (nfs.device, nfs.point, nfs.fstype) == ("fs1.cluster:/export/scratch", "/scratch", "nfs4")
    assert nfs.options["vers"] == "4.2" and nfs.options["lookupcache"] == "pos" and nfs.has("hard")
    spaced = one(SPACES)
    assert spaced.point == "/mnt/proj data" and spaced.device == "fs1:/export/proj data"
    escaped = one(r"/dev/sdb1 /mnt/a\011tab\134back\012nl ext4 rw 0 0")
    assert escaped.point == "/mnt/a\ttab\\back\nnl"


@pytest.mark.parametrize("path, point", [
    ("/scratch/u/spool", "/scratch"),
    ("/scratch", "/scratch"),
    ("/scratch2/spool", "/"),  # a prefix of the name, not of the path
    ("/tmp/x", "/tmp"),
    ("/mnt/proj data/spool", "/mnt/proj data"),
    ("/home/u", "/home"),
    ("/opt", "/"),
])
def test_mount_for_takes_the_longest_mount_point_above_the_path(path: str, point: str) -> None:
    mount = mount_for(parse_mounts(MOUNTS), path)
    assert mount is not None and mount.point == point


def test_mount_for_prefers_the_later_of_two_mounts_on_one_point() -> None:
    over = "tmpfs /scratch tmpfs rw 0 0"
    assert mount_for(parse_mounts(f"{NFS4_POSITIVE}\n{over}"), "/scratch/s").fstype == "tmpfs"
    assert mount_for(parse_mounts(f"{over}\n{NFS4_POSITIVE}"), "/scratch/s").fstype == "nfs4"
    assert mount_for([], "/x") is None


def test_kinds() -> None:
    assert [kind(t) for t in ("ext4", "xfs", "tmpfs", "nfs", "nfs4", "lustre", "gpfs", "beegfs", "fuse.sshfs",
                              "overlay")] == ["local", "local", "local", "nfs", "nfs", "lustre", "gpfs", "beegfs",
                                              "other", "other"]


# -- NFS -----------------------------------------------------------------------------------------------


def test_nfs_cache_defaults_and_what_the_kernel_shows() -> None:
    default = nfs_cache(one(NFS4_DEFAULT).options)
    assert (default.acregmin, default.acregmax, default.acdirmin, default.acdirmax) == (3, 60, 30, 60)
    assert default.defaults and default.cto and default.lookupcache == "all"
    assert nfs_cache(one(NFS4_POSITIVE).options).lookupcache == "positive"
    tuned = nfs_cache(one(NFS4_NOCTO).options)
    assert (tuned.acdirmin, tuned.acdirmax, tuned.cto, tuned.defaults) == (10, 120, False, False)
    assert nfs_cache({"actimeo": "5"}).acdirmax == 5 and nfs_cache({"actimeo": "5", "acdirmax": "9"}).acdirmax == 9
    noac = nfs_cache(one(NFS3_NOAC).options)
    assert noac.noac and noac.acdirmax == 0 and nfs_cache({"lookupcache": "none"}).lookupcache == "none"


def test_nfs4_with_lookupcache_positive() -> None:
    found = by_code(judge_filesystem(one(NFS4_POSITIVE)))
    assert found["nfs.inotify"].level == Level.NOTE
    assert "--poll" in found["nfs.inotify"].title and "fsq manager --poll 1" in found["nfs.inotify"].detail
    assert found["nfs.lookupcache"].level == Level.OK and "lookupcache=positive" in found["nfs.lookupcache"].title
    assert found["nfs.vers"].level == Level.OK and "4.2" in found["nfs.vers"].title
    assert found["nfs.cto"].level == Level.OK
    assert found["nfs.locks"].level == Level.OK and "across nodes" in found["nfs.locks"].title
    assert found["nfs.actimeo"].level == Level.OK and "(the defaults)" in found["nfs.actimeo"].title
    assert "nfs.soft" not in found


def test_nfs4_defaults_remember_misses_and_fsqueue_revalidates() -> None:
    lookup = by_code(judge_filesystem(one(NFS4_DEFAULT)))["nfs.lookupcache"]
    assert lookup.level == Level.NOTE and "lookupcache=all" in lookup.title and "60 s" in lookup.title
    assert all(words in lookup.detail for words in ("spool.revalidate", ": < DIR", "lookupcache=positive"))


def test_nfs3_nolock_makes_flock_node_local() -> None:
    found = by_code(judge_filesystem(one(NFS3_NOLOCK)))
    assert found["nfs.vers"].level == Level.NOTE and "NLM" in found["nfs.vers"].title
    locks = found["nfs.locks"]
    assert locks.level == Level.WARNING and locks.title.startswith("nolock: flock is local to each node")
    assert "heartbeat" in locks.detail and "courtesy lock" in locks.detail


def test_nfs_nocto_is_a_warning_with_its_delay() -> None:
    found = by_code(judge_filesystem(one(NFS4_NOCTO)))
    assert found["nfs.cto"].level == Level.WARNING and "120 s" in found["nfs.cto"].detail
    assert found["nfs.actimeo"].level == Level.NOTE and "directories 10 to 120 s" in found["nfs.actimeo"].title
    assert "120 s old" in found["nfs.inotify"].detail


def test_nfs_noac_costs_and_soft_fails() -> None:
    assert by_code(judge_filesystem(one(NFS3_NOAC)))["nfs.actimeo"].title.startswith("noac")
    found = by_code(judge_filesystem(one(NFS4_SOFT_FLOCK)))
    assert found["nfs.soft"].level == Level.WARNING and "hard" in found["nfs.soft"].detail
    assert found["nfs.locks"].level == Level.WARNING and found["nfs.locks"].title.startswith("local_lock=flock")


def test_nfs_local_lock_posix_keeps_flock_across_nodes() -> None:
    mount = one("fs1:/e /e nfs4 rw,vers=4.2,hard,local_lock=posix 0 0")
    assert by_code(judge_filesystem(mount))["nfs.locks"].level == Level.OK


# -- Lustre, GPFS, local, other -----------------------------------------------------------------------


@pytest.mark.parametrize("line, level, words", [
    (LUSTRE_FLOCK, Level.OK, "coherent across clients"),
    (LUSTRE_LOCALFLOCK, Level.WARNING, "localflock: flock is local to each node"),
    (LUSTRE_NOFLOCK, Level.WARNING, "ENOSYS"),
])
def test_lustre_flock_modes(line: str, level: Level, words: str) -> None:
    found = by_code(judge_filesystem(one(line)))
    assert found["lustre.flock"].level == level and words in found["lustre.flock"].title
    assert found["lustre.scan"].level == Level.NOTE and "--poll" in found["lustre.scan"].detail


def test_gpfs_is_coherent_and_scanned() -> None:
    [finding] = judge_filesystem(one(GPFS))
    assert finding.level == Level.NOTE and "GPFS" in finding.title and "--poll" in finding.detail


@pytest.mark.parametrize("line, fstype", [(EXT4, "ext4"), (TMPFS, "tmpfs"), ("/dev/nvme0n1p2 /data xfs rw 0 0", "xfs")])
def test_local_filesystems_are_ok_and_instant(line: str, fstype: str) -> None:
    [finding] = judge_filesystem(one(line))
    assert finding.level == Level.OK and finding.title.startswith(f"local filesystem ({fstype})")
    assert "inotify" in finding.title and ("reboot" in finding.detail) == (fstype == "tmpfs")


@pytest.mark.parametrize("line", [SSHFS, "overlay / overlay rw,lowerdir=/a,upperdir=/b,workdir=/c 0 0",
                                  "//srv/share /mnt/s cifs rw,vers=3.0 0 0"])
def test_unknown_filesystems_are_a_note(line: str) -> None:
    [finding] = judge_filesystem(one(line))
    assert finding.level == Level.NOTE and finding.code == "fs.other" and "not been checked" in finding.title


def test_no_mount_is_a_note() -> None:
    [finding] = judge_filesystem(None)
    assert finding.level == Level.NOTE and "unknown" in finding.title


# -- guarantees ----------------------------------------------------------------------------------------


def test_guarantees_name_the_poll_and_what_inotify_does() -> None:
    local = " ".join(guarantees(one(EXT4), True, None))
    assert "at once (inotify)" in local and "1 s by default" in local and "keeps a second manager out" in local
    nfs = " ".join(guarantees(one(NFS4_DEFAULT), True, 0.5))
    assert "within the manager's --poll (0.5 s, as the manager runs now)" in nfs
    assert ": < DIR" in nfs and "60 s late" in nfs
    assert ": < DIR" not in " ".join(guarantees(one(NFS4_POSITIVE), True, None))
    assert "flock may not reach across nodes here; manager.lease" in " ".join(guarantees(one(NFS3_NOLOCK), True, None))
    assert "flock may not reach across nodes here; manager.lease" in " ".join(guarantees(one(LUSTRE_LOCALFLOCK), True, None))
    assert "Not atomic here" in guarantees(one(EXT4), False, None)[0]


# -- the spool -----------------------------------------------------------------------------------------

UID = 1000
DIRS = tuple(path.name for path in Spool(Path("/s/spool")).directories()[1:])  # [0] is the root


def entries(mode: int = 0o700, *, dev: int = 7, uid: int = UID, **special: dict) -> tuple[Entry, ...]:
    """The root and its nine directories, with `special` overriding fields of one ('' is the root)."""
    made = []
    for name in ("", *DIRS):
        fields = {"path": f"/s/spool/{name}".rstrip("/"), "exists": True, "is_dir": True, "uid": uid, "gid": 100,
                  "mode": mode, "dev": dev, **special.get(name or "root", {})}
        made.append(Entry(**fields))
    return tuple(made)


def observe(**changes: object) -> Observation:
    fields = {"spool": "/s/spool", "exists": True, "checked": "/s/spool", "uid": UID, "mount": one(EXT4),
              "entries": entries(), "space": Space(100 << 30, 200 << 30, 10**6, 2 * 10**6, False),
              "joblog_bytes": 1234, "status_files": 5, "manager": None, "probe": Probe("/s/spool/tmp", 0.002)}
    return Observation(**{**fields, **changes})


def levels(report: dict) -> dict[str, str]:
    return {finding["code"]: finding["level"] for finding in report["findings"]}


def test_a_private_spool_on_a_local_disk_is_all_ok() -> None:
    report = judge(observe(), now=1000.0)
    assert report["worst"] == "note"  # no manager yet
    assert levels(report) == {"fs.local": "ok", "spool.private": "ok", "spool.same-filesystem": "ok",
                              "space.free": "ok", "spool.size": "ok", "manager.none": "note", "probe.ok": "ok"}
    assert report["version"] == 1 and report["filesystem"]["kind"] == "local"
    text = render(report)
    assert "private: yours (uid 1000), mode 0700" in text and "I/O probe in /s/spool/tmp: 2.0 ms" in text
    assert "What fsqueue guarantees here:" in text and text.endswith("0 error(s), 0 warning(s)")


@pytest.mark.parametrize("where, mode, code, words", [
    ("root", 0o777, "spool.world-writable", "chmod o-w"),
    ("incoming", 0o703, "spool.world-writable", "chmod o-w"),
    ("status", 0o770, "spool.group-writable", "--group-shared"),
    ("root", 0o2770, "spool.group-writable", "chmod g-w"),
])
def test_writable_by_others_is_an_error(where: str, mode: int, code: str, words: str) -> None:
    report = judge(observe(entries=entries(**{where: {"mode": mode}})), now=0)
    assert report["worst"] == "error" and levels(report)[code] == "error"
    [finding] = [f for f in report["findings"] if f["code"] == code]
    path = "/s/spool" if where == "root" else f"/s/spool/{where}"
    assert finding["title"].endswith(path) and words in finding["detail"]


def test_several_directories_with_one_problem_make_one_finding() -> None:
    report = judge(observe(entries=entries(0o777)), now=0)
    [finding] = [f for f in report["findings"] if f["code"] == "spool.world-writable"]
    assert finding["title"].count("/s/spool") == 10


def test_foreign_owner_link_and_missing_directory() -> None:
    report = judge(observe(entries=entries(status={"uid": 0}, tmp={"is_dir": False}, output={"exists": False})), now=0)
    assert levels(report)["spool.owner"] == "error" and levels(report)["spool.not-directory"] == "error"
    assert levels(report)["spool.incomplete"] == "note"
    [owner] = [f for f in report["findings"] if f["code"] == "spool.owner"]
    assert owner["title"] == "not yours (uid 1000): /s/spool/status"


def test_directories_we_may_not_look_at_are_an_error() -> None:
    report = judge(observe(entries=entries(uid=0, incoming={"error": "Permission denied"},
                                           status={"error": "Permission denied"})), now=0)
    assert levels(report)["spool.unreadable"] == "error" and levels(report)["spool.owner"] == "error"
    [finding] = [f for f in report["findings"] if f["code"] == "spool.unreadable"]
    assert finding["title"] == "cannot look at: /s/spool/incoming, /s/spool/status"


def test_group_shared_spool_is_ok_and_says_who_reads() -> None:
    report = judge(observe(entries=entries(0o2750)), now=0)
    [finding] = [f for f in report["findings"] if f["code"] == "spool.group-shared"]
    assert finding["level"] == "ok" and "mode 2750" in finding["title"] and "keep its group" in finding["detail"]
    without_setgid = judge(observe(entries=entries(0o750)), now=0)
    assert "chmod g+s" in next(f["detail"] for f in without_setgid["findings"] if f["code"] == "spool.group-shared")
    others = judge(observe(entries=entries(0o755)), now=0)
    assert levels(others)["spool.others-read"] == "note"


def test_tmp_on_another_filesystem_is_an_error() -> None:
    report = judge(observe(entries=entries(tmp={"dev": 99}),
                           probe=Probe("/s/spool/tmp", None, "rename: Invalid cross-device link")), now=0)
    assert levels(report)["spool.same-filesystem"] == "error" and levels(report)["probe.failed"] == "error"
    [finding] = [f for f in report["findings"] if f["code"] == "spool.same-filesystem"]
    assert finding["title"] == "on another filesystem than /s/spool: /s/spool/tmp" and "EXDEV" in finding["detail"]
    assert report["guarantees"][0].startswith("Not atomic here")


def test_no_spool_yet_looks_where_it_would_be_made() -> None:
    report = judge(observe(exists=False, checked="/s", entries=(), joblog_bytes=None, status_files=None,
                           probe=Probe("/s", 0.001)), now=0)
    assert levels(report) == {"fs.local": "ok", "spool.missing": "note", "space.free": "ok", "probe.ok": "ok"}
    assert report["exists"] is False and "fsq doctor made nothing" in render(report)
    cannot = judge(observe(exists=False, checked="/s", entries=(), can_create=False, probe=None), now=0)
    assert levels(cannot)["spool.cannot-create"] == "error" and levels(cannot)["probe.skipped"] == "note"


@pytest.mark.parametrize("space, level", [
    (Space(100 << 30, 200 << 30, 10**6, 2 * 10**6, False), "ok"),
    (Space(512 << 20, 200 << 30, 10**6, 2 * 10**6, False), "warning"),  # under 1 GiB
    (Space(4 << 30, 100 << 30, 10**6, 2 * 10**6, False), "warning"),  # under 5%
    (Space(100 << 30, 200 << 30, 9_999, 2 * 10**6, False), "warning"),  # under 10,000 inodes
    (Space(100 << 30, 200 << 30, 0, 0, False), "ok"),  # btrfs counts no inodes
    (Space(0, 200 << 30, 10**6, 2 * 10**6, False), "error"),
    (Space(100 << 30, 200 << 30, 10**6, 2 * 10**6, True), "error"),
])
def test_space_thresholds(space: Space, level: str) -> None:
    [finding] = judge_space(space)
    assert finding.level == level


def test_many_status_files_are_a_note() -> None:
    report = judge(observe(status_files=250_000, joblog_bytes=3 << 30), now=0)
    [finding] = [f for f in report["findings"] if f["code"] == "spool.size"]
    assert finding["level"] == "note" and finding["title"] == "joblog.tsv 3.0 GiB, 250,000 status files"


def test_manager_alive_stopped_and_stale_by_the_heartbeat() -> None:
    info = {"host": "n1", "pid": 42, "phase": "serving", "heartbeat": 1000.0, "interval": 2.0, "poll": 0.5}
    alive = judge_manager(info, now=1003.0)
    assert alive.level == Level.OK and alive.title == "manager serving on n1 pid 42, heartbeat 3.0 s ago"
    assert judge_manager(info, now=1012.0).code == "manager.stopped"  # older than 3 x 2 s + 5 s
    assert judge_manager({**info, "phase": "stopped"}, now=1001.0).code == "manager.stopped"
    assert "2.0 h ago" in judge_manager(info, now=1000.0 + 7200).title
    report = judge(observe(manager=info), now=1001.0)
    assert "0.5 s, as the manager runs now" in report["guarantees"][1]


def test_the_worst_finding_decides() -> None:
    assert judge(observe(entries=entries(0o700, tmp={"mode": 0o770})), now=0)["worst"] == "error"
    assert judge(observe(mount=one(NFS3_NOLOCK)), now=0)["worst"] == "warning"
