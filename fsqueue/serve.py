"""Serve a spool: become its one manager, then loop over Manager.step until stopped or drained.

The loop sleeps on two descriptors: a pipe that SIGCHLD (a job ended) and SIGTERM write to, and the
directory watch (a file arrived on this node). It wakes at least every `poll` seconds to scan the drop
directories, because files written on other nodes raise no event here.
"""

from __future__ import annotations

import logging
import os
import selectors
import signal
import time
from collections.abc import Mapping
from typing import Any

from filelock import FileLock, Timeout

from fsqueue.errors import LeaseLost, ManagerBusy
from fsqueue.lease import Lease, Owner
from fsqueue.manager import Manager, Now, Phase
from fsqueue.spool import Spool
from fsqueue.watch import DirectoryWatch, Waker, watch_directories

log = logging.getLogger(__name__)


def claim_spool(spool: Spool, now: float) -> FileLock:
    """Take manager.lock, or raise ManagerBusy naming the manager that holds it.

    The lock answers a second manager on this node at once (and on others where flock reaches). It
    is not the rule across nodes, where flock may not hold (NFS with nolock, Lustre without flock):
    the lease is (take_lease).
    """
    lock = FileLock(str(spool.manager_lock), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = spool.read_manager_info() or {}  # again: the holder may have written its heartbeat since
        if holder.get("phase") in (None, Phase.STOPPED):
            raise ManagerBusy(f"another manager serves {spool.root}: it holds {spool.manager_lock} and is starting "
                              f"(no heartbeat yet); see `fsq status --spool {spool.root}` in a few seconds") from None
        raise ManagerBusy(_busy_message(spool, holder, now)) from None
    return lock


def _busy_message(spool: Spool, info: Mapping[str, Any], now: float) -> str:
    age = now - float(info.get("heartbeat", now))
    return (
        f"another manager serves {spool.root}: host {info.get('host', '?')}, pid {info.get('pid', '?')}, "
        f"Slurm job {info.get('slurm_job_id') or '-'}, last heartbeat {age:.1f} s ago; "
        f"stop it with `fsq shutdown --spool {spool.root}` first"
    )


def take_lease(manager: Manager) -> Lease:
    """The lease that keeps a second manager out on every node, where flock may not reach (rule R13)."""
    owner = Owner.this_process(manager.identity.get("slurm_job_id"))
    lease = Lease.acquire(manager.spool.manager_lease, owner, interval=manager.settings.heartbeat, now=time.time())
    if lease.took_over:
        log.warning("%s", lease.took_over)
    return lease


def run(manager: Manager, *, stop_signals: tuple[int, ...] = (signal.SIGTERM, signal.SIGINT)) -> None:
    """Serve until stopped (SIGTERM, SIGINT, `fsq shutdown`) or, in drain mode, until idle."""
    lock = claim_spool(manager.spool, time.time())
    try:
        lease = take_lease(manager)
    except BaseException:
        lock.release()
        raise
    nodes = ", ".join(f"{node.name}:{node.cores}" for node in manager.allocation.nodes)
    log.info("serving %s with %d cores (%s), pid %d", manager.spool.root, manager.allocation.total_cores, nodes,
             os.getpid())
    try:
        _serve(manager, stop_signals, lease)
    finally:
        lease.release()
        lock.release()


def _renew(manager: Manager, lease: Lease, now: Now) -> None:
    try:
        lease.renew()
    except LeaseLost as error:
        log.error("%s", error)
        manager.stop("lost the manager lease", now)
    except OSError as error:  # a full or failing filesystem: the holder keeps serving and tries again
        log.error("cannot renew the manager lease %s: %s", lease.path, error)


def _serve(manager: Manager, stop_signals: tuple[int, ...], lease: Lease) -> None:
    waker = Waker()
    received: list[int] = []

    def on_stop(signum: int, _frame: object) -> None:
        received.append(signum)

    previous = {signum: signal.signal(signum, on_stop) for signum in stop_signals}
    previous[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, lambda *_: None)
    old_wakeup = signal.set_wakeup_fd(waker.write_fd, warn_on_full_buffer=False)
    selector = selectors.DefaultSelector()
    selector.register(waker.read_fd, selectors.EVENT_READ)
    watch = _watch(manager) if manager.settings.watch else None
    if watch:
        selector.register(watch, selectors.EVENT_READ)
    try:
        manager.recover(_now())
        woken_by_event = True
        renewed = time.monotonic()
        while True:
            if received and manager.phase != Phase.STOPPING:
                manager.stop(signal.Signals(received[-1]).name, _now())
            if time.monotonic() - renewed >= manager.settings.heartbeat:
                renewed = time.monotonic()
                _renew(manager, lease, _now())
            manager.step(_now(), woken_by_event)
            if manager.finished:
                break
            now = _now()
            timeout = max(0.0, manager.next_deadline(now) - now.mono)
            woken_by_event = False
            for key, _ in selector.select(timeout):
                if key.fileobj is watch:
                    woken_by_event = watch.published()
                else:
                    waker.drain()  # signals: a job ended, or a stop
        manager.phase = Phase.STOPPED
        manager.finish(_now())
    finally:
        if watch:
            watch.close()
        signal.set_wakeup_fd(old_wakeup)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        selector.close()
        waker.close()


def _watch(manager: Manager) -> DirectoryWatch | None:
    directories = [manager.spool.incoming, manager.spool.control]
    try:
        return watch_directories(directories)
    except OSError as error:  # out of inotify instances or watches (fs.inotify.max_user_*): a shared login node
        log.warning("cannot watch %s: %s; files are found by the scan every %g s (--poll)",
                    " and ".join(map(str, directories)), error.strerror, manager.settings.poll)
        return None


def _now() -> Now:
    return Now(time.time(), time.monotonic())
