"""The joblog: which transitions get a line, what a line holds, and that awk, csv and a torn tail all cope."""

from __future__ import annotations

import csv
import itertools
import subprocess
from pathlib import Path

from fsqueue import model
from fsqueue.joblog import COLUMNS, HEADER, Follower, JobLog, ends_attempt, read_joblog
from fsqueue.model import JobRecord, JobState, Placement, advance

IDS = iter(f"1m8c6ejd303zf{n:03d}" for n in range(100, 1000))


def record(name: str | None = "job", **resources: object) -> JobRecord:
    job: dict[str, object] = {"exec": "true", **({"name": name} if name else {}), "resources": resources or {"cores": 1}}
    [spec] = model.parse_jobs(job, IDS)
    return advance(JobRecord(spec, "a.json", 100.0, "/o/x.out", "/o/x.err"), JobState.QUEUED)


def started(rec: JobRecord, at: float = 101.5, cores: tuple[tuple[str, tuple[int, ...]], ...] = (("n1", (0,)),)) -> JobRecord:
    return advance(rec, JobState.RUNNING, placement=Placement(cores), start_time=at)


def test_exactly_final_states_and_requeues_end_an_attempt():
    states: list[JobState | None] = [None, *JobState]
    ending = {(before, after) for before, after in itertools.product(states, JobState) if ends_attempt(before, after)}
    expected = {(before, after) for before in states for after in model.FINAL_STATES}
    assert ending == expected | {(JobState.RUNNING, JobState.QUEUED)}
    assert not ends_attempt(JobState.RUNNING, None)


def test_a_line_per_attempt_under_one_header(tmp_path):
    path = tmp_path / "joblog.tsv"
    log = JobLog(path)
    assert not path.exists()  # nothing is opened before the first line
    ok = started(record("ok"))
    log.attempt_ended(advance(ok, JobState.SUCCEEDED, exit_code=0, end_time=103.25))
    wide = started(record("wide", nodes=2, cores=4), cores=(("n1", (0, 1, 2, 3)), ("n2", (0, 1, 2, 5))))
    log.attempt_ended(advance(wide, JobState.FAILED, signal=9, end_time=110.0, reason="killed by signal 9"))
    log.attempt_ended(advance(record(None), JobState.CANCELED, end_time=104.0, reason="canceled by request"))
    log.flush()
    text = path.read_text()
    assert text.startswith(HEADER) and text.count(HEADER) == 1 and text.endswith("\n")
    assert text.splitlines()[1].split("\t") == [
        ok.spec.id, "ok", "1", "SUCCEEDED", "0", "", "100.000", "101.500", "103.250", "1.750", "n1", "1", "n1:0", ""]
    rows = read_joblog(path)
    assert [row["state"] for row in rows] == ["SUCCEEDED", "FAILED", "CANCELED"]
    assert rows[1] | {"id": None} == {
        "id": None, "name": "wide", "attempt": 1, "state": "FAILED", "exit_code": None, "signal": 9,
        "submit_time": 100.0, "start_time": 101.5, "end_time": 110.0, "run_time": 8.5, "nodes": ["n1", "n2"],
        "cores": 8, "placement": {"n1": [0, 1, 2, 3], "n2": [0, 1, 2, 5]}, "reason": "killed by signal 9"}
    assert text.splitlines()[2].split("\t")[12] == "n1:0-3 n2:0-2,5"
    assert rows[2]["name"] is None and rows[2]["start_time"] is None and rows[2]["cores"] == 0
    log.close()


def test_a_requeue_logs_the_attempt_that_ended_not_the_next(tmp_path):
    running = started(record("again"), at=200.0, cores=(("n2", (3,)),))
    requeued = advance(running, JobState.QUEUED, attempt=2, placement=None, start_time=None,
                       reason="attempt 1 was interrupted when its manager stopped")
    log = JobLog(tmp_path / "joblog.tsv")
    log.attempt_ended(requeued, previous=running)
    log.attempt_ended(advance(started(requeued, at=300.0), JobState.SUCCEEDED, exit_code=0, end_time=301.0))
    log.close()
    first, second = read_joblog(tmp_path / "joblog.tsv")
    assert (first["attempt"], first["state"], first["start_time"], first["end_time"], first["placement"]) == (
        1, "QUEUED", 200.0, None, {"n2": [3]})
    assert first["run_time"] is None and first["reason"].startswith("attempt 1 was interrupted")
    assert (second["attempt"], second["state"], second["run_time"]) == (2, "SUCCEEDED", 1.0)


