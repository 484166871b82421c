"""Wake the manager early when a file appears in a drop directory on this node.

Events are hints, never the truth (rule R6): inotify does not see files written on other nodes of a
shared filesystem, and its queue can overflow. So the watcher only makes the manager's next scan come
sooner; the periodic scan finds everything anyway. watchdog's PollingObserver is never used: it stats
every entry every second (rule R7).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

try:  # watchdog 7 on Linux
    from watchdog.observers.inotify_move_event_grouper import (
        InotifyMoveEventGrouper as _MoveGrouper,
    )
except ImportError:  # other platforms, other versions
    _MoveGrouper = None


class Waker:
    """A pipe the manager sleeps on; anything may write one byte to it to end the sleep early."""

    def __init__(self) -> None:
        self.read_fd, self.write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        try:
            os.write(self.write_fd, b"\0")
        except BlockingIOError:
            pass  # the pipe is full: a wake-up is already pending

    def drain(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(self.read_fd, 4096)
            except BlockingIOError:
                return b"".join(chunks)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)

    def close(self) -> None:
        os.close(self.read_fd)
        os.close(self.write_fd)


class _WakeOnCreate(FileSystemEventHandler):
    def __init__(self, waker: Waker) -> None:
        self._waker = waker

    def on_any_event(self, event: FileSystemEvent) -> None:
        # Publishing is a rename (moved) or a close after writing in place (closed); both end a write.
        # Dot-names are staging files and locks: the scan ignores them, so they wake nothing.
        if event.event_type not in ("moved", "created", "closed"):
            return
        path = event.dest_path if event.event_type == "moved" else event.src_path
        name = os.path.basename(os.fsdecode(path))
        if not name.startswith("."):
            self._waker.wake()


class DirectoryWatch:
    """Watches a few directories (not recursively) with the platform's native observer."""

    def __init__(self, directories: Sequence[Path], waker: Waker) -> None:
        if _MoveGrouper is not None:
            # watchdog holds every IN_MOVED_FROM for 0.5 s to pair it with its IN_MOVED_TO, and events
            # queue behind it in order. The manager's own claims (rename out of incoming/) make such
            # events, so every file published within 0.5 s of a claim woke it 0.5 s late (measured:
            # 0.46 s median submit-to-start for jobs sent back to back, 1.5 ms when spaced). We need
            # no pairing: any event only wakes the manager, whose scan then reads the directory.
            _MoveGrouper.delay = 0.0
        self._observer = Observer()
        handler = _WakeOnCreate(waker)
        for directory in directories:
            self._observer.schedule(handler, str(directory), recursive=False)

    def start(self) -> None:
        self._observer.daemon = True
        self._observer.start()

    def stop(self) -> None:
        self._observer.stop()
        self._observer.join(timeout=5)
