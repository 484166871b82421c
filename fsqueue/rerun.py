"""Running ended jobs again: which ones, and as what. Pure.

A job that ended stays ended (its state is final, docs/job-format.md): to run it again is to submit a
new job, with a new id, from the document the manager accepted. What needs thought is `after`:
- a reference to a job run again, by its id, points to the new job instead;
- a name binds to every job of that name the manager knows, the old one that failed included, so a
  name that a job run again carries is replaced by the ids of every job of that name, the new ones for
  those run again (a name that none of them carries is kept as it is);
- the jobs skipped because of a job run again (they waited for it, by id or name, and ended SKIPPED)
  are run again too, transitively: otherwise they would stay skipped for a dependency that now runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# What `fsq rerun --failed` runs again; the SKIPPED jobs come along only for a job they waited for.
FAILED_STATES = ("FAILED", "TIMEOUT")


@dataclass(frozen=True)
class Ended:
    """A job that ended, with the document it was accepted as (an iteration's as made from its sweep)."""

    id: str
    name: str | None
    state: str
    document: Mapping[str, Any]

    def references(self) -> list[str]:
        return [ref for ref, _ in _after_items(self.document)]


def _after_items(document: Mapping[str, Any]) -> Iterator[tuple[str, str | None]]:
    """(reference, when) for each item of the document's `after`, which is a bare reference (when is
    None) or {"job": reference, "when": ...}."""
    for item in document.get("after", []):
        yield (item, None) if isinstance(item, str) else (item["job"], item.get("when"))


def select(jobs: Mapping[str, Ended], chosen: Iterable[str]) -> list[str]:
    """The chosen jobs and the SKIPPED jobs that waited for one of them, transitively, in id order."""
    selected = set(chosen)
    skipped = [job for job in jobs.values() if job.state == "SKIPPED"]
    while True:
        names = {jobs[job_id].name for job_id in selected if jobs[job_id].name}
        more = {job.id for job in skipped if job.id not in selected
                and any(ref in selected or ref in names for ref in job.references())}
        if not more:
            return sorted(selected)
        selected |= more


def plan(jobs: Mapping[str, Ended], selected: Sequence[str], new_ids: Iterator[str],
         ids_by_name: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """One new job document per selected job, in the same order, with a new id and `after` rewritten.

    `ids_by_name`: every job of the spool with a name, by name (finished or not, run again or not).
    """
    new_id = {job_id: next(new_ids) for job_id in selected}
    carried = {jobs[job_id].name for job_id in selected if jobs[job_id].name}
    by_name = {name: [new_id.get(job_id, job_id) for job_id in sorted(ids_by_name.get(name, ()))]
               for name in carried}

    def targets(ref: str) -> list[str]:
        return by_name[ref] if ref in by_name else [new_id.get(ref, ref)]

    documents = []
    for job_id in selected:
        document = {key: value for key, value in jobs[job_id].document.items() if key != "id"}
        after = []
        for ref, when in _after_items(document):
            after += [target if when is None else {"job": target, "when": when} for target in targets(ref)]
        if "after" in document:
            document["after"] = after
        documents.append({"id": new_id[job_id], **document, "rerun_of": job_id})
    return documents
