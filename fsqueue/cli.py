"""`fsq`: a thin shell over the library. The only module that prints, exits, reads os.environ or sets up logging.

Exit codes (docs/cli.md): 0 success; 1 a job did not succeed; 2 an error (bad input, bad spool, usage);
3 `wait` timed out.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from fsqueue import __version__, client
from fsqueue.errors import FsqError, WaitTimeout
from fsqueue.progress import Progress, RunSummary
from fsqueue.resources import (
    Allocation,
    ResourceError,
    allocation_from_slurm_env,
    local_allocation,
    mem_per_cpu_mb,
    parse_nodes_option,
    parse_scontrol_end_time,
)
from fsqueue.spool import ENV_VAR, Spool

if TYPE_CHECKING:
    from fsqueue.launcher import Launcher
    from fsqueue.manager import Manager

# The manager, the reports, the doctor and the QCG translation are imported by the commands that use
# them: `fsq submit`, `status` and `wait` run in bash loops, and their start-up is most of their time.

EXIT_OK, EXIT_JOB_FAILED, EXIT_ERROR, EXIT_TIMEOUT = 0, 1, 2, 3
# Why the jobs of a stalled manager (manager.json) cannot start, in every message that says so.
STALLED_WHY = "they wait for dependencies that no job in the spool can meet yet, or for a larger allocation"
log = logging.getLogger("fsqueue")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    words = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first `--` is the job's command line, kept away from argparse, which
    # would otherwise take its first word for the optional FILE argument.
    command = None
    if "--" in words:
        split = words.index("--")
        words, command = words[:split], words[split + 1 :]
    args = parser.parse_args(words)
    if command is not None and args.command != "submit":
        parser.error(f"`--` and a command only go with `fsq submit`, not with `fsq {args.command}`")
    args.cmd = command
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("fsq: %(message)s"))
    log.addHandler(handler)  # fsqueue's own messages; libraries keep Python's default (warnings, unprefixed)
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return int(args.func(args))
    except WaitTimeout as error:
        print(f"fsq: {error}", file=sys.stderr)
        return EXIT_TIMEOUT
    except (FsqError, ResourceError) as error:
        print(f"fsq: {error}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fsq", description="fsqueue: a pilot-job engine whose only channel is a spool directory.")
    parser.add_argument("--version", action="version", version=f"fsqueue {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, func: Any, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help, description=help)
        default = "a new fsq-run-* directory here" if name == "run" else f"${ENV_VAR}"
        sub.add_argument("--spool", help=f"spool directory (default: {default})")
        sub.set_defaults(func=func)
        return sub

    sub = command("manager", cmd_manager, "serve a spool in the foreground until stopped")
    _resource_options(sub)
    _manager_options(sub)
    sub.add_argument("--drain", action="store_true", help="exit once nothing is queued, running or waiting")

    sub = command("run", cmd_run, "run job files to completion with a private manager (batch mode)")
    sub.add_argument("files", nargs="+", help="job files (JSON: one job or a list)")
    sub.add_argument("--format", choices=("fsqueue", "qcg"), default="fsqueue",
                     help="fsqueue job files (default), or QCG-PilotJob request files (docs/migrating-from-qcg.md)")
    _resource_options(sub)
    _manager_options(sub)

    sub = command("submit", cmd_submit, "submit a job file, or a command after --; prints the job ids")
    sub.add_argument("file", nargs="?", help="job file, or - for standard input")
    sub.add_argument("--format", choices=("fsqueue", "qcg"), default="fsqueue",
                     help="fsqueue job file (default), or a QCG-PilotJob request file (docs/migrating-from-qcg.md)")
    sub.add_argument("--name", help="job name (a label)")
    sub.add_argument("--cores", type=int, help="cores on each node")
    sub.add_argument("--nodes", type=int, help="number of nodes")
    _group_shared_option(sub)
    sub.usage = ("fsq submit [--spool DIR] [--group-shared] "
                 "([--format {fsqueue,qcg}] (FILE | -) | [--name N] [--cores C] [--nodes K] -- CMD [ARGS...])")

    sub = command("status", cmd_status, "a summary of the spool, or the status of jobs")
    sub.add_argument("refs", nargs="*", metavar="ID|NAME")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    sub.add_argument("--watch", action="store_true",
                     help="follow the run live until its manager stops (plain lines when not on a terminal)")
    sub.add_argument("--interval", type=float, default=1.0, help="with --watch: seconds between looks (default 1)")

    sub = command("list", cmd_list, "one line per job")
    sub.add_argument("--state", action="append", default=[], help="only jobs in this state (repeatable)")
    sub.add_argument("--json", action="store_true", help="machine-readable output")

    sub = command("wait", cmd_wait, "block until jobs end; exit 0 only if all succeeded")
    sub.add_argument("refs", nargs="*", metavar="ID|NAME")
    sub.add_argument("--all", action="store_true", help="wait until nothing is queued or running")
    sub.add_argument("--timeout", type=float, help="give up after this many seconds (exit 3)")
    sub.add_argument("--poll", type=float, default=1.0, help="longest pause between two looks (default 1 s)")

    sub = command("report", cmd_report, "a report of the run: one self-contained HTML page, or JSON")
    sub.add_argument("-o", "--output", default="-", help="file to write (default: standard output)")
    sub.add_argument("--format", choices=("html", "json"), default="html", help="html (default) or json")

    sub = command("rerun", cmd_rerun, "run ended jobs again as new jobs (and those skipped because of them); "
                                      "prints the new ids")
    sub.add_argument("refs", nargs="*", metavar="ID|NAME")
    sub.add_argument("--failed", action="store_true", help="every job that ended FAILED or TIMEOUT")

    sub = command("cancel", cmd_cancel, "cancel jobs: queued ones at once, running ones with SIGTERM")
    sub.add_argument("refs", nargs="+", metavar="ID|NAME")

    sub = command("shutdown", cmd_shutdown, "stop the manager (running jobs are stopped), or --drain")
    sub.add_argument("--drain", action="store_true", help="stop once the queue is empty instead")

    sub = command("doctor", cmd_doctor, "check the spool's filesystem, permissions and space; exit 1 on an error")
    sub.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _resource_options(sub: argparse.ArgumentParser) -> None:
    group = sub.add_mutually_exclusive_group()
    group.add_argument("--cores", type=int,
                       help="local mode with this many cores of this machine (default inside a Slurm allocation: "
                            "the allocation, launched with srun; outside one: every CPU this process may use)")
    group.add_argument("--nodes", help="local mode with virtual nodes, e.g. n1:4,n2:4")
    sub.add_argument("--no-pin", action="store_true",
                     help="do not pin jobs to their cores (srun --cpu-bind=none under Slurm): for a machine "
                          "shared with other work")


def _group_shared_option(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--group-shared", action="store_true",
                     help="make the spool group-shared: mode 2750, the group reads, only you write (docs/spool.md)")


def _manager_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--poll", type=float, default=1.0, help="seconds between scans of the spool (default 1)")
    sub.add_argument("--no-watch", action="store_true", help="find files by scanning only (no inotify)")
    _group_shared_option(sub)
    sub.add_argument("--grace", type=float, default=5.0, help="seconds from SIGTERM to SIGKILL (default 5)")


# -- commands ----------------------------------------------------------------------------------------


def cmd_manager(args: argparse.Namespace) -> int:
    from fsqueue.serve import run

    spool = Spool.create(_spool_path(args), group_shared=args.group_shared)
    manager = _manager(args, spool, drain=args.drain)
    run(manager)
    log.info("stopped: %s", _counts_line(manager.counts))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from fsqueue.serve import run

    # Not $FSQ_SPOOL: inside a job that variable names the parent's spool, which has its manager already.
    root = args.spool or f"fsq-run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    spool = Spool.create(root, group_shared=args.group_shared)
    for path in args.files:
        client.submit(spool.root, _job_file(path, args.format, "run"), wd=os.getcwd())
    manager = _manager(args, spool, drain=True)
    progress = Progress(sys.stderr, interactive=sys.stderr.isatty())
    manager.on_change = lambda _record: progress.counts(manager.counts)
    started = time.monotonic()
    run(manager)
    progress.close()
    summary = RunSummary.of(manager.records.values(), manager.counts, time.monotonic() - started, spool.root)
    print(summary.render(), file=sys.stderr)
    return EXIT_OK if summary.all_succeeded else EXIT_JOB_FAILED


def cmd_submit(args: argparse.Namespace) -> int:
    command = args.cmd
    if args.file and command is not None:
        raise FsqError("give a job file or a command after --, not both")
    if args.file:
        if args.name is not None or args.cores is not None or args.nodes is not None:
            raise FsqError("--name, --cores and --nodes go with a command; put them in the job file instead")
        jobs = _job_file(args.file, args.format, "submit")
    elif command is not None:
        if args.format != "fsqueue":
            raise FsqError("--format goes with a job file, not with a command after --")
        jobs = client.command_job(command, name=args.name, cores=args.cores, nodes=args.nodes)
    else:
        raise FsqError("nothing to submit: give a job file, - for standard input, or -- CMD ARGS...")
    for job_id in client.submit(_spool_path(args), jobs, wd=os.getcwd(), group_shared=args.group_shared):
        print(job_id)
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    spool = _spool_path(args)
    if args.watch:
        return _watch(args, spool)
    if not args.refs:
        summary = client.summary(spool)
        _emit(summary) if args.json else print(_render_summary(summary))
        return EXIT_OK
    documents = client.statuses(spool, args.refs)
    missing = [ref for ref in args.refs if not any(ref in (d["id"], d.get("name")) for d in documents)]
    if args.json:
        _emit(documents[0] if len(documents) == 1 and len(args.refs) == 1 else documents)
    else:
        if documents:
            print("\n\n".join(_render_job(doc) for doc in documents))
    for ref in missing:
        print(f"fsq: no job {ref!r} in {spool} (not taken in by a manager yet?)", file=sys.stderr)
    return EXIT_ERROR if missing else EXIT_OK


def _watch(args: argparse.Namespace, spool: str) -> int:
    from fsqueue import watch_view

    if args.refs or args.json:
        raise FsqError("--watch follows the whole spool: give no job ids and no --json")
    if args.interval < 0.05:
        raise FsqError(f"--interval {args.interval}: at least 0.05 s")
    interactive = sys.stdout.isatty()
    try:
        watch_view.follow(Spool.existing(spool), sys.stdout, interval=args.interval, interactive=interactive,
                          size=_terminal_size)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how a watch ends
    return EXIT_OK


def _terminal_size() -> tuple[int, int]:
    size = shutil.get_terminal_size()  # reads COLUMNS and LINES first, then asks the terminal
    return size.columns, size.lines


def cmd_report(args: argparse.Namespace) -> int:
    from fsqueue import report, report_html

    spool = Spool.existing(_spool_path(args))
    if args.output == "-" and args.format == "html" and sys.stdout.isatty():
        raise FsqError("the HTML report is a page for a browser: give -o report.html (or --format json)")
    document = report.assemble(report.collect(spool, time.time()))
    if args.format == "json":
        data = orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    else:
        data = report_html.render(document).encode()
    if args.output == "-":
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return EXIT_OK
    try:
        Path(args.output).write_bytes(data)
    except OSError as error:
        raise FsqError(f"cannot write the report ({args.output}): {error.strerror}") from error
    mode = "one bar per attempt" if document["timeline"]["mode"] == "bars" else "aggregated per node"
    print(f"fsq: wrote {args.output}: {document['jobs']['total']} jobs, timeline {mode}", file=sys.stderr)
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    documents = client.list_jobs(_spool_path(args), args.state)
    if args.json:
        _emit(documents)
        return EXIT_OK
    print(f"{'ID':16}  {'STATE':9}  {'EXIT':>4}  {'CORES':>5}  NAME")
    for doc in documents:
        exit_text = "-" if doc["exit_code"] is None else str(doc["exit_code"])
        if doc.get("signal"):
            exit_text = f"s{doc['signal']}"
        cores = sum(len(c) for c in doc["cores"].values())
        print(f"{doc['id']:16}  {doc['state']:9}  {exit_text:>4}  {cores:>5}  {doc.get('name') or ''}")
    return EXIT_OK


def cmd_wait(args: argparse.Namespace) -> int:
    spool = _spool_path(args)
    if args.all == bool(args.refs):
        raise FsqError("give job ids or names, or --all")
    if args.all:
        progress = Progress(sys.stderr, interactive=sys.stderr.isatty())
        try:
            counts = client.wait_all(spool, timeout=args.timeout, poll_max=args.poll, on_progress=progress.counts)
        finally:
            progress.close()
        print(_counts_line(counts))
        if counts.get("QUEUED"):
            print(f"fsq: {counts['QUEUED']} queued job(s) cannot start: {STALLED_WHY}; `fsq list --state queued` "
                  "and `fsq status ID` say why", file=sys.stderr)
        failed = sum(n for state, n in counts.items() if state != "SUCCEEDED")
        return EXIT_JOB_FAILED if failed else EXIT_OK
    documents = client.wait(spool, args.refs, timeout=args.timeout, poll_max=args.poll)
    for doc in documents:
        print(f"{doc['id']} {doc['state']}")
    stuck = [doc["id"] for doc in documents if doc["state"] == "QUEUED"]
    if stuck:
        print(f"fsq: {' '.join(stuck)}: cannot start; the manager is stalled ({STALLED_WHY}); `fsq status ID` "
              "says why", file=sys.stderr)
    return EXIT_OK if all(doc["state"] == "SUCCEEDED" for doc in documents) else EXIT_JOB_FAILED


def cmd_rerun(args: argparse.Namespace) -> int:
    pairs = client.rerun(_spool_path(args), args.refs, failed=args.failed)
    for _old, new in pairs:
        print(new)
    shown = ", ".join(f"{old} -> {new}" for old, new in pairs[:10]) + (", ..." if len(pairs) > 10 else "")
    print(f"fsq: running {len(pairs)} job(s) again as new jobs: {shown}", file=sys.stderr)
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace) -> int:
    client.cancel(_spool_path(args), args.refs)
    return EXIT_OK


def cmd_shutdown(args: argparse.Namespace) -> int:
    client.shutdown(_spool_path(args), drain=args.drain)
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from fsqueue import doctor

    # Never creates the spool: without one it checks the directory where it would be made.
    report = doctor.judge(doctor.look(_spool_path(args), uid=os.geteuid()), time.time())
    _emit(report) if args.json else print(doctor.render(report))
    # 1, as for a job that did not succeed: fsq did its work, and what it checked is not right.
    return EXIT_JOB_FAILED if report["worst"] == "error" else EXIT_OK


# -- helpers -----------------------------------------------------------------------------------------


def _spool_path(args: argparse.Namespace) -> str:
    path = args.spool or os.environ.get(ENV_VAR)
    if not path:
        raise FsqError(f"which spool? give --spool DIR or set {ENV_VAR}")
    return path


def _allocation(args: argparse.Namespace) -> tuple[Allocation, Launcher]:
    """Local mode when --cores or --nodes says so or outside Slurm; else the allocation, launched with srun."""
    from fsqueue.launcher import LocalLauncher, SrunLauncher

    if args.nodes:
        return parse_nodes_option(args.nodes), LocalLauncher()
    slurm = None if args.cores is not None else allocation_from_slurm_env(os.environ)
    if slurm is None:
        return local_allocation(args.cores, os.sched_getaffinity(0), pin=not args.no_pin), LocalLauncher()
    slurm = dataclasses.replace(slurm, end_time=_allocation_end(slurm.slurm_job_id))
    return slurm, SrunLauncher(mem_per_cpu_mb=mem_per_cpu_mb(os.environ, slurm), bind=not args.no_pin)


def _allocation_end(job_id: str | None) -> float | None:
    """When the allocation ends, asked once from Slurm; None if it cannot say."""
    try:
        result = subprocess.run(["scontrol", "show", "job", str(job_id)], capture_output=True, text=True, timeout=30,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning("cannot ask Slurm when allocation %s ends: %s", job_id, error)
        return None
    return parse_scontrol_end_time(result.stdout) if result.returncode == 0 else None


def _manager(args: argparse.Namespace, spool: Spool, *, drain: bool) -> Manager:
    from fsqueue.manager import Manager, Settings

    if args.poll < 0.05:
        raise FsqError(f"--poll {args.poll}: at least 0.05 s, or the scans load the file server for nothing")
    settings = Settings(poll=args.poll, grace=args.grace, drain=drain, watch=not args.no_watch)
    identity = {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "node": os.environ.get("SLURMD_NODENAME")}
    allocation, launcher = _allocation(args)
    return Manager(spool, allocation, settings, os.environ, identity, launcher)


def _job_file(path: str, form: str, command: str) -> Any:
    """The jobs of a file, translated from a QCG-PilotJob request file with --format qcg."""
    document = _read_jobs(path)
    if form != "qcg":
        return document
    from fsqueue import qcg

    context = qcg.Context(root_wd=os.getcwd(), now=datetime.now(), uniq=lambda: str(uuid.uuid4()))
    try:
        translation = qcg.translate(document, context)
    except FsqError as error:
        raise FsqError(f"{path}: {error}") from error
    for note in translation.notes:
        print(f"fsq: {path}: {note}", file=sys.stderr)
    if translation.finish_after_all and command == "submit":
        print(f"fsq: {path}: finishAfterAllTasksDone is not passed on: the manager keeps serving the spool; "
              f"`fsq shutdown --drain` stops it once nothing is left to run", file=sys.stderr)
    for directory in translation.directories:  # QCG makes a job's wd before starting it; fsqueue does not
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as error:
            raise FsqError(f"cannot create the working directory {directory}: {error.strerror}") from error
    return translation.jobs


def _read_jobs(path: str) -> Any:
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise FsqError(f"cannot read {path}: {error.strerror}") from error
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise FsqError(f"{path} is not valid JSON: {error}") from error


def _emit(document: Any) -> None:
    sys.stdout.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode())


def _counts_line(counts: Any) -> str:
    return ", ".join(f"{state} {count}" for state, count in sorted(counts.items()) if count) or "no jobs"


def _render_summary(summary: dict[str, Any]) -> str:
    cores = summary["cores"]
    lines = [
        summary["manager"]["note"],
        f"jobs: {_counts_line(summary['counts'])}",
        f"cores: {cores['busy']} busy, {cores['total'] - cores['busy']} free of {cores['total']}",
    ]
    if summary["manager"]["stalled"]:
        lines.insert(2, f"stalled: no queued job can start; {STALLED_WHY} (fsq list --state queued)")
    lines += [f"  {n['name']}: out of the pool ({n['excluded']})" if n.get("excluded")
              else f"  {n['name']}: {n['busy']}/{n['cores']} busy" for n in summary["nodes"]]
    lines.append(f"incoming: {summary['incoming']} file(s) not taken in yet")
    return "\n".join(lines)


def _render_job(doc: dict[str, Any]) -> str:
    def when(value: float | None) -> str:
        return "-" if value is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))

    rows = [
        ("id", doc["id"]), ("name", doc.get("name") or "-"), ("state", doc["state"]),
        ("reason", doc.get("reason") or "-"), ("exit code", doc.get("exit_code")), ("signal", doc.get("signal")),
        ("attempt", doc.get("attempt")), ("submitted", when(doc.get("submit_time"))),
        ("started", when(doc.get("start_time"))), ("ended", when(doc.get("end_time"))),
        ("nodes", ",".join(doc.get("nodes", [])) or "-"),
        ("cores", " ".join(f"{n}:{','.join(map(str, c))}" for n, c in doc.get("cores", {}).items()) or "-"),
        ("stdout", doc.get("stdout")), ("stderr", doc.get("stderr")),
    ]
    sweep, iteration = doc.get("sweep"), doc.get("iteration")
    if sweep:  # a sweep runs no process of its own: its iterations instead of its outputs
        counts = ", ".join(f"{state} {count}" for state, count in sweep["counts"].items())
        rows[-2:] = [("iterations", f"{sweep['total']}: {counts}"), ("each", f"fsq status {doc['id']}.INDEX")]
    if iteration:
        rows.insert(1, ("sweep", f"{iteration['sweep']}, iteration {iteration['index']}"))
    usage = doc.get("usage")
    if usage:
        peak = usage["max_rss_kib"]
        rss = f"peak RSS {peak} KiB" if peak is not None else "peak RSS below the manager's own"
        rows.append(("usage", f"user {usage['cpu_user']:.3f} s, system {usage['cpu_system']:.3f} s, {rss}"))
    return "\n".join(f"{key + ':':11} {'-' if value is None else value}" for key, value in rows)
