"""`fsq doctor` as a real process on real spools: private, hostile, missing, served, and split across filesystems.

The filesystem the test's own tmp_path sits on is read from this machine's /proc/mounts, so the
tests hold on ext4, xfs or tmpfs alike. Times the probe prints are never asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fsqueue.doctor import judge, look
from fsqueue.mounts import kind, mount_for, parse_mounts
from fsqueue.spool import Spool
from tests.conftest import FSQ, REPO, Processes, small_tmpfs, wait_until
from tests.fs.conftest import as_user, needs_root

LEVELS = {"ok", "note", "warning", "error"}


def doctor(spool: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    # cwd elsewhere, PYTHONPATH to this checkout: the same fsqueue as the test imports, whatever is installed.
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FSQ_SPOOL", None)
    return subprocess.run([*FSQ, "doctor", "--spool", str(spool), *extra], capture_output=True, text=True,
                          timeout=60, cwd=spool.parent if spool.parent.is_dir() else "/", env=env, check=False)


def report(spool: Path) -> tuple[int, dict[str, Any]]:
    done = doctor(spool, "--json")
    assert done.stderr == "", done.stderr
    return done.returncode, json.loads(done.stdout)


def codes(document: dict[str, Any], level: str | None = None) -> set[str]:
    return {f["code"] for f in document["findings"] if level is None or f["level"] == level}


def local_fstype(path: Path) -> str:
    mount = mount_for(parse_mounts(Path("/proc/mounts").read_text()), os.path.realpath(path))
    if mount is None or kind(mount.fstype) != "local":
        pytest.skip(f"{path} is on {mount.fstype if mount else 'an unknown filesystem'}, not a local one")
    return mount.fstype


def test_a_private_spool_passes_and_says_local(tmp_path: Path) -> None:
    fstype = local_fstype(tmp_path)
    spool = Spool.create(tmp_path / "spool")
    done = doctor(spool.root)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"local filesystem ({fstype})" in done.stdout
    assert "private: yours" in done.stdout and "mode 0700" in done.stdout
    assert "I/O probe in" in done.stdout and "What fsqueue guarantees here:" in done.stdout
    assert done.stdout.rstrip().endswith("0 error(s), 0 warning(s)")
    assert sorted(os.listdir(spool.tmp)) == [] and sorted(os.listdir(spool.incoming)) == []  # the probe cleaned up


def test_json_has_the_documented_structure(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool")
    code, document = report(spool.root)
    assert code == 0
    assert document["version"] == 1 and document["spool"] == str(spool.root) and document["exists"] is True
    assert document["checked"] == os.path.realpath(spool.root) and document["worst"] in LEVELS
    assert set(document["filesystem"]) == {"type", "kind", "mount_point", "device", "options"}
    assert isinstance(document["filesystem"]["options"], dict)
    for finding in document["findings"]:
        assert set(finding) == {"level", "code", "title", "detail"} and finding["level"] in LEVELS, finding
    assert {"spool.private", "spool.same-filesystem", "manager.none", "probe.ok"} <= codes(document)
    probe = document["probe"]
    # A sanity bound, not a timing: a probe that did not measure says None.
    assert probe["error"] is None and probe["seconds"] >= 0 and probe["where"] == str(spool.tmp)
    assert set(document["space"]) == {"free_bytes", "total_bytes", "free_inodes", "total_inodes", "read_only"}
    assert document["guarantees"] and all(isinstance(line, str) for line in document["guarantees"])


@pytest.mark.parametrize("which", ["root", "incoming"])
def test_a_world_writable_spool_is_an_error(tmp_path: Path, which: str) -> None:
    spool = Spool.create(tmp_path / "spool")
    path = spool.root if which == "root" else spool.incoming
    path.chmod(0o777)
    done = doctor(spool.root)
    assert done.returncode == 1, done.stdout
    assert f"error    writable by everyone: {path}" in done.stdout
    code, document = report(spool.root)
    assert code == 1 and document["worst"] == "error" and "spool.world-writable" in codes(document, "error")


def test_a_group_writable_spool_is_an_error_that_names_both_remedies(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool")
    spool.status_dir.chmod(0o770)
    done = doctor(spool.root)
    assert done.returncode == 1 and f"writable by the group: {spool.status_dir}" in done.stdout
    assert "chmod g-w" in done.stdout and "--group-shared" in done.stdout


def test_a_spool_owned_by_someone_else_is_an_error(tmp_path: Path, nobody: int) -> None:
    needs_root()
    spool = Spool.create(tmp_path / "spool")
    os.chown(spool.root, nobody, -1)
    code, document = report(spool.root)
    assert code == 1 and "spool.owner" in codes(document, "error")
    assert "probe.skipped" in codes(document)  # it writes only where fsqueue itself would


def test_without_a_spool_it_checks_the_parent_and_creates_nothing(tmp_path: Path) -> None:
    target = tmp_path / "not" / "yet" / "spool"
    code, document = report(target)
    assert code == 0, document
    assert document["exists"] is False and document["checked"] == os.path.realpath(tmp_path)
    assert "spool.missing" in codes(document, "note") and document["probe"]["error"] is None
    assert os.listdir(tmp_path) == []  # no spool, no parent, no probe file left


def test_a_group_shared_spool_and_a_live_manager(tmp_path: Path, processes: Processes) -> None:
    root = tmp_path / "spool"
    argv = [*FSQ, "manager", "--spool", str(root), "--group-shared", "--cores", "1", "--poll", "0.5"]
    manager = processes.start(argv, cwd=REPO, name="manager")
    wait_until(lambda: (Spool(root).read_manager_info() or {}).get("pid") == manager.pid, 20,
               lambda: processes.log_of(manager))
    code, document = report(root)
    assert code == 0, document
    found = {f["code"]: f for f in document["findings"]}
    assert "mode 2750" in found["spool.group-shared"]["title"]
    assert found["manager.alive"]["title"].startswith(f"manager serving on {os.uname().nodename} pid {manager.pid}")
    assert any("0.5 s, as the manager runs now" in line for line in document["guarantees"])


def test_tmp_on_another_filesystem_is_the_same_filesystem_error(tmp_path: Path) -> None:
    spool = Spool.create(tmp_path / "spool")
    with small_tmpfs(spool.tmp, "4m"):
        code, document = report(spool.root)
        assert code == 1
        [finding] = [f for f in document["findings"] if f["code"] == "spool.same-filesystem"]
        assert finding["level"] == "error" and finding["title"] == f"on another filesystem than {spool.root}: {spool.tmp}"
        assert "EXDEV" in finding["detail"]
        assert document["probe"]["error"].startswith("rename: ")  # the probe's publish fails like fsq submit's would
        assert document["guarantees"][0].startswith("Not atomic here")
        assert os.listdir(spool.tmp) == [] and os.listdir(spool.incoming) == []
        # And every command refuses that spool (Spool.check), rather than failing at the first rename.
        submit = subprocess.run([*FSQ, "submit", "--spool", str(spool.root), "--", "true"], capture_output=True,
                                text=True, timeout=60, cwd=REPO, check=False)
        assert submit.returncode == 2 and f"{spool.tmp} is on another filesystem than {spool.root}" in submit.stderr


def test_doctor_is_a_command_of_python_m_fsqueue() -> None:
    # Console scripts are often not on PATH on clusters: `python -m fsqueue doctor` is the same program.
    done = subprocess.run([sys.executable, "-m", "fsqueue", "doctor", "--help"], capture_output=True, text=True,
                          timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0 and "--json" in done.stdout and "--spool" in done.stdout


def test_someone_else_runs_it_on_a_private_spool(open_top: Path, nobody: int) -> None:
    """Another user who can reach the spool but not enter it gets errors, not a traceback."""
    needs_root()
    spool = Spool.create(open_top / "spool")  # others may pass through open_top to the spool, not list it
    answer = as_user(nobody, [], lambda: json.dumps(judge(look(spool.root, uid=nobody), now=0.0)))
    document = json.loads(answer)
    assert {"spool.owner", "spool.unreadable"} <= codes(document, "error"), document
    assert document["probe"] is None
