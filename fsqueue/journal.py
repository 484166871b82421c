"""The manager's journal: an append-only, fsynced record of its transitions, replayed on restart (R16).

The manager writes a record before it acts ("journal before act") and replays the records when it
starts again; what the records mean is the manager's business, this module stores JSON objects.

Format: JSON Lines. Line 1 is the header `{"fsqueue_journal": 1, "created": ..., "host": ..., "pid": ...}`;
every other line is one record, one JSON object followed by a newline. A record counts only once its
newline is on disk, so `jq -c . journal` or `tail` read it as it is.

Durability is by group commit: append() buffers, write() puts what is pending into the file with one
write (it then survives the writer's death, not a crash of the machine), and sync() writes and makes it
durable with one fsync. The manager writes before it launches anything and syncs before it writes
status files (docs/reliability.md says why). Nothing here is durable before sync() returns.

Damage and what replay does with it:
- A torn tail (a crash during a write leaves a record without its newline, or a block of garbage or
  zeros after the last whole record) is the expected damage: everything after the last readable record
  is dropped, and Journal.open cuts the file back to it, so the next record starts on a clean line.
- An unreadable line followed by readable ones cannot come from a crash of our single writer after an
  fsync; it is real corruption (or a crash inside one unsynced group on a filesystem that persists
  blocks out of order). Such lines are skipped and reported (Replay.corrupt_lines) and the file is left
  as it is, so the evidence stays until the manager compacts; the records around them are kept.
- A failed write (ENOSPC, EDQUOT, EIO) cuts off what part of its records reached the file, with
  ftruncate on the same descriptor; records written before stay, since the manager may have started
  a job on their word. A failed fsync leaves the file as it is. Either way the records stay pending
  and JournalWriteError is raised; the next sync() writes them again at the same offsets (after a
  failed fsync the kernel may have dropped the pages), so a retry neither loses nor duplicates a record.

Single writer: only the manager that holds the spool's lease opens the journal (R12, R13). Opened with
O_NOFOLLOW (a symbolic link is refused) and O_CLOEXEC (launched jobs do not inherit it), not O_APPEND:
records go at known offsets with pwrite, into the zeros kept ahead.
"""

from __future__ import annotations

import errno
import os
import secrets
import socket
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import orjson

from fsqueue.errors import JournalError, JournalWriteError
from fsqueue.spool import fsync_dir, write_all

VERSION = 1
HEADER_KEY = "fsqueue_journal"
_OPEN_FLAGS = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW
# Zeros written ahead of the records: a record then lands in blocks the file already has, and
# fdatasync flushes data only. A sync that grows the file must also commit its size, and on ext4 that
# commit makes every file created meanwhile (status files, job outputs) wait: 62 -> 119 us per open,
# 0.35 -> 0.74 ms per record in a loop like the manager's (measured 2026-11-26).
RESERVE = 1 << 20


@dataclass(frozen=True)
class Replay:
    """What a journal holds: its header, its records in order, and the damage found on the way."""

    header: dict[str, Any]
    records: list[dict[str, Any]]
    torn_bytes: int  # bytes after the last whole record: dropped (and cut off by Journal.open)
    corrupt_lines: tuple[int, ...] = ()  # 1-based line numbers of unreadable lines that were skipped
    reserved: int = 0  # zero bytes at the end, written ahead by a journal that was open (not damage)


