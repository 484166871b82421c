"""Intake on real directories: hostile files, torn files, duplicates, the courtesy lock, control requests.

Every rejection must leave the file in rejected/ with a .reason naming the cause (and a receipt when the
name is valid), and must not stop the intake of the next file in the same call.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import stat
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
from filelock import FileLock

from fsqueue.intake import ControlRequest, Intake, Submission, digest
from fsqueue.spool import (
    MAX_SUBMISSION_BYTES,
    IdMaker,
    Spool,
    is_job_id,
    is_submission_name,
)

MP = multiprocessing.get_context("spawn")
PROCESS_TIMEOUT = 60.0
GRACE = 10.0
GOOD = b'{"exec": "/bin/true"}\n'
LAST = "zzzz.json"  # sorts after every hostile name below: the file that must still be accepted


def make_intake(spool: Spool, grace: float = GRACE) -> Intake:
    return Intake(spool, IdMaker().many(), grace)


def take(intake: Intake, now: float = 0.0, *, scan: bool = True, known: frozenset[str] = frozenset(),
         limit: int = 1000) -> list[Submission]:
    """One intake pass, then release() as the manager does once its journal holds what was accepted."""
    submissions = intake.submissions(now, scan, known, limit)
    intake.release()
    return submissions


def rejections(spool: Spool) -> dict[str, str]:
    """Each rejected file, by the name it was kept under (after the stamp), with its reason text."""
    found = {}
    entries = os.listdir(spool.rejected)
    for entry in entries:
        if entry.endswith(".reason"):
            kept = entry[: -len(".reason")]
            assert kept in entries, f"{entry} has no rejected file beside it"
            found[kept.split("-", 1)[1]] = (spool.rejected / entry).read_text()
    assert len(entries) == 2 * len(found), f"a rejected file without its reason: {sorted(entries)}"
    return found


def assert_rejected(spool: Spool, name: str, *fragments: str, with_receipt: bool = True) -> str:
    """`name` was rejected once, its reason names every fragment, and it has a receipt if its name is valid."""
    reasons = rejections(spool)
    kept = [key for key in reasons if key == name or not is_submission_name(name)]
    assert len(kept) == 1, f"expected one rejection of {name!r}, found {sorted(reasons)}"
    reason = reasons[kept[0]]
    assert reason.startswith(f"fsq: rejected {name!r}: "), reason
    for fragment in fragments:
        assert fragment in reason, f"{fragment!r} not in {reason!r}"
    if is_submission_name(name) and with_receipt:
        receipt = spool.read_receipt(name)
        assert receipt is not None and receipt["state"] == "REJECTED", receipt
        assert all(fragment in receipt["reason"] for fragment in fragments), receipt
    elif not is_submission_name(name):  # no receipt at all for it: the accepted files beside it have theirs
        rejected = [other for other in os.listdir(spool.receipts) if spool.read_receipt(other)["state"] != "ACCEPTED"]
        assert rejected == []
    return reason


# -- hostile files ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Hostile:
    build: Callable[[Path, Path, int], str]  # (incoming, outside, nobody uid) -> name of the file made
    fragments: tuple[str, ...]  # what the reason must say


def _write(incoming: Path, name: str | bytes, data: bytes, mode: int = 0o600) -> str:
    path = os.path.join(os.fsencode(incoming), os.fsencode(name))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    os.write(fd, data)
    os.close(fd)
    os.chmod(path, mode)  # past the umask
    return os.fsdecode(os.fsencode(name))


def _symlink(incoming: Path, outside: Path, nobody: int) -> str:
    (incoming / "link.json").symlink_to(outside / "secret.json")
    return "link.json"


def _symlink_to_dir(incoming: Path, outside: Path, nobody: int) -> str:
    (incoming / "dirlink.json").symlink_to(outside)
    return "dirlink.json"


def _dangling(incoming: Path, outside: Path, nobody: int) -> str:
    (incoming / "dangling.json").symlink_to(outside / "no-such-file")
    return "dangling.json"


def _hard_link(incoming: Path, outside: Path, nobody: int) -> str:
    os.link(outside / "secret.json", incoming / "hard.json")
    return "hard.json"


def _foreign(incoming: Path, outside: Path, nobody: int) -> str:
    name = _write(incoming, "foreign.json", GOOD)
    os.chown(incoming / name, nobody, -1)
    return name


def _fifo(incoming: Path, outside: Path, nobody: int) -> str:
    os.mkfifo(incoming / "fifo.json", 0o600)
    return "fifo.json"


def _device(incoming: Path, outside: Path, nobody: int) -> str:
    os.mknod(incoming / "null.json", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    return "null.json"


def _socket(incoming: Path, outside: Path, nobody: int) -> str:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(incoming / "sock.json"))
    return "sock.json"


def _directory(incoming: Path, outside: Path, nobody: int) -> str:
    (incoming / "dir.json").mkdir()
    (incoming / "dir.json" / "inner.json").write_bytes(GOOD)
    return "dir.json"


def _huge(incoming: Path, outside: Path, nobody: int) -> str:
    name = _write(incoming, "huge.json", b"[")
    os.truncate(incoming / name, MAX_SUBMISSION_BYTES + 1)  # sparse: cheap
    return name


def _data(name: str | bytes, data: bytes, mode: int = 0o600) -> Callable[[Path, Path, int], str]:
    return lambda incoming, outside, nobody: _write(incoming, name, data, mode)


def _deep_args(depth: int) -> bytes:
    return b'{"exec": "/bin/true", "args": ' + b"[" * depth + b"]" * depth + b"}"


HOSTILE = {
    "symlink-to-file": Hostile(_symlink, ("symbolic link",)),
    "symlink-to-dir": Hostile(_symlink_to_dir, ("symbolic link",)),
    "dangling-symlink": Hostile(_dangling, ("symbolic link",)),
    "hard-link-outside": Hostile(_hard_link, ("2 hard links",)),
    "owned-by-nobody": Hostile(_foreign, ("belongs to uid",)),
    "fifo": Hostile(_fifo, ("not a regular file (mode p",)),
    "char-device": Hostile(_device, ("not a regular file (mode c",)),
    "socket": Hostile(_socket, ("not a regular file (mode s",)),
    "directory": Hostile(_directory, ("not a regular file (mode d",)),
    "world-writable": Hostile(_data("ww.json", GOOD, 0o666), ("other users could have written it", "-rw-rw-rw-")),
    "over-size-limit": Hostile(_huge, (f"{MAX_SUBMISSION_BYTES + 1} bytes; the limit is {MAX_SUBMISSION_BYTES}",)),
    "deep-torn-brackets": Hostile(_data("deep.json", b"[" * 100_000), ("nests more than",)),
    "deep-valid-args": Hostile(_data("deep2.json", _deep_args(1000)), ("nests more than",)),
    "deep-objects": Hostile(_data("deep3.json", b'{"a":' * 5000 + b"1" + b"}" * 5000), ("nests more than",)),
    "invalid-utf8": Hostile(_data("latin1.json", b'{"exec": "/bin/true", "name": "caf\xe9"}'),
                            ("not UTF-8: invalid continuation byte at byte 34",)),
    "utf8-surrogate": Hostile(_data("surrogate.json", b'{"exec": "\xed\xa0\x80"}'), ("not UTF-8",)),
    "not-json": Hostile(_data("text.json", b"echo hello\n"), ("not valid JSON",)),
    "trailing-garbage": Hostile(_data("garbage.json", GOOD.strip() + b" }"), ("not valid JSON",)),
    "json-scalar": Hostile(_data("scalar.json", b"42\n"), ("a submission is a JSON object or a list", "integer")),
    "empty-list": Hostile(_data("nothing.json", b"[]"), ("empty list",)),
    "empty-exec": Hostile(_data("emptyexec.json", b'{"exec": ""}'), ("exec: must not be empty",)),
    "unknown-field": Hostile(_data("colour.json", b'{"exec": "x", "colour": "red"}'), ("colour: unknown field",)),
    "exec-and-script": Hostile(_data("both.json", b'{"exec": "x", "script": "y"}'), ("exactly one of exec",)),
    "bad-id": Hostile(_data("badid.json", b'{"exec": "x", "id": "../../x"}'), ("id:", "not an fsqueue id")),
    "bad-id-final-newline": Hostile(_data("nlid.json", b'{"exec": "x", "id": "0123456789abcdef\\n"}'),
                                    ('id: "0123456789abcdef\\n" is not an fsqueue id',)),
    "bulk-one-bad": Hostile(
        _data("bulk.json", b'[{"exec": "a"}, {"exec": "b"}, {"exec": "c", "resources": {"cores": 0}}, {"exec": "d"}]'),
        ("jobs[2].resources.cores: must be >= 1, got 0",)),
    "bad-name-txt": Hostile(_data("job.txt", GOOD), ("file name is not allowed",)),
    "bad-name-newline": Hostile(_data("a\nb.json", GOOD), ("file name is not allowed",)),
    "bad-name-final-newline": Hostile(_data("final.json\n", GOOD), ("file name is not allowed",)),
    "bad-name-control": Hostile(_data("\x01\x1b[31m.json", GOOD), ("file name is not allowed",)),
    "bad-name-dotdot": Hostile(_data("a..b.json", GOOD), ("file name is not allowed",)),
    "bad-name-dash": Hostile(_data("-rf.json", GOOD), ("file name is not allowed",)),
    "bad-name-long": Hostile(_data("x" * 201 + ".json", GOOD), ("file name is not allowed",)),
    "bad-name-unicode": Hostile(_data("caf\u00e9.json", GOOD), ("file name is not allowed",)),
    "bad-name-not-utf8": Hostile(_data(b"bad\xff.json", GOOD), ("file name is not allowed",)),
}


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the spool with a file that links must never let the manager touch."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.json").write_bytes(GOOD)
    return path


@pytest.mark.parametrize("case", list(HOSTILE.values()), ids=list(HOSTILE))
def test_a_hostile_file_is_rejected_with_its_reason_and_the_next_file_still_accepted(
        spool: Spool, outside: Path, nobody: int, case: Hostile) -> None:
    name = case.build(spool.incoming, outside, nobody)
    _write(spool.incoming, LAST, GOOD)
    submissions = take(make_intake(spool))
    assert [submission.name for submission in submissions] == [LAST]
    assert os.listdir(spool.accepted) == [LAST]
    assert_rejected(spool, name, *case.fragments)
    assert os.listdir(spool.incoming) == [] and os.listdir(spool.claimed) == []
    assert (outside / "secret.json").read_bytes() == GOOD  # links never led the manager outside


def test_a_hostile_file_never_moves_what_a_link_points_to(spool: Spool, outside: Path, nobody: int) -> None:
    for build in (_symlink, _hard_link):
        build(spool.incoming, outside, nobody)
    take(make_intake(spool))
    assert sorted(os.listdir(outside)) == ["secret.json"]
    assert os.lstat(outside / "secret.json").st_nlink == 2  # the hard link is kept in rejected/, not deleted
    kept = [entry for entry in os.listdir(spool.rejected) if entry.endswith("-link.json")]
    assert len(kept) == 1 and os.path.islink(spool.rejected / kept[0])


def test_a_very_deep_document_does_not_crash_the_intake(tmp_path: Path) -> None:
    # orjson 3.8 segfaults on ~3e5 nested arrays: run in a child so that a regression fails this test only.
    code = textwrap.dedent(f"""
        from fsqueue.intake import Intake
        from fsqueue.spool import IdMaker, Spool
        spool = Spool.create({str(tmp_path / "spool")!r})
        depth = 300_000
        (spool.incoming / "deep.json").write_bytes(b'{{"exec": "x", "args": ' + b"[" * depth + b"]" * depth + b"}}")
        (spool.incoming / "zzzz.json").write_bytes(b'{{"exec": "/bin/true"}}')
        print([s.name for s in Intake(spool, IdMaker().many()).submissions(0.0, True, set(), 10)])
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=PROCESS_TIMEOUT, check=False)
    assert done.returncode == 0, f"rc {done.returncode}: {done.stderr[-2000:]}"
    assert done.stdout.strip() == "['zzzz.json']"
    assert_rejected(Spool(tmp_path / "spool"), "deep.json", "nests more than")


