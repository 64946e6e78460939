"""Never hang: a failing rank takes the whole job down, and a wrong launcher is reported.

An exception on one rank would otherwise leave the others blocked forever in their next
collective. `abort_on_error` prints the rank's traceback, every line prefixed with
``[rank r]``, and calls ``MPI.COMM_WORLD.Abort``, which the launcher turns into the end of the
job. Errors a user can fix (`UsageError`) are not failures: they pass through as one line.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager

from mpi4py import MPI

from mpihybrid.errors import LauncherMismatch, UsageError

EXPECT_RANKS_ENV = "MPIHYBRID_EXPECT_RANKS"
ABORT_GRACE_SECONDS = 1.0

# Variables in which launchers announce the job size: a size > 1 here with an MPI world of 1
# means the launcher's MPI is not the one mpi4py loaded (N singletons instead of one job).
_LAUNCHER_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS", "SLURM_STEP_NUM_TASKS")


def format_rank_traceback(rank: int, exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return "".join(f"[rank {rank}] {line}" for line in text.splitlines(keepends=True))


def abort_job(comm: MPI.Comm, text: str, code: int) -> None:
    """Print ``text`` on stderr and end the whole job with ``code``.

    The launcher forwards output through pipes it stops reading once Abort tears the job down;
    without a pause the message was lost in about 1 run in 6 (MPICH hydra)."""
    sys.stdout.flush()
    sys.stderr.write(text)
    sys.stderr.flush()
    time.sleep(ABORT_GRACE_SECONDS)
    comm.Abort(code)


@contextmanager
def abort_on_error(comm: MPI.Comm = MPI.COMM_WORLD) -> Iterator[None]:
    """Run the block; on any exception but a UsageError or SystemExit, print and Abort the job."""
    try:
        yield
    except (UsageError, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt must abort the job too
        abort_job(comm, format_rank_traceback(comm.Get_rank(), exc), 1)


def launcher_size() -> int | None:
    """The job size the launcher announced in the environment, if any."""
    for var in _LAUNCHER_SIZE_VARS:
        value = os.environ.get(var, "")
        if value.isdigit():
            return int(value)
    return None


def check_world_size(size: int, expected: int | None = None) -> None:
    """Raise LauncherMismatch if the world is not what the user or the launcher asked for.

    ``expected`` defaults to $MPIHYBRID_EXPECT_RANKS. Without either, a world of 1 in a
    launcher that announced N > 1 ranks is still caught.
    """
    if expected is None and os.environ.get(EXPECT_RANKS_ENV, "").strip():
        raw = os.environ[EXPECT_RANKS_ENV].strip()
        if not raw.isdigit():
            raise LauncherMismatch(f"{EXPECT_RANKS_ENV}={raw!r} is not a rank count")
        expected = int(raw)
    announced = launcher_size()
    library = MPI.Get_library_version().splitlines()[0].strip()
    if expected is not None and size != expected:
        hint = " (each process is a singleton: the launcher's MPI does not match mpi4py's)" if size == 1 else ""
        raise LauncherMismatch(f"expected {expected} ranks, MPI reports {size}{hint}; mpi4py uses {library}")
    if size == 1 and announced is not None and announced > 1:
        raise LauncherMismatch(
            f"the launcher started {announced} processes but each is 'rank 0 of 1': its MPI does not match "
            f"mpi4py's ({library}); use the mpiexec of that MPI, or srun --mpi=pmi2 for MPICH"
        )
