"""Wake the manager early when a file appears in a drop directory on this node.

Events are hints, never the truth (rule R6): inotify does not see files written on other nodes of a
shared filesystem, and its queue can overflow. So a watch only makes the manager's next scan come
sooner; the periodic scan finds everything anyway. watchdog's PollingObserver is never used: it stats
every entry every second (rule R7).

On Linux the manager reads inotify itself, in its own loop. watchdog passes each event through three
threads (the inotify reader, the emitter, the observer); a bash loop that drops a file per
millisecond makes about seven events per file, and every one woke those threads, which then took the
cores from the jobs and from the loop itself (measured in docs/performance.md). Elsewhere (a laptop
running macOS) watchdog's native observer does the job.
"""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Protocol


class Waker:
    """A pipe the manager sleeps on; anything may write one byte to it to end the sleep early."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is already pending

    def drain(self) -> bool:
        """Empty the pipe; whether anything was in it."""
        woken = False
        for _ in _available(self.read_fd, 4096):
            woken = True
        return woken

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


def _available(fd: int, size: int) -> Iterator[bytes]:
    """What a non-blocking descriptor holds now, read by chunks of at most `size` until it has no more."""
    while True:
        try:
            chunk = os.read(fd, size)
        except BlockingIOError:
            return
        if not chunk:
            return
        yield chunk


class DirectoryWatch(Protocol):
    """Watches a few directories (not recursively) for files published in them."""

    def fileno(self) -> int:
        """A descriptor that becomes readable when something may have been published."""

    def published(self) -> bool:
        """Consume what made the descriptor readable; whether a file may have been published."""

    def close(self) -> None: ...


def watch_directories(directories: Sequence[Path]) -> DirectoryWatch:
    """The best watch this platform has."""
    if sys.platform.startswith("linux"):
        return InotifyWatch(directories)
    return WatchdogWatch(directories)


# -- Linux: inotify, read in the manager's own loop -----------------------------------------------------

IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_DONT_FOLLOW = 0x02000000
IN_CLOEXEC = os.O_CLOEXEC
IN_NONBLOCK = os.O_NONBLOCK
_EVENT = struct.Struct("iIII")  # struct inotify_event: wd, mask, cookie, len; then len bytes of name


class InotifyWatch:
    """Publishing ends with a rename into the directory (IN_MOVED_TO) or with the close of a file
    written in place (IN_CLOSE_WRITE); those are the only events asked for. The manager's own claims
    (renames out) and a writer's staging under a dot-name make no wake-up."""

    def __init__(self, directories: Sequence[Path]) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if self._fd < 0:
            raise _os_error("inotify_init1", "")
        try:
            for directory in directories:
                mask = IN_MOVED_TO | IN_CLOSE_WRITE | IN_ONLYDIR | IN_DONT_FOLLOW
                if libc.inotify_add_watch(self._fd, os.fsencode(directory), mask) < 0:
                    raise _os_error("inotify_add_watch", str(directory))
        except BaseException:
            os.close(self._fd)
            raise

    def fileno(self) -> int:
        return self._fd

    def published(self) -> bool:
        found = False
        for data in _available(self._fd, 65536):
            offset = 0
            while offset < len(data):
                _, mask, _, length = _EVENT.unpack_from(data, offset)
                name = data[offset + _EVENT.size:offset + _EVENT.size + length].rstrip(b"\0")
                offset += _EVENT.size + length
                # An overflow lost events; a lost watch (the directory went away) is for the scan to report.
                if mask & (IN_Q_OVERFLOW | IN_IGNORED) or (name and not name.startswith(b".")):
                    found = True
        return found

    def close(self) -> None:
        os.close(self._fd)


def _os_error(call: str, path: str) -> OSError:
    number = ctypes.get_errno() or errno.EIO
    return OSError(number, f"{call}: {os.strerror(number)}", path)


# -- elsewhere: watchdog's native observer ----------------------------------------------------------------


class WatchdogWatch:
    def __init__(self, directories: Sequence[Path]) -> None:
        from watchdog.events import FileSystemEvent, FileSystemEventHandler
        from watchdog.observers import Observer

        waker = self._waker = Waker()

        class WakeOnPublish(FileSystemEventHandler):
            def on_any_event(self, event: FileSystemEvent) -> None:
                # Publishing is a rename (moved) or a close after writing in place (closed, or created
                # where the platform reports no close); dot-names are staging files and locks.
                if event.event_type not in ("moved", "created", "closed"):
                    return
                path = event.dest_path if event.event_type == "moved" else event.src_path
                if not os.path.basename(os.fsdecode(path)).startswith("."):
                    waker.wake()

        self._observer = Observer()
        handler = WakeOnPublish()
        for directory in directories:
            self._observer.schedule(handler, str(directory), recursive=False)
        self._observer.daemon = True
        self._observer.start()

    def fileno(self) -> int:
        return self._waker.read_fd

    def published(self) -> bool:
        return self._waker.drain()

    def close(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
        self._waker.close()
