"""Results files for the analysis tests, written by the real writer (mpihybrid.io.results)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import h5py
import numpy as np
import torch
from mpi4py import MPI

from mpihybrid.comm import Comm
from mpihybrid.io.results import RunResults

PNG = b"\x89PNG\r\n\x1a\n"


def write_run(
    path: Path,
    *,
    algorithm: str = "decomfl",
    config: dict | None = None,
    steps: int = 10,
    speed: float = 1.0,
    rate: float = 0.1,
    bytes_per_step: float | None = 20.0,
    eval_every: int = 1,
    ranks: int | None = None,
    status: str = "completed",
    memory: dict[str, int] | None = None,
) -> Path:
    """A run whose test accuracy climbs by ``rate`` per step (capped at 1), with ``speed`` steps
    per second, ``bytes_per_step`` uplink bytes (None: not measured) and train loss 1/step; one Allreduce of four
    float64 (32 payload bytes) is in its /comm totals."""
    comm = Comm(MPI.COMM_SELF)
    comm.Allreduce(np.ones(4))
    r = RunResults(path, algorithm=algorithm, config_json=json.dumps(config or {"seed": 0}), comm=comm)
    for step in range(1, steps + 1):
        evaluated = step % eval_every == 0
        sent = {} if bytes_per_step is None else {"uplink_bytes": bytes_per_step}
        r.log(
            step,
            wall_time=step / speed,
            train_loss=1.0 / step,
            test_accuracy=min(1.0, rate * step) if evaluated else math.nan,
            **sent,
        )
    if status == "completed":
        r.finish(status="completed", params=[torch.ones(2)], memory=memory)
    else:
        r.write_failed("training diverged at step 10")
    if ranks is not None:
        with h5py.File(path, "r+") as f:
            f.attrs["world_size"] = ranks
    return path
