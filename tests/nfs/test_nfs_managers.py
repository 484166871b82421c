"""One manager per spool across two NFS clients, and a manager that moves from one node to the other.

flock reaches across the two clients of this NFS setup (../shared/nfs/README.md), and each node has
its own host name, so both rules are in play: manager.lock (flock) and manager.lease, which a new
manager on another host takes over only once it has watched it stay unchanged (3 x 2 s + 5 s).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time

from fsqueue import client
from tests.conftest import wait_until

# Marked nfs, and skipped outside the guest, by tests/nfs/conftest.py.

# Each run of a job appends "ATTEMPT HOST" to runs/ID, beside the spool, so that a second run shows.
LOG_RUN = 'echo "$FSQ_ATTEMPT $(hostname)" >> "$FSQ_SPOOL/../runs/$FSQ_JOB_ID"'


def test_two_managers_started_on_two_nodes_one_serves(cluster):
    c, n1, n2 = cluster, cluster.node1, cluster.node2
    procs = {node.name: c.start_manager(node, "--cores", "1", "--poll", "0.5", wait=False) for node in (n1, n2)}

    def settled() -> bool:
        running = [proc for proc in procs.values() if proc.poll() is None]
        return len(running) == 1 and c.serving(n1) == running[0].pid

    wait_until(settled, 90, lambda: "\n".join(f"{name}: exit {p.poll()}\n{c.log(p)}" for name, p in procs.items()))
    [winner] = [name for name, proc in procs.items() if proc.poll() is None]
    [loser] = [name for name in procs if name != winner]
    message = c.log(procs[loser])
    assert procs[loser].returncode == 2, message
    assert f"fsq: another manager serves {c.spool}" in message

    # Once the winner has written its heartbeat, a later start on the loser's node names it.
    named = f"host {winner}, pid {procs[winner].pid}"
    again = c.fsq(n1 if loser == n1.name else n2, "manager", "--cores", "1")
    assert again.returncode == 2 and named in again.stderr, again.stderr
    assert c.serving(n2) == procs[winner].pid and procs[winner].poll() is None
    # Started together, the loser may find the lock taken before the winner's first heartbeat: then it
    # names the lock, never "host ?, pid ?".
    assert named in message or str(c.spool / "manager.lock") in message, message


def test_manager_killed_on_one_node_restarts_on_the_other_and_loses_no_job(cluster, figure):
    c, n1, n2 = cluster, cluster.node1, cluster.node2
    spool2, runs = n2.local(c.spool), n1.local(c.spool.parent / "runs")
    # node2 submits everything before any manager runs and asks for each job once: its NFS client has
    # cached that none of the status files exists, which the manager recovering on node2 must not believe.
    [early] = client.submit(spool2, {"script": LOG_RUN})
    # Blocks the only core on its first attempt; ends at once when run again.
    [blocker] = client.submit(spool2, {"script": f'{LOG_RUN}; [ "$FSQ_ATTEMPT" = 1 ] || exit 0; '
                                                 'echo $$ > "$FSQ_SPOOL/../runs/blocker.pid"; exec sleep 300'})
    queued = client.submit(spool2, [{"script": LOG_RUN}] * 3)
    every = [early, blocker, *queued]
    assert all(client.status(spool2, job_id) == [] for job_id in every)

    first = c.start_manager(n1, "--cores", "1", "--poll", "0.5")
    try:
        wait_until(lambda: c.status(n1, blocker).get("state") == "RUNNING", 60,
                   lambda: f"{c.status(n1, blocker)}\n{c.log(first)}")
        assert c.status(n1, early)["state"] == "SUCCEEDED"
        os.killpg(first.pid, signal.SIGKILL)
        first.wait()
        killed = time.monotonic()
        # Started at once: it watches node1's lease, which no longer changes, for 3 x 2 s + 5 s (it
        # cannot tell a dead manager on another host sooner), then takes it over and recovers.
        second = c.start_manager(n2, "--cores", "1", "--poll", "0.5", "--drain", wait=False)
        wait_until(lambda: second.poll() is not None, 180, lambda: c.log(second))
        figure(f"failover: node2's manager, started right after node1's was killed, drained the spool "
               f"{time.monotonic() - killed:.1f} s later (11 s of it watching the dead manager's lease)")
        assert "took over from host fsq-node1" in c.log(second), c.log(second)
    finally:
        pid_file = runs / "blocker.pid"
        if pid_file.exists():
            # The orphan of the killed manager. The two "nodes" of the guest share one kernel, so node2's
            # manager sees it in /proc and has stopped it already, as it would on node1 itself.
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert second.returncode == 0, c.log(second)

    statuses = {job_id: c.status(n1, job_id) for job_id in every}  # read back on node1
    assert {doc["state"] for doc in statuses.values()} == {"SUCCEEDED"}, statuses
    assert (runs / early).read_text() == "1 fsq-node1\n"  # finished before the kill: never run again
    assert (runs / blocker).read_text() == "1 fsq-node1\n2 fsq-node2\n"
    assert statuses[blocker]["attempt"] == 2, statuses[blocker]
    for job_id in queued:
        assert (runs / job_id).read_text() == "1 fsq-node2\n"
        assert statuses[job_id]["manager"]["host"] == n2.name
