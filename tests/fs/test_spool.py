"""The spool protocol on real directories: checks, publishing, claiming races, status files, rejection."""

from __future__ import annotations

import collections
import errno
import multiprocessing
import os
import stat
import time
from pathlib import Path

import orjson
import pytest

from fsqueue.errors import SpoolError
from fsqueue.spool import (
    MAX_SUBMISSION_BYTES,
    SPOOL_MODE,
    IdMaker,
    Spool,
    Unsafe,
    atomic_write,
    is_job_id,
    syncfs,
)

# Real processes, started fresh (no state inherited from the test process).
MP = multiprocessing.get_context("spawn")
PROCESS_TIMEOUT = 60.0


def _join_all(processes: list) -> None:
    for process in processes:
        process.join(PROCESS_TIMEOUT)
    alive = [p.pid for p in processes if p.is_alive()]
    for process in processes:
        if process.is_alive():
            process.kill()
            process.join()
    assert not alive, f"processes {alive} did not finish within {PROCESS_TIMEOUT} s"
    assert [p.exitcode for p in processes] == [0] * len(processes), "a child process failed (see its stderr)"


# -- creation and Spool.check -----------------------------------------------------------------------


def test_create_makes_every_directory_private(spool: Spool) -> None:
    for path in (spool.root, spool.incoming, spool.tmp, spool.claimed, spool.accepted, spool.rejected,
                 spool.receipts, spool.status_dir, spool.output, spool.control):
        info = os.lstat(path)
        assert stat.S_ISDIR(info.st_mode), path
        assert stat.S_IMODE(info.st_mode) == SPOOL_MODE, path
    assert Spool.create(spool.root) == spool  # opening it again is fine


def test_check_refuses_a_spool_that_is_a_symlink(tmp_path: Path) -> None:
    Spool.create(tmp_path / "real")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(SpoolError, match=r"link\?\): refusing"):
        Spool(tmp_path / "link").check()
    with pytest.raises(SpoolError, match="refusing"):
        Spool.create(tmp_path / "link")