def _env_nesting(arrays: int) -> bytes:
    return b'{"exec": "x", "env": {"A": ' + b"[" * arrays + b"]" * arrays + b"}}"


def test_nesting_is_counted_exactly_and_only_outside_strings(spool: Spool) -> None:
    _write(spool.incoming, "n64.json", _env_nesting(62))  # 64 levels: allowed, the schema speaks
    _write(spool.incoming, "n65.json", _env_nesting(63))  # 65 levels: refused before parsing
    script = "echo \\\"" + "[{" * 500 + "\\\" ]]"  # brackets and escaped quotes inside a string
    _write(spool.incoming, "s.json", orjson.dumps({"script": script}))
    accepted = take(make_intake(spool))
    assert [s.name for s in accepted] == ["s.json"] and accepted[0].specs[0].script == script
    reasons = rejections(spool)
    assert "env.A: must be a string" in reasons["n64.json"]
    assert "the JSON nests more than 64 levels deep" in reasons["n65.json"]


def test_group_writable_files_are_refused_only_when_the_group_can_enter_the_spool(spool: Spool) -> None:
    _write(spool.incoming, "a.json", GOOD, 0o660)
    assert [s.name for s in take(make_intake(spool))] == ["a.json"]  # spool root is 0700
    spool.root.chmod(0o710)
    _write(spool.incoming, "b.json", GOOD, 0o660)
    assert take(make_intake(spool)) == []
    assert_rejected(spool, "b.json", "other users could have written it", "-rw-rw----")


