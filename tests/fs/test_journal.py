"""The journal on real files: group commit, a torn tail cut at every byte, corruption, a full disk, kill -9."""

from __future__ import annotations

import errno
import os
import random
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from fsqueue.errors import JournalError, JournalWriteError
from fsqueue.journal import Journal, replay
from tests.conftest import REPO, fill_up, small_tmpfs

RECORDS = [{"event": "accept", "id": f"job{n}", "n": n} for n in range(4)]
# The record that gets torn: multi-byte characters, so that some cuts fall inside one.
LAST = {"event": "start", "id": "job4", "argv": ["echo", "größe ✓ 名前"], "attempt": 1}
LAST_LINE = orjson.dumps(LAST) + b"\n"


def lines(path: Path) -> list[bytes]:
    """The file's lines, without the zeros an open journal keeps ahead of its records."""
    return path.read_bytes().rstrip(b"\0").splitlines(keepends=True)


def write_journal(path: Path, records: list[dict[str, Any]]) -> bytes:
    journal, _ = Journal.open(path, now=1000.0)
    with journal:
        for record in records:
            journal.append(record)
    return path.read_bytes()


def leftovers(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.endswith(".tmp"))


# -- round trip and group commit ----------------------------------------------------------------------


def test_a_new_journal_is_private_and_starts_with_its_header(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, result = Journal.open(path, now=1234.5)
    journal.close()
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o600
    header = orjson.loads(lines(path)[0])
    assert header == {"fsqueue_journal": 1, "created": 1234.5, "host": socket.gethostname(), "pid": os.getpid()}
    assert result.records == [] and result.torn_bytes == 0 and result.corrupt_lines == ()
    assert leftovers(tmp_path) == []


def test_records_round_trip_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    write_journal(path, [*RECORDS, LAST])
    journal, result = Journal.open(path, now=2000.0)
    journal.close()
    assert result.records == [*RECORDS, LAST]
    assert result.header["created"] == 1000.0  # reopening keeps the original header
    assert replay(path).records == [*RECORDS, LAST]


def spy_on_io(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """From now on, the journal's writes and flushes in order, as spies (the real calls still happen):
    "zeros" for the space kept ahead, "records N" for a write of N records, "fsync", "fdatasync"."""
    calls: list[str] = []
    real_pwrite, real_fsync, real_fdatasync = os.pwrite, os.fsync, os.fdatasync

    def pwrite(fd: int, data: bytes, offset: int) -> int:
        calls.append("zeros" if not any(data) else f"records {bytes(data).count(b'{')}")
        return real_pwrite(fd, data, offset)

    def spy(name: str, real: Any) -> Any:
        return lambda fd: (calls.append(name), real(fd))[1]

    monkeypatch.setattr(os, "pwrite", pwrite)
    monkeypatch.setattr(os, "fsync", spy("fsync", real_fsync))
    monkeypatch.setattr(os, "fdatasync", spy("fdatasync", real_fdatasync))
    return calls


def test_one_sync_writes_every_pending_record_with_one_write_and_one_fsync(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.jsonl"
    journal, _ = Journal.open(path, now=0.0)
    calls = spy_on_io(monkeypatch)
    for n in range(100):
        journal.append({"n": n})
    assert journal.pending == 100
    assert len(lines(path)) == 1, "append must only buffer"
    assert journal.sync() == 100
    # The first sync grows the file (zeros ahead, then a full fsync for the new size) ...
    assert calls == ["zeros", "records 100", "fsync"]
    assert journal.pending == 0 and len(lines(path)) == 101
    assert journal.sync() == 0 and len(calls) == 3, "an empty sync is a no-op"
    for n in range(100, 200):
        journal.append({"n": n})
    assert journal.sync() == 100
    # ... later ones write into blocks the file has: one write, and a flush of data only.
    assert calls[3:] == ["records 100", "fdatasync"]
    journal.close()
    assert path.read_bytes().endswith(b"}\n"), "a clean close leaves no zeros behind"
    assert [record["n"] for record in replay(path).records] == list(range(200))


def test_write_hands_records_to_the_file_without_an_fsync_and_sync_makes_them_durable_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal.jsonl"
    journal, _ = Journal.open(path, now=0.0)
    calls = spy_on_io(monkeypatch)
    for n in range(3):
        journal.append({"n": n})
    journal.write()
    assert calls == ["zeros", "records 3"], "write() must not wait for the disk"
    assert [record["n"] for record in replay(path).records] == [0, 1, 2], "another reader sees written records"
    assert journal.pending == 3, "written is not durable"
    journal.write()
    assert len(calls) == 2, "nothing new: no write"
    journal.append({"n": 3})
    assert journal.sync() == 4
    # Only the record not written yet is written; the file grew since the last sync, so a full fsync.
    assert calls[2:] == ["records 1", "fsync"]
    journal.append({"n": 4})
    journal.write()
    assert journal.sync() == 1 and calls[4:] == ["records 1", "fdatasync"]
    journal.close()
    assert [record["n"] for record in replay(path).records] == [0, 1, 2, 3, 4]


def test_opening_a_journal_a_killed_writer_left_makes_its_written_records_durable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A killed manager's written records are only with the kernel; the next manager acts on them
    # (receipts, repaired status files) before it syncs anything of its own.
    path = tmp_path / "journal.jsonl"
    first, _ = Journal.open(path, now=0.0)
    first.append({"n": 0})
    first.write()  # and then it was killed: never synced, never closed
    calls = spy_on_io(monkeypatch)
    second, replayed = Journal.open(path, now=1.0)
    assert [record["n"] for record in replayed.records] == [0]
    assert calls == ["fsync"]
    second.close()


def test_close_syncs_what_is_pending(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal, _ = Journal.open(path, now=0.0)
    journal.append({"n": 1})
    journal.close()
    assert replay(path).records == [{"n": 1}]


def test_append_takes_only_objects(tmp_path: Path) -> None:
    journal, _ = Journal.open(tmp_path / "journal.jsonl", now=0.0)
    with journal, pytest.raises(TypeError, match="dict"):
        journal.append(["not", "an", "object"])  # type: ignore[arg-type]


# -- damage ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kept", range(len(LAST_LINE)))
def test_a_tail_torn_at_any_byte_is_cut_off_and_appending_goes_on_cleanly(tmp_path: Path, kept: int) -> None:
    path = tmp_path / "journal.jsonl"
    whole = write_journal(path, [*RECORDS, LAST])
    start = len(whole) - len(LAST_LINE)
    path.write_bytes(whole[: start + kept])  # a crash kept the first `kept` bytes of the last record

    journal, result = Journal.open(path, now=0.0)
    assert result.records == RECORDS
    assert result.torn_bytes == kept and result.corrupt_lines == ()
    assert path.stat().st_size == start, "open must cut the torn record off"
    journal.append({"after": kept})
    journal.close()

    again = replay(path)
    assert again.records == [*RECORDS, {"after": kept}]
    assert again.torn_bytes == 0 and again.corrupt_lines == ()


@pytest.mark.parametrize("tail", [b"\0" * 4096, b"garbage\n", b'{"event": "sta\n\0\0\0', b"[1, 2]\n", b"\n\n"],
                         ids=["zeros", "unparseable-line", "torn-then-zeros", "not-an-object", "empty-lines"])
def test_anything_after_the_last_readable_record_is_the_torn_tail(tmp_path: Path, tail: bytes) -> None:
    path = tmp_path / "journal.jsonl"
    whole = write_journal(path, RECORDS)
    path.write_bytes(whole + tail)
    journal, result = Journal.open(path, now=0.0)
    journal.close()
    # Zeros at the very end are the space an open journal keeps ahead, not damage.
    zeros = len(tail) - len(tail.rstrip(b"\0"))
    assert result.records == RECORDS and result.corrupt_lines == ()
    assert (result.torn_bytes, result.reserved) == (len(tail) - zeros, zeros)
    assert path.read_bytes() == whole


@pytest.mark.parametrize("bad", [b"garbage", b"\0\0\0\0", b'{"event": "acc', b'"a string"'])
def test_an_unreadable_line_between_records_is_skipped_and_reported(tmp_path: Path, bad: bytes) -> None:
    path = tmp_path / "journal.jsonl"
    whole = write_journal(path, RECORDS)
    header, *body = whole.splitlines(keepends=True)
    damaged = b"".join([header, *body[:2], bad + b"\n", *body[2:]])
    path.write_bytes(damaged)

    journal, result = Journal.open(path, now=0.0)
    assert result.records == RECORDS, "the records around the bad line are kept"
    assert result.corrupt_lines == (4,)  # header, two records, then the bad line
    assert result.torn_bytes == 0
    assert path.read_bytes() == damaged, "the evidence stays in the file until the manager compacts"
    journal.append({"after": True})
    journal.close()
    assert replay(path).records == [*RECORDS, {"after": True}]


@pytest.mark.parametrize(("content", "message"), [
    (b'{"fsqueue_journal": 2, "created": 0}\n', "format version 2.*reads version 1"),
    (b'{"fsqueue_journal": "1"}\n', "format version '1'"),
    (b'{"fsqueue_journal": true}\n', "format version True"),
    (b"id\tstate\n", "not an fsqueue journal"),
    (b'{"created": 0}\n', "not an fsqueue journal"),
    (b'{"fsqueue_journal": 1, "crea', "not an fsqueue journal"),
    (b"", "not an fsqueue journal"),
], ids=["newer", "string-version", "bool-version", "tsv", "no-version-key", "torn-header", "empty"])
def test_a_journal_with_an_unknown_version_or_no_header_is_refused_untouched(tmp_path: Path, content: bytes,
                                                                              message: str) -> None:
    path = tmp_path / "journal.jsonl"
    path.write_bytes(content + b'{"n": 1}\n')
    with pytest.raises(JournalError, match=message) as caught:
        Journal.open(path, now=0.0)
    assert str(path) in str(caught.value) and "move" in str(caught.value)  # names the file and the remedy
    assert path.read_bytes() == content + b'{"n": 1}\n'


def test_a_symlink_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.jsonl"
    write_journal(target, RECORDS)
    before = target.read_bytes()
    (tmp_path / "journal.jsonl").symlink_to(target)
    with pytest.raises(JournalError, match="symbolic link"):
        Journal.open(tmp_path / "journal.jsonl", now=0.0)
    with pytest.raises(JournalError, match="symbolic link"):
        replay(tmp_path / "journal.jsonl")
    assert target.read_bytes() == before


def test_a_fifo_is_refused(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "journal.jsonl")
    with pytest.raises(JournalError, match="not a regular file"):
        Journal.open(tmp_path / "journal.jsonl", now=0.0)


# -- compaction ------------------------------------------------------------------------------------------


def test_compact_replaces_the_file_and_appends_go_to_the_new_one(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    before = write_journal(path, [*RECORDS, LAST])
    old = os.open(path, os.O_RDONLY)  # the old file, to show it was replaced, not rewritten in place
    journal, result = Journal.open(path, now=0.0)
    summary = {"event": "snapshot", "jobs": len(result.records)}
    journal.compact([summary], now=5000.0)
    journal.append({"event": "after"})
    journal.sync()
    journal.append({"event": "pending across a compaction"})
    journal.compact([summary, {"event": "after"}], now=6000.0)
    journal.close()

    again = replay(path)
    assert again.header["created"] == 6000.0
    assert again.records == [summary, {"event": "after"}, {"event": "pending across a compaction"}]
    assert os.pread(old, 1 << 16, 0) == before
    os.close(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert leftovers(tmp_path) == []


# -- write errors ----------------------------------------------------------------------------------------


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs of our own, to fill up for real."""
    with small_tmpfs(tmp_path / "tiny", "64k") as mount:
        yield mount


def test_a_full_disk_leaves_only_whole_records_and_a_later_sync_writes_everything_once(
        tiny_fs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_fs / "journal.jsonl"
    journal, _ = Journal.open(path, now=0.0)
    for record in RECORDS:
        journal.append(record)
    journal.sync()
    synced = path.stat().st_size
    assert synced % 4096, "the last page must have room, so that the failing write is a short one"
    fill_up(tiny_fs / "filler")

    written: list[int] = []
    real_pwrite = os.pwrite

    def pwrite(fd: int, data: bytes, offset: int) -> int:  # a spy: records what each real write managed
        count = real_pwrite(fd, data, offset)
        if any(data):  # the records, not the zeros a journal tries to keep ahead
            written.append(count)
        return count

    monkeypatch.setattr(os, "pwrite", pwrite)
    late: list[dict[str, Any]] = [{"event": "end", "id": f"job{n}", "output": "y" * 3000} for n in range(5)]
    for record in late:
        journal.append(record)
    with pytest.raises(JournalWriteError, match=r"cannot write the journal .*No space left.*5 records are kept.*df "):
        journal.sync()
    assert written and 0 < written[0] < sum(map(len, (orjson.dumps(r) + b"\n" for r in late))), \
        f"expected a short write before ENOSPC, saw {written}"
    assert path.stat().st_size == synced, "the partial record must be cut off"
    assert journal.pending == 5
    assert replay(path).records == RECORDS and replay(path).torn_bytes == 0

    with pytest.raises(JournalWriteError, match="the old one, if any, is unchanged"):
        journal.compact(RECORDS[:1], now=1.0)
    assert replay(path).records == RECORDS and leftovers(tiny_fs) == []

    with pytest.raises(JournalWriteError):
        journal.sync()  # still full: fails again, still clean
    assert path.stat().st_size == synced

    (tiny_fs / "filler").unlink()
    assert journal.sync() == 5
    journal.close()
    again = replay(path)
    assert again.records == [*RECORDS, *late], "nothing lost, nothing doubled"
    assert again.torn_bytes == 0 and again.corrupt_lines == ()


def test_a_failed_fsync_keeps_the_records_and_the_retry_writes_them_again_once(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    # Fault injection: EIO from fsync cannot be produced on demand, so fail the real call once.
    path = tmp_path / "journal.jsonl"
    journal, _ = Journal.open(path, now=0.0)
    journal.append(RECORDS[0])
    journal.sync()
    synced = len(b"".join(lines(path)))
    real_fsync, real_pwrite = os.fsync, os.pwrite
    failures = [OSError(errno.EIO, os.strerror(errno.EIO))]
    offsets: list[int] = []

    def flaky_fsync(fd: int) -> None:
        if failures:
            raise failures.pop()
        real_fsync(fd)

    sizes: list[int] = []

    def pwrite(fd: int, data: bytes, offset: int) -> int:  # a spy: where each real write of records lands
        if any(data):
            offsets.append(offset)
            sizes.append(len(data))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(os, "fsync", flaky_fsync)
    monkeypatch.setattr(os, "fdatasync", flaky_fsync)  # a sync within the space kept ahead flushes data only
    monkeypatch.setattr(os, "pwrite", pwrite)
    journal.append(RECORDS[1])
    with pytest.raises(JournalWriteError, match="cannot fsync the journal .*Input/output error"):
        journal.sync()
    assert journal.pending == 1
    assert replay(path).records == RECORDS[:2], "a failed fsync cuts nothing: a job may run on that record"
    journal.append(RECORDS[2])
    offsets.clear()
    sizes.clear()
    assert journal.sync() == 2
    # The new record is appended; the one whose fsync failed is written again where it was, since the
    # kernel may have dropped its pages with the error.
    assert sorted(offsets) == [synced, synced + len(orjson.dumps(RECORDS[1])) + 1]
    assert sum(sizes) == len(orjson.dumps(RECORDS[1])) + len(orjson.dumps(RECORDS[2])) + 2, "each written once"
    journal.close()
    assert replay(path).records == RECORDS[:3], "nothing lost, nothing doubled"


def test_a_failed_write_cuts_only_its_own_part_and_keeps_records_written_before(
        tiny_fs: Path) -> None:
    # The manager writes a job's start before the process exists; a later failure must not take it away.
    path = tiny_fs / "journal.jsonl"
    journal, _ = Journal.open(path, now=0.0)
    journal.append(RECORDS[0])
    journal.sync()
    journal.append({"event": "start", "id": "job1"})
    journal.write()
    fill_up(tiny_fs / "filler")
    journal.append({"event": "end", "id": "job9", "output": "y" * 6000})
    with pytest.raises(JournalWriteError, match="No space left"):
        journal.sync()
    assert replay(path).records == [RECORDS[0], {"event": "start", "id": "job1"}]
    assert replay(path).torn_bytes == 0 and journal.pending == 2
    (tiny_fs / "filler").unlink()
    assert journal.sync() == 2
    journal.close()
    assert [record["id"] for record in replay(path).records] == ["job0", "job1", "job9"]


# -- kill -9 ------------------------------------------------------------------------------------------------

WRITER = r"""
import sys
from fsqueue.journal import Journal
journal, result = Journal.open(sys.argv[1], now=0.0)
done = len(result.records)
while True:
    for _ in range(1 + done % 7):
        journal.append({"n": done, "pad": "p" * (done % 500)})
        done += 1
    journal.sync() if sys.argv[2] == "sync" else journal.write()
    print(done, flush=True)
"""


# "write": the manager writes, without an fsync, before it starts a job; the death of the process
# (not of the machine) must not lose what it wrote.
@pytest.mark.parametrize("commit", ["sync", "write"])
def test_kill_9_never_loses_a_synced_or_written_record_nor_leaves_a_partial_one(tmp_path: Path, commit: str) -> None:
    seed = time.time_ns()
    rng = random.Random(seed)
    path = tmp_path / "journal.jsonl"
    for round_ in range(6):  # each round resumes the journal the previous kill left
        writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), commit], stdout=subprocess.PIPE,
                                  cwd=REPO, start_new_session=True)
        assert writer.stdout is not None
        try:
            reports = [int(writer.stdout.readline()) for _ in range(rng.randint(1, 400))]
            os.kill(writer.pid, signal.SIGKILL)
            reports += [int(line) for line in writer.stdout.read().split()]  # synced before the kill landed
        finally:
            writer.kill()
            writer.wait(timeout=30)
            writer.stdout.close()
        journal, result = Journal.open(path, now=0.0)
        journal.close()
        numbers = [record["n"] for record in result.records]
        context = f"seed {seed}, round {round_}, last report {reports[-1]}, torn {result.torn_bytes}"
        assert numbers == list(range(len(numbers))), context
        assert len(numbers) >= reports[-1], context
        assert result.corrupt_lines == (), context
        assert replay(path).torn_bytes == 0, context
