"""fsqueue: a pilot-job engine for HPC allocations whose only channel is a spool directory."""

from fsqueue.client import (
    cancel,
    list_jobs,
    rerun,
    shutdown,
    status,
    submit,
    summary,
    wait,
    wait_all,
)

__version__ = "0.1.0"

__all__ = ["__version__", "cancel", "list_jobs", "rerun", "shutdown", "status", "submit", "summary", "wait",
           "wait_all"]