def test_check_refuses_a_subdirectory_that_is_a_symlink(spool: Spool, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    spool.incoming.rmdir()
    spool.incoming.symlink_to(elsewhere)
    with pytest.raises(SpoolError, match=f"{spool.incoming} is not a directory"):
        spool.check()


@pytest.mark.parametrize("which", ["root", "incoming", "status"])
def test_check_refuses_a_directory_owned_by_someone_else(spool: Spool, nobody: int, which: str) -> None:
    path = spool.root if which == "root" else spool.root / which
    os.chown(path, nobody, -1)
    with pytest.raises(SpoolError, match=f"{path} belongs to uid {nobody}, not to you"):
        spool.check()


@pytest.mark.parametrize("which", ["root", "control"])
def test_check_refuses_a_world_writable_directory(spool: Spool, which: str) -> None:
    path = spool.root if which == "root" else spool.root / which
    path.chmod(0o777)
    with pytest.raises(SpoolError, match=f"{path} is writable by everyone; run `chmod o-w"):
        spool.check()
    with pytest.raises(SpoolError):
        Spool.create(spool.root)


# -- publishing -------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 10, 65536, 3 * 1024 * 1024 + 7])
def test_publish_is_complete_and_leaves_nothing_in_tmp(spool: Spool, size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    target = spool.publish(spool.incoming, "job.json", data)
    assert target == spool.incoming / "job.json"
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(spool.tmp) == []
    assert os.listdir(spool.incoming) == ["job.json"]


@pytest.mark.parametrize("name", ["../escape.json", "a/b.json", ".hidden.json", "job.txt", "a..b.json", "x\n.json"])
def test_publish_refuses_names_outside_the_grammar(spool: Spool, name: str) -> None:
    with pytest.raises(SpoolError, match="not a valid submission file name"):
        spool.publish(spool.incoming, name, b"{}")
    assert os.listdir(spool.tmp) == [] and os.listdir(spool.incoming) == []
    assert not (spool.root / "escape.json").exists()


def test_publish_that_fails_leaves_nothing_in_tmp(spool: Spool) -> None:
    with pytest.raises(FileNotFoundError):
        spool.publish(spool.root / "no-such-dir", "job.json", b"{}")
    assert os.listdir(spool.tmp) == []


def test_atomic_write_replaces_and_leaves_no_temporary(spool: Spool) -> None:
    path = spool.receipts / "a.json"
    atomic_write(path, b"one", durable=True)
    atomic_write(path, b"two" * 40000)
    assert path.read_bytes() == b"two" * 40000
    assert os.listdir(spool.receipts) == ["a.json"]


# -- scanning and claiming --------------------------------------------------------------------------


def test_scan_lists_names_only_skipping_dot_names(spool: Spool) -> None:
    for name in ("b.json", "a.json", ".a.json.lock", ".c.json.lock", ".nfs0001", ".x.json.part", "notes.txt"):
        (spool.incoming / name).write_bytes(b"")
    listing = spool.scan(spool.incoming)
    assert listing.candidates == ("a.json", "b.json", "notes.txt")
    assert listing.locked == {"a.json"}  # .c.json.lock has no c.json beside it
    assert spool.scan(spool.root / "missing").candidates == ()


def test_claim_moves_the_file_and_reports_a_lost_race(spool: Spool) -> None:
    (spool.incoming / "a.json").write_bytes(b"{}")
    assert spool.claim(spool.incoming, "a.json") and (spool.claimed / "a.json").is_file()
    assert (spool.claimed / "a.json").read_bytes() == b"{}"
    assert not spool.claim(spool.incoming, "a.json")  # already taken: a normal outcome


def _claimer(root: str, start: object, out: str) -> None:
    spool = Spool(Path(root))
    start.wait(PROCESS_TIMEOUT)  # type: ignore[attr-defined]
    got: list[str] = []
    lost = 0
    while names := spool.scan(spool.incoming).candidates:
        for name in names:
            if not spool.claim(spool.incoming, name):
                lost += 1
            else:
                got.append(name)
    Path(out).write_bytes(orjson.dumps({"got": got, "lost": lost}))


def test_racing_claimers_take_every_file_exactly_once(spool: Spool, tmp_path: Path) -> None:
    files, claimers = 500, 6
    names = [f"job-{index:04d}.json" for index in range(files)]
    for name in names:
        (spool.incoming / name).write_bytes(name.encode())
    start = MP.Barrier(claimers)
    outs = [tmp_path / f"claimer-{index}.json" for index in range(claimers)]
    processes = [MP.Process(target=_claimer, args=(str(spool.root), start, str(out))) for out in outs]
    for process in processes:
        process.start()
    _join_all(processes)
    results = [orjson.loads(out.read_bytes()) for out in outs]
    counts = collections.Counter(name for result in results for name in result["got"])
    assert sorted(counts) == names
    assert [name for name, count in counts.items() if count != 1] == []
    assert os.listdir(spool.incoming) == []
    assert sorted(os.listdir(spool.claimed)) == names
    assert all((spool.claimed / name).read_bytes() == name.encode() for name in names)


# -- reading claimed files --------------------------------------------------------------------------


def test_read_request_refuses_a_file_over_the_size_limit(spool: Spool) -> None:
    path = spool.claimed / "big.json"
    with open(path, "wb") as handle:
        handle.truncate(MAX_SUBMISSION_BYTES + 1)  # sparse: cheap to make
    with pytest.raises(Unsafe, match=f"it is {MAX_SUBMISSION_BYTES + 1} bytes; the limit is {MAX_SUBMISSION_BYTES}"):
        spool.read_request(path)
    with open(path, "r+b") as handle:
        handle.truncate(MAX_SUBMISSION_BYTES)
    assert len(spool.read_request(path)) == MAX_SUBMISSION_BYTES  # the limit itself is allowed


def test_read_request_group_writable_is_refused_only_when_the_group_can_enter(spool: Spool) -> None:
    path = spool.claimed / "g.json"
    path.write_bytes(b"{}")
    path.chmod(0o660)
    assert spool.read_request(path) == b"{}"  # root is 0700: nobody else can reach the file
    spool.root.chmod(0o750)
    with pytest.raises(Unsafe, match=r"other users could have written it \(mode -rw-rw----\)"):
        spool.read_request(path)


# -- rejection --------------------------------------------------------------------------------------


def test_reject_keeps_the_file_with_a_reason_and_a_receipt(spool: Spool) -> None:
    (spool.claimed / "a.json").write_bytes(b"junk")
    target = spool.reject(spool.claimed / "a.json", "a.json", "not valid JSON: because")
    assert target.parent == spool.rejected and target.name.endswith("-a.json")
    assert target.read_bytes() == b"junk"
    assert target.with_name(target.name + ".reason").read_text() == "fsq: rejected 'a.json': not valid JSON: because\n"
    assert spool.read_receipt("a.json") == {"state": "REJECTED", "reason": "not valid JSON: because",
                                            "file": str(target)}
    assert os.listdir(spool.claimed) == []


def test_reject_of_a_bad_name_sanitizes_it_and_writes_no_receipt(spool: Spool) -> None:
    name = "..\n\x1b[31mevil/../x"
    (spool.claimed / "x").write_bytes(b"junk")
    target = spool.reject(spool.claimed / "x", name, "the file name is not allowed")
    assert target.parent == spool.rejected
    assert all(char.isalnum() or char in "_.+=@,-" for char in target.name)
    assert repr(name) in target.with_name(target.name + ".reason").read_text()
    assert os.listdir(spool.receipts) == []


# -- status files -----------------------------------------------------------------------------------


def test_status_path_and_ids_accept_only_job_ids(spool: Spool) -> None:
    job_id = IdMaker()()
    assert is_job_id(job_id)
    spool.write_status(job_id, {"seq": 1})
    (spool.status_dir / "not-an-id.json").write_bytes(b"{}")
    (spool.status_dir / f".{job_id}.json.tmp").write_bytes(b"{")
    assert spool.status_ids() == [job_id]
    assert spool.read_status(job_id) == {"seq": 1}
    assert spool.read_status(IdMaker()()) is None
    with pytest.raises(SpoolError, match="is not a job id"):
        spool.status_path("../../etc/passwd")


def _status_size(seq: int) -> int:
    return (seq * 7919) % 60000  # sizes jump around, so a torn read could not look whole


def _status_reader(root: str, job_id: str, last: int, ready: object, out: str) -> None:
    spool = Spool(Path(root))
    reads, previous, decreases, bad = 0, -1, 0, []
    between: set[int] = set()  # versions other than the first and the last: seen while the writer wrote
    ready.set()  # type: ignore[attr-defined]
    deadline = time.monotonic() + PROCESS_TIMEOUT
    while previous != last and time.monotonic() < deadline:
        try:
            document = spool.read_status(job_id)
        except orjson.JSONDecodeError as error:
            bad.append(f"invalid JSON: {error}")
            continue
        reads += 1
        if document is None or len(document["pad"]) != _status_size(document["seq"]):
            bad.append(f"incomplete document: {str(document)[:80]}")
            continue
        decreases += document["seq"] < previous
        if 0 < document["seq"] < last:
            between.add(document["seq"])
        previous = document["seq"]
    Path(out).write_bytes(orjson.dumps({"reads": reads, "between": len(between), "last": previous,
                                        "decreases": decreases, "bad": bad[:5]}))


def test_status_readers_never_see_a_torn_file_and_seq_never_decreases(spool: Spool, tmp_path: Path) -> None:
    job_id, last = IdMaker()(), 2000
    spool.write_status(job_id, {"seq": 0, "pad": ""})
    ready, out = MP.Event(), tmp_path / "reader.json"
    reader = MP.Process(target=_status_reader, args=(str(spool.root), job_id, last, ready, str(out)))
    reader.start()
    assert ready.wait(PROCESS_TIMEOUT), "the reader process did not start"
    for seq in range(1, last + 1):
        spool.write_status(job_id, {"seq": seq, "state": "RUNNING", "pad": "x" * _status_size(seq)})
    _join_all([reader])
    result = orjson.loads(out.read_bytes())
    assert result["bad"] == []
    assert result["decreases"] == 0
    assert result["last"] == last  # the reader saw the final version, so it ran while we wrote
    assert result["between"] >= 1, "the reads overlapped the rewrites"
    assert os.listdir(spool.status_dir) == [f"{job_id}.json"]


def test_syncfs_flushes_the_filesystem_of_a_descriptor_and_says_why_it_cannot(spool: Spool) -> None:
    # What recovery calls before it drops the journal's acceptance records (docs/reliability.md).
    atomic_write(spool.accepted / "a.json", b"{}\n")
    spool.sync_accepted()
    fd = os.open(spool.accepted, os.O_RDONLY | os.O_DIRECTORY)
    os.close(fd)
    with pytest.raises(OSError) as raised:
        syncfs(fd)  # closed: EBADF comes back as an OSError, not as a silent 0
    assert raised.value.errno == errno.EBADF


def test_atomic_write_never_writes_through_a_name_planted_at_its_temporary_file(spool: Spool, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    os.link(outside, spool.status_dir / f".x.json.{os.getpid()}.tmp")  # a second name for a file outside
    atomic_write(spool.status_dir / "x.json", b"new")
    assert outside.read_bytes() == b"keep" and outside.stat().st_nlink == 1
    assert (spool.status_dir / "x.json").read_bytes() == b"new"