def test_tabs_and_newlines_in_a_reason_cannot_break_the_columns(tmp_path):
    path = tmp_path / "joblog.tsv"
    log = JobLog(path)
    log.attempt_ended(advance(started(record()), JobState.FAILED, end_time=102.0, exit_code=1,
                              reason="srun said:\tbad\nnode\r" + "x" * 5000))
    log.close()
    [line] = path.read_text().splitlines()[1:]
    assert len(line.split("\t")) == len(COLUMNS)
    assert read_joblog(path)[0]["reason"].startswith("srun said: bad node x")


def test_awk_and_csv_read_it_as_it_is(tmp_path):
    path = tmp_path / "joblog.tsv"
    log = JobLog(path)
    for code in (0, 3, 0, 1):
        rec = started(record(f'"j{code}' if code == 3 else f"j{code}"))  # a name may start with a quote
        state = JobState.SUCCEEDED if code == 0 else JobState.FAILED
        log.attempt_ended(advance(rec, state, exit_code=code, end_time=104.0))
    log.close()
    awk = subprocess.run(["awk", "-F\t", 'NR > 1 && $4 == "FAILED" { print $2, $5 }', str(path)],
                         capture_output=True, text=True, check=True)
    assert awk.stdout.splitlines() == ['"j3 3', "j1 1"]
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))  # as docs/cli.md says
    assert list(rows[0]) == list(COLUMNS) and [row["exit_code"] for row in rows] == ["0", "3", "0", "1"]
    assert rows[1]["name"] == '"j3' and all(len(row) == len(COLUMNS) for row in rows)


def lines(path: Path, count: int) -> None:
    log = JobLog(path)
    for n in range(count):
        log.attempt_ended(advance(started(record(f"n{n}")), JobState.SUCCEEDED, exit_code=0, end_time=105.0))
    log.close()


def test_a_torn_last_line_is_cut_off_at_every_byte(tmp_path):
    whole = tmp_path / "whole.tsv"
    lines(whole, 3)
    data = whole.read_bytes()
    last = data.rindex(b"\n", 0, len(data) - 1) + 1
    for cut in range(last, len(data)):
        path = tmp_path / f"cut{cut}.tsv"
        path.write_bytes(data[:cut])
        assert [row["name"] for row in read_joblog(path)] == ["n0", "n1"], cut
        lines(path, 1)  # the next manager appends after cutting off the fragment
        assert [row["name"] for row in read_joblog(path)] == ["n0", "n1", "n0"], cut
        assert path.read_bytes().startswith(data[:last]) and path.read_bytes().count(HEADER.encode()) == 1


def test_a_torn_header_starts_the_file_again(tmp_path):
    path = tmp_path / "joblog.tsv"
    path.write_bytes(HEADER.encode()[:7])
    lines(path, 1)
    assert path.read_text().startswith(HEADER) and [row["name"] for row in read_joblog(path)] == ["n0"]


def test_no_joblog_reads_as_no_lines(tmp_path):
    assert read_joblog(tmp_path / "missing.tsv") == []
    assert Follower(tmp_path / "missing.tsv").new_rows() == []


def test_the_follower_returns_only_complete_new_lines(tmp_path):
    path = tmp_path / "joblog.tsv"
    follower = Follower(path)
    lines(path, 2)
    assert [row["name"] for row in follower.new_rows()] == ["n0", "n1"]
    assert follower.new_rows() == []
    whole = path.read_bytes()
    lines(path, 1)
    grown = path.read_bytes()
    path.write_bytes(grown[: len(whole) + 10])  # a line half written
    assert follower.new_rows() == []
    path.write_bytes(grown)
    assert [row["name"] for row in follower.new_rows()] == ["n0"]


def test_the_joblog_is_private_like_the_rest_of_the_spool(tmp_path):
    path = tmp_path / "joblog.tsv"
    lines(path, 1)
    assert path.stat().st_mode & 0o777 == 0o600


def test_every_state_has_a_place_in_the_report_and_the_watch_view() -> None:
    from fsqueue import report_html, watch_view
    from fsqueue.model import JobState

    states = {str(state) for state in JobState}
    assert set(report_html.STATE_ORDER) == states == set(report_html.STATE_COLORS)
    assert set(watch_view._ORDER) == states == set(watch_view._COLORS)
