"""Private and group-shared spools on real directories: modes, Spool.check's refusals, and who may read or submit.

A group-shared spool is 2750 (setgid; the group enters and reads, only the owner writes); files the
manager writes for readers are 0640. The manager still runs only files its own user wrote
(docs/spool.md, "Permissions and group-shared spools"). CI runs as root: the hostile cases are built
by chown to `nobody`, and "a colleague" is a forked child that drops to nobody with the spool's group.
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import orjson
import pytest

from fsqueue.errors import SpoolError
from fsqueue.spool import GROUP_SHARED_MODE, SPOOL_MODE, IdMaker, Spool
from tests.conftest import FSQ, REPO
from tests.fs.conftest import as_user, needs_root
from tests.fs.test_intake import assert_rejected, make_intake, take

GOOD = b'{"exec": "/bin/true"}\n'
COLLEAGUES = 4242  # a group id for the spool's group; it needs no entry in /etc/group


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def directory_modes(spool: Spool) -> dict[str, int]:
    return {str(path.relative_to(spool.root.parent)): mode(path) for path in spool.directories()}


# -- creation ----------------------------------------------------------------------------------------


def test_default_create_is_private(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool")
    assert set(directory_modes(spool).values()) == {SPOOL_MODE} == {0o700}
    assert spool.group_shared is False and spool.reader_mode == 0o600


def test_group_shared_create_is_2750_with_setgid(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool", group_shared=True)
    assert set(directory_modes(spool).values()) == {GROUP_SHARED_MODE} == {0o2750}
    assert spool.group_shared is True and mode(spool.joblog) == 0o640
    assert Spool.create(spool.root) == spool  # opened again without the flag, it is still group-shared


def test_files_for_readers_are_group_readable_whatever_the_umask(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool", group_shared=True)
    job_id = IdMaker()()
    old = os.umask(0o077)
    try:
        spool.write_status(job_id, {"id": job_id, "state": "QUEUED"})
        spool.write_receipt("a.json", {"state": "ACCEPTED", "ids": [job_id]})
        spool.write_manager_info({"phase": "serving"})
        published = spool.publish(spool.incoming, "b.json", GOOD)
    finally:
        os.umask(old)
    assert [mode(p) for p in (spool.status_path(job_id), spool.receipts / "a.json", spool.manager_file)] == [0o640] * 3
    assert mode(published) == 0o600  # what clients publish stays private


def test_group_shared_makes_an_existing_private_spool_shared(tmp_path: Path) -> None:
    private = Spool.create(tmp_path / "spool")
    shared = Spool.create(private.root, group_shared=True)
    assert set(directory_modes(shared).values()) == {0o2750} and shared.group_shared


# -- Spool.check ------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["root", "incoming", "status"])
def test_check_refuses_a_group_writable_directory_naming_both_remedies(tmp_path: Path, which: str) -> None:
    spool = Spool.create(tmp_path / "spool")
    path = spool.root if which == "root" else spool.root / which
    path.chmod(0o770)
    expected = (f"{path} is writable by its group (gid {os.lstat(path).st_gid}), so others could plant files that "
                f"the manager acts on; run `chmod g-w {path}`, or give --group-shared")
    with pytest.raises(SpoolError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        spool.check()
    with pytest.raises(SpoolError, match="writable by its group"):
        Spool.create(spool.root)
    spool.check(allow_group_write=True)  # allowed: no error


def test_group_shared_takes_write_away_from_the_group(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool")
    for path in spool.directories():
        path.chmod(0o2770)
    shared = Spool.create(spool.root, group_shared=True)
    assert set(directory_modes(shared).values()) == {0o2750}
    shared.check()


@pytest.mark.parametrize("which", ["root", "control"])
def test_world_writable_is_refused_even_when_group_write_is_allowed(tmp_path: Path, which: str) -> None:
    spool = Spool.create(tmp_path / "spool")
    path = spool.root if which == "root" else spool.control
    path.chmod(0o777)
    with pytest.raises(SpoolError, match=f"{path} is writable by everyone"):
        spool.check(allow_group_write=True)
    with pytest.raises(SpoolError, match=f"{path} is writable by everyone"):
        Spool.create(spool.root, group_shared=True)
    assert mode(path) == 0o777  # not "fixed": someone may have put something there already


def test_group_shared_does_not_follow_a_directory_replaced_by_a_link(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    spool.output.rmdir()
    spool.output.symlink_to(elsewhere)
    with pytest.raises(SpoolError, match=f"{spool.output} is not a directory"):
        Spool.create(spool.root, group_shared=True)
    assert mode(elsewhere) == 0o700


def test_a_spool_owned_by_a_colleague_is_refused_even_group_shared(tmp_path: Path, nobody: int) -> None:
    needs_root()
    spool = Spool.create(tmp_path / "spool", group_shared=True)
    os.chown(spool.root, nobody, -1)
    with pytest.raises(SpoolError, match=f"{spool.root} belongs to uid {nobody}, not to you"):
        Spool.create(spool.root, group_shared=True)


# -- the manager's side: only the owner's files run ---------------------------------------------------


def test_a_submission_by_another_user_is_rejected_with_a_reason(tmp_path: Path, nobody: int) -> None:
    needs_root()
    spool = Spool.create(tmp_path / "spool", group_shared=True)
    (spool.incoming / "theirs.json").write_bytes(GOOD)
    os.chown(spool.incoming / "theirs.json", nobody, -1)
    (spool.incoming / "mine.json").write_bytes(GOOD)
    accepted = take(make_intake(spool))
    assert [submission.name for submission in accepted] == ["mine.json"]
    assert_rejected(spool, "theirs.json", f"it belongs to uid {nobody}, not to the manager's user ({os.geteuid()})")
    assert mode(spool.receipts / "theirs.json") == 0o640  # the group can read why


def test_a_group_writable_submission_is_rejected_in_a_group_shared_spool(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool", group_shared=True)
    path = spool.incoming / "open.json"
    path.write_bytes(GOOD)
    path.chmod(0o660)  # e.g. written with umask 002: anyone in the group could have changed it
    assert take(make_intake(spool)) == []
    assert_rejected(spool, "open.json", "other users could have written it (mode -rw-rw----)")


# -- the CLI ----------------------------------------------------------------------------------------


def fsq(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FSQ, *args], capture_output=True, text=True, timeout=120, cwd=REPO, check=False)


def test_fsq_submit_and_run_take_group_shared(tmp_path: Path) -> None:
    root = tmp_path / "spool"
    submitted = fsq("submit", "--spool", str(root), "--group-shared", "--", "true")
    assert submitted.returncode == 0, submitted.stderr
    assert set(directory_modes(Spool(root)).values()) == {0o2750}
    jobs = tmp_path / "jobs.json"
    jobs.write_bytes(orjson.dumps([{"name": "a", "exec": "true"}]))
    ran = fsq("run", "--spool", str(root), "--group-shared", "--cores", "1", str(jobs))
    assert ran.returncode == 0, ran.stderr
    statuses = list(Spool(root).status_dir.iterdir())
    assert len(statuses) == 2 and {mode(path) for path in statuses} == {0o640}
    assert mode(root / "manager.json") == 0o640


def test_fsq_manager_refuses_a_group_writable_spool(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool")
    spool.incoming.chmod(0o770)
    refused = fsq("manager", "--spool", str(spool.root), "--cores", "1", "--drain")
    assert refused.returncode == 2 and f"{spool.incoming} is writable by its group" in refused.stderr
    assert "--group-shared" in refused.stderr
    served = fsq("manager", "--spool", str(spool.root), "--cores", "1", "--drain", "--group-shared")
    assert served.returncode == 0, served.stderr
    assert mode(spool.incoming) == 0o2750


# -- a colleague reads, a stranger does not -----------------------------------------------------------


def test_a_colleague_in_the_group_reads_status_and_a_stranger_cannot(open_top: Path, nobody: int) -> None:
    needs_root()
    root = open_top / "spool"
    spool = Spool.create(root, group_shared=True)
    for path in spool.directories():
        os.chown(path, -1, COLLEAGUES)
    Spool.create(root, group_shared=True)  # chown may clear setgid; this sets 2750 again
    jobs = open_top / "jobs.json"
    jobs.write_bytes(orjson.dumps({"name": "shared", "exec": "true"}))
    ran = fsq("run", "--spool", str(root), "--cores", "1", str(jobs))
    assert ran.returncode == 0, ran.stderr
    [status] = list(spool.status_dir.iterdir())
    assert os.lstat(status).st_gid == COLLEAGUES  # setgid: the file took the spool's group
    assert '"state":"SUCCEEDED"' in as_user(nobody, [COLLEAGUES], status.read_text)
    assert as_user(nobody, [], status.read_text) == "PermissionError"
    # The colleague cannot write anywhere in it: a submission of theirs cannot even be dropped.
    drop = spool.incoming / "colleague.json"
    assert as_user(nobody, [COLLEAGUES], lambda: str(drop.write_bytes(GOOD))) == "PermissionError"
    assert not drop.exists()