def replay(path: str | os.PathLike[str]) -> Replay:
    """Read a journal without changing it: for tools and tests. Journal.open also repairs the tail."""
    fd = _open(Path(path), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    if fd is None:
        raise JournalError(f"no journal at {path}")
    try:
        return _parse(_read_all(fd), Path(path))
    finally:
        os.close(fd)


class Journal:
    """An open journal: append() buffers records, write() hands them to the kernel, sync() makes them
    durable, compact() rewrites the file."""

    def __init__(self, path: Path, fd: int, synced: int) -> None:
        self.path = path
        self._fd = fd
        self._synced = synced  # where the last durable record ends; zeros (RESERVE) may follow
        self._written = synced  # where the last written record ends (not durable past _synced)
        self._size = os.fstat(fd).st_size
        # Records not durable yet; the first _pending_written of them are in the file, up to _written.
        self._pending: list[bytes] = []
        self._pending_written = 0
        self._grown = False  # the file's size changed since the last sync: fsync, not fdatasync
        # An fsync failed: the kernel may have dropped the written pages, so the next sync writes them again.
        self._rewrite = False

    @classmethod
    def open(cls, path: str | os.PathLike[str], *, now: float) -> tuple[Journal, Replay]:
        """Open the journal at `path` (creating it, with a header stamped `now`, if absent) and replay it.

        A torn tail is cut off here, so that appends start on a clean line; Replay.torn_bytes says how much.
        """
        path = Path(path)
        fd = _open(path, _OPEN_FLAGS)
        created = fd is None
        if fd is None:
            fd = _write_new(path, _header(now))
        try:
            if created:
                _sync_directory(path)
            data = _read_all(fd)
            result = _parse(data, path)
            end = len(data) - result.reserved - result.torn_bytes
            if result.torn_bytes:
                os.ftruncate(fd, end)
            if not created:
                # What a killed writer handed to the kernel is durable from here on: the caller acts on
                # it (receipts, repaired status files) before it writes anything of its own.
                os.fsync(fd)
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd, end), result

    @property
    def pending(self) -> int:
        """How many appended records are not durable yet."""
        return len(self._pending)

    def append(self, record: dict[str, Any]) -> None:
        """Buffer one record; it is durable only after the next sync() returns."""
        self._pending.append(_line(record))

    def write(self) -> None:
        """Write the records appended since the last write() into the file, with one write, no fsync.

        From then on they survive the death of this process (the kernel holds them) but not a crash
        of the machine: sync() makes them durable. On failure the part written of them is cut off
        again (records written before stay: a job may have been started on their word), they stay
        pending, and JournalWriteError says what failed. The next write starts again at the same
        offset with the same records first, so it also covers any part the cut could not take away.
        """
        if self._pending_written == len(self._pending):
            return
        data = b"".join(self._pending[self._pending_written:])
        end = self._written + len(data)
        try:
            if end > self._size:
                self._reserve(end + RESERVE)
                self._grown = True
            _write_all_at(self._fd, data, self._written)
            self._size = max(self._size, end)  # past the reserve, if none could be kept
        except OSError as error:
            raise JournalWriteError(self._failed(error)) from error
        self._written, self._pending_written = end, len(self._pending)

    def sync(self) -> int:
        """write(), then make every written record durable with one fsync; return how many became durable.

        On failure the records stay in the file and pending, JournalWriteError says what failed, and
        calling sync() again writes them again at the same offsets (after a failed fsync the kernel
        may have dropped them) and retries.
        """
        if not self._pending:
            return 0
        dropped = self._pending[:self._pending_written] if self._rewrite else []  # before this call's write()
        self.write()
        step = "write"
        try:
            if dropped:
                _write_all_at(self._fd, b"".join(dropped), self._synced)
            step = "fsync"
            os.fsync(self._fd) if self._grown else os.fdatasync(self._fd)
        except OSError as error:
            self._rewrite = True
            raise JournalWriteError(self._message(step, error)) from error
        self._synced, self._grown, self._rewrite = self._written, False, False
        count, self._pending, self._pending_written = len(self._pending), [], 0
        return count

    def _reserve(self, size: int) -> None:
        """Zeros ahead, so that most syncs need not commit a new size; on a full disk, no reserve."""
        try:  # from _size, never over a record: _written <= _size always
            _write_all_at(self._fd, bytes(size - self._size), self._size)
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            os.ftruncate(self._fd, self._size)  # the records themselves may still fit
            return
        self._size = size

    def compact(self, records: Iterable[dict[str, Any]], *, now: float) -> None:
        """Replace the journal with a new one holding only a header and `records`, in one rename.

        The new file is written and fsynced beside the old one, renamed over it, and the directory is
        fsynced; appends then go to the new file. A crash leaves the old journal or the new one, whole.
        Records still pending stay pending and go to the new file at the next sync().
        """
        body = b"".join(_line(record) for record in records)
        fd = _write_new(self.path, _header(now) + body)
        old, self._fd, self._synced = self._fd, fd, os.fstat(fd).st_size
        self._size = self._written = self._synced
        self._pending_written, self._grown, self._rewrite = 0, False, False
        os.close(old)
        _sync_directory(self.path)

    def close(self) -> None:
        """Sync what is pending, then close the file (also when the sync fails, which then raises)."""
        try:
            self.sync()
            os.ftruncate(self._fd, self._synced)  # no zeros left for tail, jq and friends after a clean stop
        finally:
            os.close(self._fd)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _failed(self, error: OSError) -> str:
        """A write after _written failed: cut off what of it reached the file, so whole records only remain.

        If the cut fails too, the next write covers those bytes: it writes the same records again from
        _written, then any appended since (compact() leaves this file behind altogether).
        """
        message = self._message("write", error)
        try:
            os.ftruncate(self._fd, self._written)
            self._size = self._written
        except OSError as cut:
            message += (f" (cutting the file back to {self._written} bytes failed too: {cut.strerror}; "
                        f"the next write covers the partial bytes)")
        return message

    def _message(self, step: str, error: OSError) -> str:
        message = (f"cannot {step} the journal {self.path}: {error.strerror}; {len(self._pending)} records are "
                   f"kept and written again at the next sync")
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            message += f": free space or quota on that filesystem (df {self.path.parent})"
        return message


