"""One exception family for fsqueue; the CLI turns it into `fsq: ...` and an exit code."""

from __future__ import annotations


class FsqError(Exception):
    """An error a user can act on: the message names what happened, the path, and the remedy."""


class InvalidJob(FsqError):
    """A job description breaks the job file format (docs/job-format.md)."""


class SpoolError(FsqError):
    """The spool directory is missing, unsafe, or cannot be written."""


class ManagerBusy(SpoolError):
    """Another manager already serves this spool."""


class WaitTimeout(FsqError):
    """`wait` gave up before every job reached a final state."""


class JournalError(FsqError):
    """The manager's journal cannot be read as one: unknown version, garbled header, or not a regular file."""


class JournalWriteError(JournalError):
    """Records could not be made durable (disk full, I/O error); they stay pending and a later sync retries."""


class LeaseLost(SpoolError):
    """Another manager now holds this spool's lease; the manager that held it must stop."""
