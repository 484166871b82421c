"""Turn files dropped into the spool into accepted submissions, control requests, or rejections.

Each file is claimed by rename (so it is processed once), read with the spool's safety checks, parsed
and validated. A bad file is moved aside with its reason and never stops the intake of the next one.
A file that ends in the middle of its JSON may still be being written in place (a bash `>` redirect,
or a writer on another node whose data arrives at close): it waits in claimed/ and is read again until
`torn_grace` seconds pass without it growing, and only then rejected.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from collections.abc import Container, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from filelock import FileLock, Timeout

from fsqueue import model
from fsqueue.errors import InvalidJob
from fsqueue.model import JobSpec
from fsqueue.spool import (
    LOCK_SUFFIX,
    Spool,
    Unsafe,
    is_job_id,
    is_submission_name,
    revalidate,
)

log = logging.getLogger(__name__)

DEFAULT_TORN_GRACE = 10.0
# A job nests 4 levels at most (list, job, resources, cores). orjson 3.8 crashes the whole process on
# ~10^5 levels, and jsonschema's messages exceed Python's recursion limit at ~1000, so nesting is
# bounded on the raw bytes before anything parses them.
MAX_NESTING = 64


@dataclass(frozen=True)
class Submission:
    name: str
    specs: list[JobSpec]
    stamped: bytes  # accepted/NAME as written (without its final newline): the journal keeps a copy
    digest: str  # of the file as it was dropped, to know its claimed copy again after a crash (adopt)


@dataclass(frozen=True)
class ControlRequest:
    action: str  # "cancel" or "shutdown"
    ids: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    drain: bool = False


class _Torn(Exception):
    """The file ends inside its JSON: maybe still being written."""


class Intake:
    def __init__(self, spool: Spool, ids: Iterator[str], torn_grace: float = DEFAULT_TORN_GRACE) -> None:
        self._spool = spool
        self._ids = ids
        self._torn_grace = torn_grace
        self._torn: dict[str, tuple[float, int]] = {}  # name in claimed/ -> (first seen, size then)
        # Accepted (name -> its job ids), but not answered yet: the receipt waits, and the claimed copy
        # stays, until the manager's journal that holds the acceptance is synced (release()).
        self._unreleased: dict[str, list[str]] = {}
        self._control_retry: float | None = None  # when control/ is read again after a request could not be settled
        self.more_waiting = False  # the last scan stopped at its limit: files are left in incoming/

    def submissions(self, now: float, scan: bool, known_ids: Container[str], limit: int) -> list[Submission]:
        """Claim and validate up to `limit` new files (if `scan`), and retry the torn ones."""
        # Torn files are read again at each scan (an event or the poll: the writer may have finished) and
        # when their grace ends; files the spool could not take (size -1) only then. Not at every step:
        # a busy manager steps on every job's end.
        names = [name for name, (seen, size) in self._torn.items()
                 if (scan and size >= 0) or now >= seen + self._torn_grace]
        if scan:
            names += self._claim_new(self._spool.incoming, limit)
        accepted: list[Submission] = []
        batch_ids: set[str] = set()  # known_ids learns of this batch only after we return
        if names:
            revalidate(self._spool.accepted)  # once for the batch: a manager on another node may have accepted
        for name in names:
            submission = self._process(name, now, known_ids, batch_ids)
            if submission is not None:
                accepted.append(submission)
                batch_ids.update(spec.id for spec in submission.specs)
        self._unreleased.update((submission.name, [spec.id for spec in submission.specs]) for submission in accepted)
        return accepted

    def release(self) -> None:
        """The journal now durably holds every submission accepted so far: write each one's receipt, then
        drop its claimed copy. One that fails (a full disk) stays, for the next call."""
        for name, ids in list(self._unreleased.items()):
            self._spool.write_accepted_receipt(name, ids)
            self._spool.drop_claimed(name)
            del self._unreleased[name]

    @property
    def unreleased(self) -> bool:
        return bool(self._unreleased)

    def leftovers(self) -> list[str]:
        """Files claimed by a manager that stopped before finishing with them."""
        return list(self._spool.scan(self._spool.claimed).candidates)

    def adopt(self, names: list[str], digests: Mapping[str, str]) -> None:
        """Take up files a stopped manager left in claimed/. `digests`: of the submissions its journal
        says it accepted; a file with one of them is that submission's claimed copy, kept until the
        journal sync, and goes. Any other file is read as new (a namesake of an accepted one is
        rejected as a duplicate, with its reason: never dropped unseen)."""
        for name in names:
            if name in digests and self._spool.is_known_submission(name):  # recover() revalidated accepted/
                try:
                    if digest(self._spool.read_request(f"{self._spool.claimed}/{name}")) == digests[name]:
                        (self._spool.claimed / name).unlink(missing_ok=True)
                        continue
                except (Unsafe, OSError):
                    pass  # then it is not the copy we wrote; reading it as new says what it is
            self._torn.setdefault(name, (float("-inf"), -1))

    def next_retry(self) -> float | None:
        retries = [seen + self._torn_grace for seen, _ in self._torn.values()]
        if self._control_retry is not None:
            retries.append(self._control_retry)
        return min(retries, default=None)

    def control_due(self, now: float) -> bool:
        """A control request could not be settled (a full disk): read control/ again, event or not."""
        return self._control_retry is not None and now >= self._control_retry

    def _claim_new(self, directory: Path, limit: int) -> list[str]:
        listing = self._spool.scan(directory)
        claimed = []
        for name in listing.candidates:
            if len(claimed) >= limit:
                break
            if name in self._torn or name in self._unreleased:
                continue  # its namesake waits in claimed/; a rename now would overwrite it
            if name in listing.locked:
                taken = self._claim_locked(directory, name)
            else:
                taken = self._spool.claim(directory, name)
            if taken:
                claimed.append(name)
        self.more_waiting = len(claimed) >= limit
        return claimed

    def _claim_locked(self, directory: Path, name: str) -> bool:
        # The courtesy lock of docs/spool.md: a writer that cannot rename holds it while writing in place.
        lock_path = directory / f".{name}{LOCK_SUFFIX}"
        lock = FileLock(lock_path, timeout=0)
        try:
            lock.acquire()
        except Timeout:
            return False
        except OSError as error:
            # A symlink or a directory: no cooperating writer can hold such a lock, and raising here
            # would stop all intake at every scan. Take the file as unlocked; its own checks decide.
            log.warning("ignoring %s, which cannot be a lock: %s", lock_path, error.strerror)
            return self._spool.claim(directory, name)
        try:
            claimed = self._spool.claim(directory, name)
            lock_path.unlink(missing_ok=True)
            return claimed
        finally:
            lock.release()

    def _process(self, name: str, now: float, known_ids: Container[str], batch_ids: set[str]) -> Submission | None:
        path = f"{self._spool.claimed}/{name}"
        try:
            read = self._read(name, path, now)
            if read is None:
                return None
            document, data = read
            if self._spool.is_known_submission(name):  # submissions() revalidated accepted/
                self._spool.reject(path, name, f"duplicate: a submission named {name} was already accepted; "
                                   "use a new file name for a new submission", receipt=False)
                return None
            specs = model.parse_jobs(document, self._ids, self._spool.read_parameter_file)
            _check_ids(specs, known_ids, batch_ids)
        except (Unsafe, InvalidJob) as error:
            try:
                self._spool.reject(path, name, str(error))
            except OSError as failure:
                return self._retry_later(name, now, "reject", failure)
            self._torn.pop(name, None)  # settled: never read (and rejected) again
            return None
        except OSError as failure:  # past the checks: an I/O error (EIO, an NFS soft mount's timeout), a full disk
            return self._retry_later(name, now, "read", failure)
        stamped = orjson.dumps([spec.document for spec in specs] if isinstance(document, list) else specs[0].document)
        try:
            self._spool.accept(name, stamped + b"\n")
        except OSError as failure:
            return self._retry_later(name, now, "accept", failure)
        return Submission(name, specs, stamped, digest(data))

    def _retry_later(self, name: str, now: float, what: str, failure: OSError) -> None:
        """The spool cannot be written (disk full, quota, I/O error): the file stays in claimed/ and is
        read again after the grace period, as a torn file is; nothing is accepted or lost meanwhile."""
        log.error("cannot %s %s: %s; it stays in %s and is tried again in %g s", what, name, failure.strerror,
                  self._spool.claimed, self._torn_grace)
        self._torn[name] = (now, -1)

    def _read(self, name: str, path: str, now: float) -> tuple[Any, bytes] | None:
        if not is_submission_name(name):
            raise Unsafe(f"the file name is not allowed: names match {_NAME_RULE}")
        data = self._spool.read_request(path)
        try:
            document = _parse(data)
        except _Torn:
            first_seen, size = self._torn.get(name, (now, len(data)))
            if size != len(data):
                first_seen = now  # still growing: someone is writing it
            if now - first_seen < self._torn_grace:
                self._torn[name] = (first_seen, len(data))
                return None
            self._torn.pop(name, None)
            what = "the file is empty" if not data.strip() else f"incomplete JSON ({len(data)} bytes)"
            raise Unsafe(f"{what}, unchanged for {self._torn_grace:g} s") from None
        self._torn.pop(name, None)
        return document, data

    # -- control requests ------------------------------------------------------------------------
    def control_requests(self, now: float) -> list[ControlRequest]:
        """Read and remove each request in control/. Removed before it is acted on: a request is
        carried out at most once, even if the manager dies in between (a client may ask again)."""
        requests = []
        self._control_retry = None
        for name in self._spool.scan(self._spool.control).candidates:
            path = self._spool.control / name
            try:
                if not is_submission_name(name):
                    raise Unsafe(f"the file name is not allowed: names match {_NAME_RULE}")
                requests.append(_control(_parse(self._spool.read_request(path))))
            except _Torn:
                continue  # published in place and not finished yet: read it at the next scan
            except (Unsafe, InvalidJob) as error:
                try:
                    self._spool.reject(path, name, str(error), receipt=False)  # receipts are for submissions
                except OSError as failure:  # a full or failing disk: it stays, and is read again later
                    self._retry_control(now, "reject", path, failure)
                continue
            except OSError as failure:
                self._retry_control(now, "read", path, failure)
                continue
            path.unlink(missing_ok=True)
        return requests

    def _retry_control(self, now: float, what: str, path: Path, failure: OSError) -> None:
        log.error("cannot %s %s: %s; it is tried again in %g s", what, path, failure.strerror, self._torn_grace)
        self._control_retry = now + self._torn_grace


_NAME_RULE = "[A-Za-z0-9_][A-Za-z0-9_.+=@,-]*.json, at most 205 characters, no '..'"


def digest(data: bytes) -> str:
    """A short fingerprint of a dropped file, as the journal keeps it."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _parse(data: bytes) -> Any:
    if not data.strip():
        raise _Torn()
    if _nests_deeper(data, MAX_NESTING):
        raise InvalidJob(f"the JSON nests more than {MAX_NESTING} levels deep; a submission needs at most 4")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        if error.end == len(data) and error.reason == "unexpected end of data":
            raise _Torn() from None  # cut inside a multi-byte character
        raise InvalidJob(f"not UTF-8: {error.reason} at byte {error.start}; save the file as UTF-8") from None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as error:
        # A prefix of a valid document fails at its very end; a malformed one fails before it.
        # orjson counts positions in characters, so the end is measured in characters too.
        if error.pos >= len(text.rstrip()):
            raise _Torn() from None
        raise InvalidJob(f"not valid JSON: {error}") from None