def test_staging_names_are_left_alone(spool: Spool) -> None:
    # Rule R9: dot-names, *.part and *.tmp are files still being written; they are never claimed.
    for name in (".x.json", ".a.json.lock", "x.json.part", "x.json.tmp", ".nfs000000001"):
        _write(spool.incoming, name, b"{")
    assert take(make_intake(spool), 1000.0) == []
    assert len(os.listdir(spool.incoming)) == 5
    assert os.listdir(spool.rejected) == [] and os.listdir(spool.claimed) == []


# -- accepted submissions --------------------------------------------------------------------------

def test_accepted_files_are_stamped_with_ids(spool: Spool) -> None:
    fixed = IdMaker()()
    _write(spool.incoming, "one.json", GOOD)
    _write(spool.incoming, "many.json", orjson.dumps([{"exec": "a"}, {"exec": "b", "id": fixed}]))
    submissions = {s.name: s for s in take(make_intake(spool))}
    assert sorted(submissions) == ["many.json", "one.json"]
    one = orjson.loads((spool.accepted / "one.json").read_bytes())
    assert one == {"id": submissions["one.json"].specs[0].id, "exec": "/bin/true"} and is_job_id(one["id"])
    many = orjson.loads((spool.accepted / "many.json").read_bytes())
    assert [job["id"] for job in many] == [spec.id for spec in submissions["many.json"].specs]
    assert many[1]["id"] == fixed and is_job_id(many[0]["id"])
    assert os.listdir(spool.claimed) == [] and os.listdir(spool.incoming) == []


