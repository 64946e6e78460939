"""Stop at a step boundary when the batch system asks, so a job can be requeued and resume.

Slurm sends SIGUSR1 ahead of a time limit (``#SBATCH --signal=USR1@120``) and SIGTERM on
``scontrol requeue``, ``scancel`` or preemption. The handler only notes the signal. After every
step the ranks agree on it (one small Allreduce), so all of them stop after the same step: the
harness writes a checkpoint, marks the results file ``interrupted`` and the job exits with
EXIT_INTERRUPTED (75). A watchdog ends a rank that has not exited within GRACE_SECONDS of the
signal (a peer stuck in a collective must not keep the job running until it is killed).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

import numpy as np
from mpi4py import MPI

from mpihybrid.errors import EXIT_FAILURE

SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
GRACE_SECONDS = 60.0


class Interruption:
    """The signals this rank has received; `agreed` is the collective verdict after a step."""

    def __init__(self) -> None:
        self.received: str | None = None
        self._flag = np.zeros(1, dtype=np.int32)
        self._watchdog: threading.Timer | None = None

    def install(self) -> None:
        """Handle SIGUSR1 and SIGTERM from now on (main thread only)."""
        for sig in SIGNALS:
            signal.signal(sig, self._note)

    def _note(self, signum: int, _frame: object) -> None:
        if self.received is not None:
            return
        self.received = signal.Signals(signum).name
        self._watchdog = threading.Timer(GRACE_SECONDS, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self) -> None:
        rank = MPI.COMM_WORLD.Get_rank()
        sys.stderr.write(
            f"[rank {rank}] mpihybrid: still running {GRACE_SECONDS:.0f}s after {self.received}; exiting\n"
        )
        sys.stderr.flush()
        os._exit(EXIT_FAILURE)

    def agreed(self, comm: MPI.Comm) -> bool:
        """Collective over ``comm``: has any of its ranks been asked to stop?"""
        self._flag[0] = self.received is not None
        comm.Allreduce(MPI.IN_PLACE, self._flag, op=MPI.MAX)
        return bool(self._flag[0])