_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_DEPTH_STEP = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 and -1 as signed bytes


def _nests_deeper(data: bytes, limit: int) -> bool:
    """Whether the brackets outside strings nest deeper than `limit`, counting those a torn file left
    open. Linear and in C: a 16 MiB file of brackets takes about half a second."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    outside_strings = _JSON_STRING.sub(b"", data).split(b'"', 1)[0]  # an unclosed string runs to the end
    steps = outside_strings.translate(_DEPTH_STEP, _NOT_BRACKETS)
    return max(itertools.accumulate(memoryview(steps).cast("b")), default=0) > limit


def _check_ids(specs: list[JobSpec], known_ids: Container[str], batch_ids: set[str]) -> None:
    seen: set[str] = set()
    for spec in specs:
        if spec.id in known_ids or spec.id in batch_ids or spec.id in seen:
            raise InvalidJob(f"id: duplicate job id {spec.id}; a job with this id was already submitted")
        seen.add(spec.id)


def _control(document: Any) -> ControlRequest:
    if not isinstance(document, dict) or document.get("action") not in ("cancel", "shutdown"):
        raise InvalidJob('a control request is an object with "action": "cancel" or "shutdown"')
    unknown = set(document) - {"version", "action", "ids", "names", "drain"}
    if unknown:
        raise InvalidJob(f"{min(unknown)}: unknown field in a control request")
    ids, names, drain = document.get("ids", []), document.get("names", []), document.get("drain", False)
    # Checked as lists: "names": "prep" would otherwise cancel the jobs named p, r, e and p.
    if not isinstance(ids, list) or not all(isinstance(i, str) and is_job_id(i) for i in ids):
        raise InvalidJob("ids: must be a list of job ids")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise InvalidJob("names: must be a list of strings")
    if not isinstance(drain, bool):
        raise InvalidJob(f"drain: must be true or false, got {drain!r}")
    return ControlRequest(document["action"], tuple(ids), tuple(names), drain)