def test_limit_and_scan_bound_what_is_claimed(spool: Spool) -> None:
    for index in range(5):
        _write(spool.incoming, f"j{index}.json", GOOD)
    intake = make_intake(spool)
    assert take(intake, scan=False) == []
    assert [s.name for s in take(intake, limit=2)] == ["j0.json", "j1.json"]
    assert sorted(os.listdir(spool.incoming)) == ["j2.json", "j3.json", "j4.json"]


def test_files_left_in_claimed_by_a_stopped_manager_are_taken_up(spool: Spool) -> None:
    _write(spool.claimed, "left.json", GOOD)
    intake = make_intake(spool)
    intake.adopt(intake.leftovers(), {})
    assert [s.name for s in take(intake, scan=False)] == ["left.json"]
    assert os.listdir(spool.claimed) == []


def test_a_leftover_is_dropped_only_as_the_copy_of_what_the_journal_accepted(spool: Spool) -> None:
    _write(spool.incoming, "a.json", GOOD)
    _write(spool.incoming, "b.json", GOOD)
    [a, b] = make_intake(spool).submissions(0.0, True, frozenset(), 10)  # then the manager died: not released
    assert a.digest == digest(GOOD)
    (spool.claimed / "b.json").write_bytes(b'{"exec": "/bin/false"}')  # a namesake, claimed after b's release
    intake = make_intake(spool)
    intake.adopt(intake.leftovers(), {"a.json": a.digest, "b.json": b.digest})
    assert os.listdir(spool.claimed) == ["b.json"]
    assert take(intake, scan=False) == []
    assert "duplicate" in rejections(spool)["b.json"], "never dropped unseen"


