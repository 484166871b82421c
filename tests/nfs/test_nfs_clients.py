"""Clients on one node, the manager on the other, one spool on a real NFS export (tests/nfs/conftest.py).

The manager finds what node2 writes by its scan alone (inotify sees nothing from another node), and
node2 sees what the manager writes although it looked for the same names before they existed.
"""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from fsqueue import client
from fsqueue.spool import IdMaker, Spool
from tests.conftest import wait_until

# Marked nfs, and skipped outside the guest, by tests/nfs/conftest.py.

# The bash client of docs/spool.md on another node: publish, then wait for the receipt and the final
# state. `ls` and `: < DIR` open the directory, which makes this node's NFS client ask the server
# again instead of trusting its cached "no such file" (docs/filesystems.md); the loops start before
# the manager has written anything, so without that they could wait 30-60 s.
BASH_CLIENT = r"""
printf '{"name": "from-bash", "script": "echo $((6 * 7))"}' > "$SPOOL/incoming/.x"
mv "$SPOOL/incoming/.x" "$SPOOL/incoming/x.json"
until ls "$SPOOL/receipts" >/dev/null && [ -s "$SPOOL/receipts/x.json" ]; do sleep 0.2; done
id=$(jq -r '.ids[0]' "$SPOOL/receipts/x.json")
until : < "$SPOOL/status" &&
      jq -e '.state | test("SUCCEEDED|FAILED|CANCELED|REJECTED")' "$SPOOL/status/$id.json" >/dev/null 2>&1
do sleep 0.2; done
jq -r .state "$SPOOL/status/$id.json"
cat "$(jq -r .stdout "$SPOOL/status/$id.json")"
"""


def test_submit_status_and_wait_from_the_other_node(cluster, figure):
    """The manager on node1 (its inotify watch on: it sees nothing from node2); clients on node2."""
    c, n1, n2 = cluster, cluster.node1, cluster.node2
    manager = c.start_manager(n1, "--cores", "2", "--poll", "0.5")
    spool2 = n2.local(c.spool)

    # node2 asks for a job before it exists: its NFS client now caches "no such file" for the name.
    early = IdMaker()()
    assert client.status(spool2, early) == []
    client.submit(spool2, {"id": early, "exec": "true"})
    assert c.wait_final(n1, early, manager)["state"] == "SUCCEEDED"
    # node1 has the final status file: one look from node2 must find it.
    shown = c.fsq(n2, "status", early, "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["state"] == "SUCCEEDED"

    # fsq wait polls the status file while the job runs; the manager replaces it when the job ends.
    submitted = c.fsq(n2, "submit", "--", "sh", "-c", 'sleep 8; echo "ran on $(hostname)"')
    assert submitted.returncode == 0, submitted.stderr
    [job_id] = submitted.stdout.split()
    waiter = c.start(n2, c.fsq_argv("wait", job_id, "--timeout", "300", "--poll", "0.5"), name="wait")
    done = c.wait_final(n1, job_id, manager, waiter)
    seen_final = time.monotonic()
    assert done["state"] == "SUCCEEDED" and done["manager"]["host"] == n1.name
    # With a stale cache the waiter could go on reading the RUNNING version for 30-60 s.
    wait_until(lambda: waiter.poll() is not None, 10, lambda: f"still waiting:\n{c.log(waiter)}")
    figure(f"fsq wait on node2 returned {time.monotonic() - seen_final:.2f} s after the test saw the job "
           "final through node1")
    assert waiter.returncode == 0 and c.log(waiter).split() == [job_id, "SUCCEEDED"], c.log(waiter)
    assert n2.local(done["stdout"]).read_text() == "ran on fsq-node1\n"

    bash_client = c.processes.start(n2.argv(["timeout", "120", "bash", "-euo", "pipefail", "-c", BASH_CLIENT]),
                                    env={**os.environ, "SPOOL": str(c.spool)}, name="bash")
    wait_until(lambda: bash_client.poll() is not None, 20, lambda: f"still waiting:\n{c.log(bash_client)}")
    assert bash_client.returncode == 0 and c.log(bash_client).split() == ["SUCCEEDED", "42"], c.log(bash_client)


def test_cancel_and_shutdown_from_the_other_node(cluster):
    """A manager that scans only (no inotify) takes cancel and shutdown requests published on node2."""
    c, n1, n2 = cluster, cluster.node1, cluster.node2
    manager = c.start_manager(n1, "--cores", "1", "--no-watch", "--poll", "0.5", "--grace", "60")
    spool2 = n2.local(c.spool)
    runs = n1.local(c.spool.parent / "runs")
    trap = 'trap \'echo TERM >> "$FSQ_SPOOL/../runs/$FSQ_JOB_ID"; exit 0\' TERM; sleep 300 & wait'
    [running] = client.submit(spool2, {"script": trap})
    [queued] = client.submit(spool2, {"exec": "true"})
    wait_until(lambda: c.status(n1, running).get("state") == "RUNNING" and c.status(n1, queued), 60,
               lambda: f"{c.status(n1, running)}\n{c.log(manager)}")

    canceled = c.fsq(n2, "cancel", queued, running)
    assert canceled.returncode == 0, canceled.stderr
    assert c.wait_final(n2, queued, manager)["state"] == "CANCELED"
    status = c.wait_final(n2, running, manager)
    assert (status["state"], status["reason"]) == ("CANCELED", "canceled by request")
    assert (runs / running).read_text() == "TERM\n"  # SIGTERM reached the job; it did not wait for SIGKILL

    stopped = c.fsq(n2, "shutdown")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: manager.poll() is not None, 60, lambda: c.log(manager))
    assert manager.returncode == 0, c.log(manager)
    summary = c.fsq(n2, "status", "--json")
    assert summary.returncode == 0, summary.stderr
    view = json.loads(summary.stdout)["manager"]
    assert not view["alive"] and view["host"] == n1.name and "not running since" in view["note"]
    assert Spool(spool2).read_manager_info()["phase"] == "stopped"