def _header(now: float) -> bytes:
    header = {HEADER_KEY: VERSION, "created": now, "host": socket.gethostname(), "pid": os.getpid()}
    return orjson.dumps(header, option=orjson.OPT_APPEND_NEWLINE)


def _line(record: dict[str, Any]) -> bytes:
    if not isinstance(record, dict):  # replay reads only objects; anything else would come back as corruption
        raise TypeError(f"a journal record is a dict, not {type(record).__name__}")
    # A copy of its own size: orjson 3.13 returns each result in a 4 KiB buffer it does not shrink, and
    # 100,000 pending or compacted records would hold 400 MiB (measured by scripts/bench/recover).
    return bytes(memoryview(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)))


def _open(path: Path, flags: int) -> int | None:
    """Open an existing journal; None if there is none. Refuses links and anything but a regular file."""
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ELOOP:
            raise JournalError(f"the journal {path} is a symbolic link; refusing to follow it: "
                               f"replace it with the file it points to") from error
        raise JournalError(f"cannot open the journal {path}: {error.strerror}") from error
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise JournalError(f"the journal {path} is not a regular file: move it aside")
    return fd


def _write_new(path: Path, data: bytes) -> int:
    """Write `data` to a new file beside `path`, fsync it and rename it over `path`.

    Returns the new file's descriptor, opened for appending; the caller then syncs the directory. A
    journal thus never exists without its header, and a crash during compaction leaves the old one whole.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, _OPEN_FLAGS | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
        os.rename(tmp, path)
    except OSError as error:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise JournalWriteError(f"cannot write a new journal {path}: {error.strerror}; the old one, if any, "
                                f"is unchanged: free space on that filesystem (df {path.parent})") from error
    return fd


def _sync_directory(path: Path) -> None:
    try:
        fsync_dir(path.parent)
    except OSError as error:
        raise JournalWriteError(f"cannot sync the directory of the journal {path}: {error.strerror}") from error


def _parse(data: bytes, path: Path) -> Replay:
    reserved = len(data) - len(data.rstrip(b"\0"))
    data = data[: len(data) - reserved]
    end = data.find(b"\n")
    header = _loads(data[:end]) if end >= 0 else None
    if header is None or HEADER_KEY not in header:
        raise JournalError(f"{path} is not an fsqueue journal (its first line is not a journal header): "
                           f"move it aside (mv {path} {path}.bad) and start the manager again")
    if type(header[HEADER_KEY]) is not int or header[HEADER_KEY] != VERSION:  # bool is an int: `true` is no version
        raise JournalError(f"the journal {path} has format version {header[HEADER_KEY]!r}, and this fsqueue "
                           f"reads version {VERSION}: use the fsqueue that wrote it, or move the journal aside")
    records: list[dict[str, Any]] = []
    corrupt: list[int] = []
    unreadable: list[int] = []  # since the last whole record: corrupt if a record follows, else torn tail
    good_end = position = end + 1
    line = 1
    while (end := data.find(b"\n", position)) >= 0:
        line += 1
        record = _loads(data[position:end])
        if record is None:
            unreadable.append(line)
        else:
            corrupt += unreadable
            unreadable = []
            records.append(record)
            good_end = end + 1
        position = end + 1
    return Replay(header, records, len(data) - good_end, tuple(corrupt), reserved)


def _loads(line: bytes) -> dict[str, Any] | None:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def _read_all(fd: int) -> bytes:
    chunks, offset = [], 0
    while chunk := os.pread(fd, 1 << 20, offset):
        chunks.append(chunk)
        offset += len(chunk)
    return b"".join(chunks)


def _write_all_at(fd: int, data: bytes, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written

