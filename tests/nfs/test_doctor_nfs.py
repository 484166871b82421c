"""`fsq doctor` on a real NFS mount (tests/nfs/conftest.py): it must say NFS, read the mount's options
from the node's own /proc/mounts, advise on --poll, and see a spool made and served from the other node.
"""

from __future__ import annotations

import json
from typing import Any

# Marked nfs, and skipped outside the guest, by tests/nfs/conftest.py.


def doctor(cluster: Any, node: Any) -> tuple[int, dict[str, Any]]:
    done = cluster.fsq(node, "doctor", "--json")
    assert done.returncode in (0, 1), done.stderr
    return done.returncode, json.loads(done.stdout)


def findings(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {finding["code"]: finding for finding in document["findings"]}


def test_doctor_reports_nfs_and_the_poll_advice(cluster, figure):
    c, n1, n2 = cluster, cluster.node1, cluster.node2

    # No spool yet: it looks at the directory above, on the same export, and makes nothing.
    code, before = doctor(c, n2)
    assert code == 0, before
    assert before["exists"] is False and before["checked"] == str(c.spool.parent)
    assert before["filesystem"]["kind"] == "nfs" and before["filesystem"]["type"] in ("nfs", "nfs4")
    assert before["filesystem"]["mount_point"] == "/tmp/fsq-shared"
    assert not n2.local(c.spool).exists()

    # A manager on node1 makes the spool; node2's doctor sees it, the manager, and its poll.
    manager = c.start_manager(n1, "--cores", "1", "--poll", "0.5")
    code, after = doctor(c, n2)
    assert code == 0, (after, c.log(manager))
    found = findings(after)
    assert after["exists"] is True and found["spool.private"]["level"] == "ok"
    assert found["spool.same-filesystem"]["level"] == "ok"
    assert found["manager.alive"]["title"].startswith(f"manager serving on {n1.name} pid {manager.pid}")
    assert found["nfs.inotify"]["level"] == "note" and "--poll" in found["nfs.inotify"]["title"]
    assert "fsq manager --poll 1" in found["nfs.inotify"]["detail"]
    options = after["filesystem"]["options"]
    assert found["nfs.vers"]["title"].endswith(options["vers"]) or "NFSv3" in found["nfs.vers"]["title"]
    assert found["nfs.lookupcache"]["title"].startswith(
        "lookupcache=positive" if options.get("lookupcache") == "pos" else "lookupcache=")
    assert found["nfs.locks"]["level"] == "ok"  # this setup's locks reach across clients (../shared/nfs)
    assert found["probe.ok"]["level"] == "ok"
    assert any("within the manager's --poll (0.5 s, as the manager runs now)" in line for line in after["guarantees"])
    figure(f"fsq doctor probe on NFS from node2: {1000 * after['probe']['seconds']:.1f} ms "
           f"({after['filesystem']['type']} {options.get('vers')})")

    # The report for people says the same.
    text = c.fsq(n2, "doctor")
    assert text.returncode == 0, text.stderr
    assert "NFS (vers" in text.stdout and "--poll" in text.stdout and "What fsqueue guarantees here:" in text.stdout
