"""The directory watches on real directories: which changes wake the manager and which do not.

inotify queues an event in the kernel before the system call that made it returns, so what the
InotifyWatch reports right after a change is final: no waiting. watchdog's observer hands events
through threads, so its test waits for the descriptor with a deadline.
"""

from __future__ import annotations

import logging
import os
import select
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from fsqueue.manager import Settings
from fsqueue.serve import _watch
from fsqueue.spool import Spool
from fsqueue.watch import InotifyWatch, WatchdogWatch, watch_directories

pytestmark = pytest.mark.skipif(not os.path.exists("/proc/sys/fs/inotify"), reason="Linux inotify")


@pytest.fixture
def drop_boxes(spool: Spool) -> tuple[Path, Path]:
    """The directories the manager watches (serve._watch)."""
    return spool.incoming, spool.control


@pytest.fixture
def watch(drop_boxes: tuple[Path, Path]) -> Iterator[InotifyWatch]:
    inotify = InotifyWatch(drop_boxes)
    yield inotify
    inotify.close()


def readable(fd: int, timeout: float = 0.0) -> bool:
    return bool(select.select([fd], [], [], timeout)[0])


def test_nothing_changed_wakes_nothing(watch: InotifyWatch) -> None:
    assert not readable(watch.fileno())
    assert watch.published() is False


def test_a_rename_into_a_drop_box_wakes_the_manager(watch: InotifyWatch, drop_boxes: tuple[Path, Path]) -> None:
    incoming, _ = drop_boxes
    (incoming / ".staged").write_text("{}")
    os.rename(incoming / ".staged", incoming / "job.json")
    assert readable(watch.fileno())
    assert watch.published() is True
    assert watch.published() is False, "the events were consumed"


def test_a_file_written_in_place_wakes_the_manager_when_closed(watch: InotifyWatch,
                                                               drop_boxes: tuple[Path, Path]) -> None:
    _, control = drop_boxes
    with open(control / "cancel.json", "w") as request:
        request.write('{"action": "cancel"')
        request.flush()  # in the file, not only in Python's buffer
        assert watch.published() is False, "open and written, not closed: the writer is not done"
        request.write("}")
    assert watch.published() is True


def test_staging_files_locks_and_claims_wake_nothing(watch: InotifyWatch, spool: Spool) -> None:
    incoming = spool.incoming
    (spool.tmp / "job.json").write_text("{}")
    os.rename(spool.tmp / "job.json", incoming / "job.json")
    assert watch.published() is True
    (incoming / ".job2.json.tmp").write_text("{}")  # a staging file, closed after writing
    (incoming / ".job2.json.lock").touch()  # a courtesy lock
    assert spool.claim(incoming, "job.json")  # the manager's own claim
    os.unlink(incoming / ".job2.json.tmp")
    assert readable(watch.fileno()), "the kernel did report the staging file's close"
    assert watch.published() is False


def test_a_lost_event_wakes_the_manager(watch: InotifyWatch, drop_boxes: tuple[Path, Path]) -> None:
    """More events than the kernel queues (fs.inotify.max_queued_events): the queue overflows, events are
    lost, and the watch wakes the manager so that its scan finds what they were about."""
    incoming, _ = drop_boxes
    limit = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text())
    if limit > 200_000:
        pytest.skip(f"fs.inotify.max_queued_events is {limit}: too many files to overflow it")
    # Closes of two staging files in turn (the kernel merges an event only into an identical last one);
    # none of them would wake the manager by itself.
    staging = [os.fspath(incoming / ".a"), os.fspath(incoming / ".b")]
    for number in range(limit + 10):
        os.close(os.open(staging[number % 2], os.O_WRONLY | os.O_CREAT, 0o600))
    assert watch.published() is True


def test_a_watch_on_a_missing_directory_raises_oserror(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        watch_directories([tmp_path / "gone"])


def test_a_symlinked_drop_box_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "incoming").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(NotADirectoryError):
        InotifyWatch([tmp_path / "incoming"])


def test_watch_directories_picks_inotify_on_linux(drop_boxes: tuple[Path, Path]) -> None:
    chosen = watch_directories(drop_boxes)
    try:
        assert isinstance(chosen, InotifyWatch)
    finally:
        chosen.close()


def test_the_watchdog_watch_wakes_on_a_rename(drop_boxes: tuple[Path, Path], tmp_path: Path) -> None:
    """The watch other platforms get, run here on watchdog's inotify observer."""
    incoming, _ = drop_boxes
    fallback = WatchdogWatch(drop_boxes)
    try:
        (tmp_path / "job.json").write_text("{}")
        os.rename(tmp_path / "job.json", incoming / "job.json")
        assert readable(fallback.fileno(), timeout=10), "no wake-up within 10 s"
        assert fallback.published() is True
    finally:
        fallback.close()


def test_a_manager_that_cannot_watch_polls_and_says_so(spool: Spool, caplog: pytest.LogCaptureFixture) -> None:
    manager = types.SimpleNamespace(spool=spool, settings=Settings(poll=7.0))  # what _watch reads of one
    os.rmdir(spool.control)
    with caplog.at_level(logging.WARNING, logger="fsqueue.serve"):
        assert _watch(manager) is None  # type: ignore[arg-type]
    assert "files are found by the scan every 7 s" in caplog.text