# -- torn files -------------------------------------------------------------------------------------

def _writer(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def test_a_torn_file_completed_within_the_grace_is_accepted(spool: Spool) -> None:
    document = '{"name": "caf\u00e9 \u2713 \U0001f600", "exec": "/bin/true"}\n'.encode()
    intake = make_intake(spool)
    writers = {}
    for cut in range(1, len(document.rstrip())):  # every cut, including inside multi-byte characters
        name = f"cut{cut:03d}.json"
        writers[name] = fd = _writer(spool.incoming / name)
        os.write(fd, document[:cut])
    assert take(intake, 0.0) == []
    assert os.listdir(spool.rejected) == [] and os.listdir(spool.incoming) == []
    assert intake.next_retry() == GRACE
    for name, fd in writers.items():  # the writers still hold the files open: data lands in claimed/
        os.write(fd, document[int(name[3:6]):])
        os.close(fd)
    accepted = take(intake, GRACE - 0.5)  # the next scan reads them again
    assert sorted(s.name for s in accepted) == sorted(writers)
    assert {s.specs[0].name for s in accepted} == {"caf\u00e9 \u2713 \U0001f600"}
    assert os.listdir(spool.rejected) == [] and os.listdir(spool.claimed) == []
    assert intake.next_retry() is None


def test_a_torn_file_cut_inside_a_string_of_brackets_waits_for_its_end(spool: Spool) -> None:
    document = b'{"script": "' + b"[" * 300 + b'"}'
    fd = _writer(spool.incoming / "s.json")
    os.write(fd, document[:200])
    intake = make_intake(spool)
    assert take(intake, 0.0) == [] and os.listdir(spool.rejected) == []
    os.write(fd, document[200:])
    os.close(fd)
    assert [s.specs[0].script for s in take(intake, 1.0)] == ["[" * 300]


@pytest.mark.parametrize("content, fragment", [
    (b'{"exec": "/bin/tr', "incomplete JSON (17 bytes), unchanged for 10 s"),
    (b'[{"exec": "a"}, {"name": "caf\xc3', "incomplete JSON (30 bytes), unchanged for 10 s"),
    (b"", "the file is empty, unchanged for 10 s"),
    (b" \n", "the file is empty, unchanged for 10 s"),
])
def test_a_torn_file_that_never_completes_is_rejected_after_the_grace(spool: Spool, content: bytes,
                                                                      fragment: str) -> None:
    _write(spool.incoming, "torn.json", content)
    intake = make_intake(spool)
    assert take(intake, 100.0) == []
    assert take(intake, 100.0 + GRACE - 0.001, scan=False) == []
    assert os.listdir(spool.rejected) == [] and spool.read_receipt("torn.json") is None
    assert intake.next_retry() == 100.0 + GRACE
    assert take(intake, 100.0 + GRACE, scan=False) == []
    assert_rejected(spool, "torn.json", fragment)
    assert intake.next_retry() is None and os.listdir(spool.claimed) == []


def test_a_growing_file_restarts_the_grace(spool: Spool) -> None:
    fd = _writer(spool.incoming / "slow.json")
    os.write(fd, b'[{"exec": "a"}')
    intake = make_intake(spool)
    assert take(intake, 0.0) == []
    os.write(fd, b', {"exec": "b"}')
    assert take(intake, 8.0) == []  # grew: the grace starts again at 8
    assert take(intake, 17.9) == [] and os.listdir(spool.rejected) == []
    assert intake.next_retry() == 18.0
    assert take(intake, 18.0) == []
    os.close(fd)
    assert_rejected(spool, "slow.json", "incomplete JSON (29 bytes)")


@pytest.mark.parametrize("ending, fragment", [
    (b'"x", "cores": 2}', "cores: unknown field"),  # valid JSON, invalid job
    (b'"x",, }', "not valid JSON"),
    (b'"caf\xe9"}', "not UTF-8"),
    (b'"x"}' + b" " * MAX_SUBMISSION_BYTES, "the limit is"),
])
def test_a_torn_file_completed_badly_is_rejected_once_with_its_cause(spool: Spool, ending: bytes,
                                                                      fragment: str) -> None:
    fd = _writer(spool.incoming / "bad.json")
    os.write(fd, b'{"exec": ')
    intake = make_intake(spool)
    assert take(intake, 0.0) == []
    os.write(fd, ending)
    os.close(fd)
    _write(spool.incoming, LAST, GOOD)
    assert [s.name for s in take(intake, 1.0)] == [LAST]
    reason = assert_rejected(spool, "bad.json", fragment)
    for now in (2.0, 50.0):  # settled: later calls neither reject it again nor rewrite its receipt
        assert take(intake, now) == []
        assert assert_rejected(spool, "bad.json", fragment) == reason
    assert intake.next_retry() is None


def test_a_torn_file_is_not_overwritten_by_a_new_file_of_the_same_name(spool: Spool) -> None:
    fd = _writer(spool.incoming / "same.json")
    os.write(fd, b'{"exec": "/bin/first"')
    intake = make_intake(spool)
    assert take(intake, 0.0) == []
    _write(spool.incoming, "same.json", b'{"exec": "/bin/second"}')
    assert take(intake, 1.0) == []
    os.write(fd, b"}")
    os.close(fd)
    [first] = take(intake, 2.0)
    assert first.specs[0].exec == "/bin/first"
    assert spool.read_receipt("same.json") == {"state": "ACCEPTED", "ids": [first.specs[0].id]}, "written by release()"
    assert take(intake, 3.0) == []  # the second one is a duplicate name now
    assert "duplicate" in rejections(spool)["same.json"]
    assert spool.read_receipt("same.json") == {"state": "ACCEPTED", "ids": [first.specs[0].id]}
    assert orjson.loads((spool.accepted / "same.json").read_bytes())["exec"] == "/bin/first"


def test_a_claimed_copy_stays_until_release_and_no_namesake_is_claimed_over_it(spool: Spool) -> None:
    # The manager releases once its journal holds the acceptance: until then the claimed copy is what a
    # crash of the machine would leave to read again (docs/reliability.md).
    _write(spool.incoming, "a.json", GOOD)
    intake = make_intake(spool)
    [first] = intake.submissions(0.0, True, frozenset(), 10)
    assert first.stamped + b"\n" == (spool.accepted / "a.json").read_bytes()
    assert os.listdir(spool.claimed) == ["a.json"] and intake.unreleased
    _write(spool.incoming, "a.json", b'{"exec": "/bin/false"}')
    assert intake.submissions(1.0, True, frozenset(), 10) == []
    assert os.listdir(spool.incoming) == ["a.json"], "left where it is while its namesake waits"
    assert (spool.claimed / "a.json").read_bytes() == GOOD
    intake.release()
    assert os.listdir(spool.claimed) == [] and not intake.unreleased
    assert take(intake, 2.0) == []
    assert "duplicate" in rejections(spool)["a.json"]


# -- duplicates -------------------------------------------------------------------------------------

def test_a_second_file_with_an_accepted_name_is_rejected_and_the_receipt_kept(spool: Spool) -> None:
    _write(spool.incoming, "a.json", GOOD)
    intake = make_intake(spool)
    [first] = take(intake)
    receipt = {"state": "ACCEPTED", "ids": [first.specs[0].id]}
    assert spool.read_receipt("a.json") == receipt, "written by release()"
    accepted = (spool.accepted / "a.json").read_bytes()
    _write(spool.incoming, "a.json", b'{"exec": "/bin/false"}')
    _write(spool.incoming, LAST, GOOD)
    assert [s.name for s in take(intake)] == [LAST]
    reasons = rejections(spool)
    assert list(reasons) == ["a.json"]
    assert "duplicate: a submission named a.json was already accepted" in reasons["a.json"]
    assert spool.read_receipt("a.json") == receipt
    assert (spool.accepted / "a.json").read_bytes() == accepted


def test_a_job_id_already_known_is_rejected(spool: Spool) -> None:
    job_id = IdMaker()()
    _write(spool.incoming, "b.json", orjson.dumps({"exec": "x", "id": job_id}))
    assert take(make_intake(spool), known=frozenset({job_id})) == []
    assert_rejected(spool, "b.json", f"duplicate job id {job_id}")


def test_the_same_job_id_in_two_files_of_one_batch_is_accepted_once(spool: Spool) -> None:
    job_id = IdMaker()()
    for name in ("a.json", "b.json"):
        _write(spool.incoming, name, orjson.dumps({"exec": "x", "id": job_id}))
    assert [s.name for s in take(make_intake(spool))] == ["a.json"]
    assert_rejected(spool, "b.json", f"duplicate job id {job_id}")


def test_the_same_job_id_twice_in_one_file_is_rejected(spool: Spool) -> None:
    job_id = IdMaker()()
    _write(spool.incoming, "c.json", orjson.dumps([{"exec": "x", "id": job_id}, {"exec": "y", "id": job_id}]))
    assert take(make_intake(spool)) == []
    assert_rejected(spool, "c.json", f"duplicate job id {job_id}")


# -- the courtesy lock ------------------------------------------------------------------------------

def _hold_lock(path: str, held: object, release: object) -> None:
    with FileLock(path):
        held.set()  # type: ignore[attr-defined]
        release.wait(PROCESS_TIMEOUT)  # type: ignore[attr-defined]


def test_a_file_whose_lock_is_held_elsewhere_is_not_claimed_until_released(spool: Spool) -> None:
    lock = spool.incoming / ".w.json.lock"
    held, release = MP.Event(), MP.Event()
    holder = MP.Process(target=_hold_lock, args=(str(lock), held, release))
    holder.start()
    try:
        assert held.wait(PROCESS_TIMEOUT), "the lock holder did not start"
        fd = _writer(spool.incoming / "w.json")
        os.write(fd, GOOD)
        os.close(fd)
        _write(spool.incoming, LAST, GOOD)
        intake = make_intake(spool)
        assert [s.name for s in take(intake, 0.0)] == [LAST]  # the locked one waits; the others go on
        assert take(intake, 1000.0) == []
        assert sorted(os.listdir(spool.incoming)) == [".w.json.lock", "w.json"]
        release.set()
        holder.join(PROCESS_TIMEOUT)
        assert holder.exitcode == 0
        assert [s.name for s in take(intake, 1001.0)] == ["w.json"]
        assert os.listdir(spool.incoming) == []  # the lock file went with it
    finally:
        release.set()
        holder.join(PROCESS_TIMEOUT)
        if holder.is_alive():
            holder.kill()
            holder.join()


def _unheld_lock(lock: Path, outside: Path) -> None:
    lock.write_bytes(b"")


def _lock_symlink(lock: Path, outside: Path) -> None:
    lock.symlink_to(outside / "secret.json")


def _lock_directory(lock: Path, outside: Path) -> None:
    lock.mkdir()


@pytest.mark.parametrize("make_lock", [_unheld_lock, _lock_symlink, _lock_directory])
def test_a_lock_nobody_holds_does_not_stop_the_intake(spool: Spool, outside: Path, make_lock: Callable) -> None:
    make_lock(spool.incoming / ".w.json.lock", outside)
    _write(spool.incoming, "w.json", GOOD)
    _write(spool.incoming, LAST, GOOD)
    assert [s.name for s in take(make_intake(spool))] == ["w.json", LAST]
    assert (outside / "secret.json").read_bytes() == GOOD
    assert "w.json" not in os.listdir(spool.incoming)
    if make_lock is _unheld_lock:
        assert os.listdir(spool.incoming) == []  # a stale lock file goes with its file


# -- control requests -------------------------------------------------------------------------------

def test_control_requests_are_parsed_and_removed(spool: Spool) -> None:
    job_id = IdMaker()()
    spool.publish(spool.control, "cancel-1.json", orjson.dumps({"version": 1, "action": "cancel", "ids": [job_id],
                                                               "names": ["train"]}))
    spool.publish(spool.control, "shutdown-2.json", orjson.dumps({"action": "shutdown", "drain": True}))
    spool.publish(spool.control, "shutdown-3.json", orjson.dumps({"action": "shutdown"}))
    intake = make_intake(spool)
    assert intake.control_requests(0.0) == [
        ControlRequest("cancel", (job_id,), ("train",)),
        ControlRequest("shutdown", drain=True),
        ControlRequest("shutdown", drain=False),
    ]
    assert os.listdir(spool.control) == [] and os.listdir(spool.rejected) == []
    assert intake.control_requests(0.0) == []  # carried out at most once


@pytest.mark.parametrize("name, content, fragment", [
    ("c1.json", b'{"action": "reboot"}', '"action": "cancel" or "shutdown"'),
    ("c2.json", b'["cancel"]', '"action": "cancel" or "shutdown"'),
    ("c3.json", b'{"action": "cancel", "ids": ["../x"]}', "ids: must be a list of job ids"),
    ("c4.json", b'{"action": "cancel", "names": [1]}', "names: must be a list of strings"),
    ("c4s.json", b'{"action": "cancel", "names": "prep"}', "names: must be a list of strings"),
    ("c4i.json", b'{"action": "cancel", "ids": {}}', "ids: must be a list of job ids"),
    ("c4d.json", b'{"action": "shutdown", "drain": "false"}', "drain: must be true or false, got 'false'"),
    ("c5.json", b'{"action": "shutdown", "force": true}', "force: unknown field"),
    ("c6.json", b"shutdown now", "not valid JSON"),
    ("c7.json", b'{"action": "cancel", "names": ["caf\xe9"]}', "not UTF-8"),
    ("c8.txt", b'{"action": "shutdown"}', "file name is not allowed"),
    ("c\n9.json", b'{"action": "shutdown"}', "file name is not allowed"),
])
def test_bad_control_requests_are_rejected_with_their_reason(spool: Spool, name: str, content: bytes,
                                                             fragment: str) -> None:
    _write(spool.control, name, content)
    _write(spool.control, LAST, b'{"action": "shutdown"}')
    assert make_intake(spool).control_requests(0.0) == [ControlRequest("shutdown")]
    assert_rejected(spool, name, fragment, with_receipt=False)
    assert spool.read_receipt(name) is None  # receipts belong to submissions
    assert os.listdir(spool.control) == []


@pytest.mark.parametrize("build, fragment", [(_symlink, "symbolic link"), (_foreign, "belongs to uid"),
                                             (_fifo, "not a regular file")])
def test_hostile_control_files_are_rejected(spool: Spool, outside: Path, nobody: int, build: Callable,
                                            fragment: str) -> None:
    name = build(spool.control, outside, nobody)
    assert make_intake(spool).control_requests(0.0) == []
    assert_rejected(spool, name, fragment, with_receipt=False)
    assert spool.read_receipt(name) is None  # receipts belong to submissions
    assert os.listdir(spool.control) == []
    assert (outside / "secret.json").read_bytes() == GOOD


def test_a_torn_control_request_waits_for_its_end(spool: Spool) -> None:
    fd = _writer(spool.control / "cancel-1.json")
    os.write(fd, b'{"action": "shut')
    intake = make_intake(spool)
    assert intake.control_requests(0.0) == []
    assert os.listdir(spool.control) == ["cancel-1.json"] and os.listdir(spool.rejected) == []
    os.write(fd, b'down"}')
    os.close(fd)
    assert intake.control_requests(0.0) == [ControlRequest("shutdown")]
    assert os.listdir(spool.control) == []
