"""Errors a user can fix. They end a job with one line and exit code 2, never a traceback."""

from __future__ import annotations

EXIT_FAILURE = 1  # a rank failed; the job was aborted
EXIT_USAGE = 2
EXIT_DIVERGED = 3
EXIT_INTERRUPTED = 75  # stopped by a signal after a checkpoint: run it again to resume (EX_TEMPFAIL)


class UsageError(Exception):
    """Bad input (config, checkpoint, launcher): report in one line, exit 2, lose nothing."""


class ConfigError(UsageError):
    """A config value is wrong; `key` is its dotted path (e.g. ``train.lr``)."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


class CheckpointError(UsageError):
    """A checkpoint cannot be resumed from (missing, truncated, corrupt or from another run)."""


class LauncherMismatch(UsageError):
    """The launcher started N singletons (its MPI is not mpi4py's), or the wrong number of ranks."""