WRITER = """
import sys
from fsqueue.spool import IdMaker, Spool
spool, job_id, rewrites = Spool.existing(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for seq in range(1, rewrites + 1):
    # Every version has the same length: only the content tells a mix of two versions apart.
    spool.write_status(job_id, {"id": job_id, "seq": seq, "pad": str(seq % 10) * 300_000})
"""


def test_status_rewritten_on_one_node_is_read_whole_on_the_other(cluster, figure):
    """The manager's own write_status, looping on node1; node2 reads with read_status meanwhile.
    300 kB per version is more than one NFS READ (rsize 256 KiB here)."""
    c, n1, n2 = cluster, cluster.node1, cluster.node2
    spool1 = Spool.create(n1.local(c.spool))
    job_id, rewrites = "1m8c48rwg02wzp6f", 150
    spool1.write_status(job_id, {"id": job_id, "seq": 0, "pad": "0" * 300_000})
    reader = Spool(n2.local(c.spool))
    wait_until(lambda: reader.read_status(job_id), 30, "the first version, from node2")
    writer = c.start(n1, [sys.executable, "-c", WRITER, str(c.spool), job_id, str(rewrites)], name="writer")
    seqs = []
    while True:
        alive = writer.poll() is None
        doc = reader.read_status(job_id)
        assert doc is not None, f"status file missing on node2 after {len(seqs)} reads"
        seq = doc["seq"]
        assert doc["id"] == job_id and doc["pad"] == str(seq % 10) * 300_000, f"mixed read at seq {seq}"
        assert not seqs or seq >= seqs[-1], f"seq went back from {seqs[-1]} to {seq}"
        seqs.append(seq)
        if not alive:
            break
    assert writer.returncode == 0, c.log(writer)
    if seqs[-1] != rewrites:  # read after the writer ended: it must be the last version
        stale = time.monotonic()
        while (reader.read_status(job_id) or {}).get("seq") != rewrites and time.monotonic() - stale < 90:
            time.sleep(0.1)
        pytest.fail(f"node2 read seq {seqs[-1]} after node1 had written {rewrites} and exited; it read "
                    f"{rewrites} {time.monotonic() - stale:.1f} s later")
    overlapped = len(set(seqs[:-1]))
    assert overlapped >= 2, f"the reads did not overlap the rewrites (seqs {sorted(set(seqs))})"
    figure(f"status file of 300 kB: {rewrites} rewrites on node1, {len(seqs)} reads on node2 seeing "
           f"{overlapped} versions, 0 torn or mixed, 0 missing")
