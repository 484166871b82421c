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
