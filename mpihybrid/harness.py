"""What every algorithm gets from the harness: the world, the validated config, the results
file, checkpoints and resume, fault injection, progress and the end-of-run summary.

The step loop itself is written once, in `mpihybrid.algorithm.Algorithm.train`.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from mpi4py import MPI
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from mpihybrid.comm import Comm
from mpihybrid.config import Config
from mpihybrid.device import CPU
from mpihybrid.errors import UsageError
from mpihybrid.interruption import Interruption
from mpihybrid.io.checkpoint import Restored, State, list_checkpoints, save_checkpoint
from mpihybrid.io.results import STATUS_COMPLETED, STATUS_FAILED, STATUS_INTERRUPTED, RunResults

FAULT_ENV = "MPIHYBRID_FAULT"  # "RANK:STEP[:device]": raise on that rank at that step (tests the abort path)
SLOW_ENV = "MPIHYBRID_STEP_SLEEP"  # seconds every rank sleeps per step: a long job at no CPU cost (time-limit tests)
SHOWN = {"train_loss": "loss", "test_accuracy": "acc", "condition_number": "cond"}  # progress line: metric -> label


@dataclass(frozen=True)
class Fault:
    """The failure $MPIHYBRID_FAULT asks for: a RuntimeError, or (``device``) the error a failing
    CUDA kernel raises (torch.AcceleratorError), so the abort path of a GPU run is tested anywhere."""

    rank: int
    step: int
    kind: Literal["error", "device"] = "error"


def parse_fault(raw: str) -> Fault | None:
    """$MPIHYBRID_FAULT's value: ``RANK:STEP`` or ``RANK:STEP:device``; '' is none. Raises UsageError."""
    if not raw:
        return None
    parts = raw.split(":")
    if len(parts) in (2, 3) and all(p.isdigit() for p in parts[:2]) and parts[2:] in ([], ["device"]):
        return Fault(int(parts[0]), int(parts[1]), parts[2] if len(parts) == 3 else "error")
    raise UsageError(f"{FAULT_ENV}={raw!r}: expected RANK:STEP or RANK:STEP:device (e.g. 1:5 or 1:5:device)")


class Diverged(Exception):
    """The training loss became NaN or infinite; every rank sees the same reduced loss."""


def check_finite(loss: float, step: int) -> None:
    if not math.isfinite(loss):
        raise Diverged(f"training diverged at step {step}: loss = {loss}")


def cores_per_rank(world: Comm) -> int:
    """Cores of this node shared among the ranks on it (1 when oversubscribed). Collective."""
    node = world.mpi.Split_type(MPI.COMM_TYPE_SHARED)
    local = node.Get_size()
    node.Free()
    return max(1, len(os.sched_getaffinity(0)) // local)


class Run:
    """One run of one algorithm on the world communicator."""

    def __init__(
        self,
        *,
        algorithm: str,
        config: Config,
        world: Comm,
        out: str | Path,
        checkpoint_dir: str | Path | None,
        resumed: Restored | None,
        device: torch.device = CPU,
        fault: Fault | None = None,
        interruption: Interruption | None = None,
    ):
        self.algorithm = algorithm
        self.config = config
        self.world = world
        self.device = device  # where this rank computes (docs/gpu.md); checkpoints hold host copies
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir else None
        self.resumed = resumed
        self.results = RunResults(
            out, algorithm=algorithm, config_json=config.to_json(), comm=world, device=device.type
        )
        self.start_step = 0
        if resumed is not None:
            self.start_step = resumed.step
            self.results.load_state(resumed.state.shared)
            self.results.restarts.append(resumed.step)
        self.interruption = interruption or Interruption()
        self.interrupted = False  # set by `finish` on every rank when the run stopped for a signal
        self.last_checkpoint: Path | None = None
        self._fault = fault
        self._sleep = float(os.environ.get(SLOW_ENV) or 0)
        self._t0 = time.perf_counter()
        self._bar: tqdm | None = None

    def set_threads(self) -> int:
        """Collective: torch and BLAS (numpy/scipy/sklearn) threads per rank; oversubscribed BLAS
        threads spinning beside a busy-polling MPI rank cost more than they give."""
        threads = self.config.train.threads or cores_per_rank(self.world)
        torch.set_num_threads(threads)
        threadpool_limits(limits=threads)
        return threads

    @property
    def is_root(self) -> bool:
        return self.world.rank == 0

    def elapsed(self) -> float:
        return time.perf_counter() - self._t0

    def progress(self, step: int, total: int, row: dict[str, float]) -> None:
        """Rank 0: a tqdm bar on a terminal; in batch logs, one line per call."""
        if not self.is_root:
            return
        text = " ".join(f"{label}={row[name]:.4g}" for name, label in SHOWN.items() if name in row)
        if sys.stderr.isatty():
            if self._bar is None:
                self._bar = tqdm(total=total, initial=self.start_step, unit="step", dynamic_ncols=True)
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(text, refresh=False)
        else:
            print(f"[{self.algorithm}] step {step}/{total} {text} ({self.elapsed():.1f}s)", flush=True)

    def inject_fault(self, step: int) -> None:
        """Raise the fault $MPIHYBRID_FAULT asks for at this rank and step, if any; sleep $MPIHYBRID_STEP_SLEEP."""
        if self._sleep:
            time.sleep(self._sleep)
        fault = self._fault
        if fault is None or (fault.rank, fault.step) != (self.world.rank, step):
            return
        where = f"({FAULT_ENV}) on rank {self.world.rank} at step {step}"
        if fault.kind == "device":
            raise torch.AcceleratorError(f"CUDA error: injected device fault {where} (device {self.device})")
        raise RuntimeError(f"injected fault {where}")

    def checkpoint_due(self, step: int, total: int) -> bool:
        if self.checkpoint_dir is None:
            return False
        every = self.config.checkpoint.every
        return step == total or (every > 0 and step % every == 0)

    def save(self, step: int, state: State) -> None:
        """Collective: checkpoint the algorithm's state plus the metrics history so far."""
        self.last_checkpoint = save_checkpoint(
            self.checkpoint_dir,
            self.world,
            step=step,
            algorithm=self.algorithm,
            config_hash=self.config.hash(),
            state=State({**state.shared, **self.results.state()}, state.local),
            keep=self.config.checkpoint.keep,
        )
        self.results.flush()

    def stop_requested(self, comm: Comm) -> bool:
        """Collective over the ranks running the step loop: did any of them receive SIGUSR1/SIGTERM?"""
        return self.interruption.agreed(comm.mpi)

    def finish(
        self,
        params: Iterable[torch.Tensor],
        memory: dict[str, int] | None = None,
        per_rank: dict[str, float] | None = None,
        error: str = "",
        interrupted: bool = False,
    ) -> None:
        """Collective: write the results file and print the summary on rank 0; afterwards every
        rank knows whether the run was interrupted (ranks outside the step loop learn it here)."""
        if self._bar is not None:
            self._bar.close()
        self.interrupted = bool(self.world.mpi.allreduce(interrupted, op=MPI.LOR))
        status = STATUS_FAILED if error else STATUS_INTERRUPTED if self.interrupted else STATUS_COMPLETED
        self.results.finish(status=status, params=params, memory=memory, per_rank=per_rank, error=error)
        if self.is_root:
            self.print_summary(status, error)
        if self.interrupted:  # the launcher may end every rank as soon as one exits non-zero
            self.world.mpi.Barrier()

    def print_summary(self, status: str, error: str) -> None:
        m = self.results.metrics
        lines = [f"mpihybrid {self.algorithm}: {status} on {self.world.size} ranks in {self.elapsed():.1f}s"]
        if error or self.interrupted:
            if self.interrupted:
                by = self.interruption.received or "a signal on another rank"
                lines.append(f"  stopped by {by}: run again with --resume to continue")
            else:
                lines.append(f"  {error}")
            kept = list_checkpoints(self.checkpoint_dir) if self.checkpoint_dir else []
            lines.append(f"  last good checkpoint: {kept[-1] if kept else 'none'}")
        if m["step"]:
            lines.append(f"  steps: {int(m['step'][-1])}")
        for name in ("train_loss", "test_loss", "test_accuracy"):
            if name in m:
                lines.append(f"  {name}: {self.results.last(name):.4f}")
        sent = self.world.stats.total().sent_bytes
        lines.append(f"  payload sent by rank 0: {sent / 1e6:.3f} MB")
        lines.append(f"  results: {self.results.path}")
        if self.last_checkpoint:
            lines.append(f"  checkpoint: {self.last_checkpoint}")
        print("\n".join(lines), flush=True)
