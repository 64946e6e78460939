"""The results file of a run (HDF5, one per run, written by rank 0). Schema: README "Results file".

/           attrs: schema_version, algorithm, world_size, device, config (JSON), status, error,
                   mpihybrid_version, mpi_library, started, finished, restarts (how many resumes)
/restarts/step      the step each resume started after, in order
/metrics/   equal-length 1-D datasets indexed by ``step`` (NaN where a metric was not measured)
/comm/<kind>/{calls,payload_bytes,received_bytes,seconds}   one entry per rank
/memory/    peak_rss_bytes, peak_device_bytes and algorithm-specific byte counts, one entry per rank
/final/     param_sha256 (one hex string per rank), the final metrics as scalars, and
            algorithm counters with one entry per rank (e.g. DeComFL's replayed_rounds)
"""

from __future__ import annotations

import hashlib
import math
import resource
from collections.abc import Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
from mpi4py import MPI

from mpihybrid import __version__
from mpihybrid.comm import Comm
from mpihybrid.io.h5util import atomic_h5

SCHEMA_VERSION = 1
STATUS_RUNNING, STATUS_COMPLETED, STATUS_FAILED = "running", "completed", "failed"
STATUS_INTERRUPTED = "interrupted"  # stopped by a signal after a checkpoint; resumable


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def param_sha256(tensors: Iterable[torch.Tensor]) -> str:
    """SHA-256 of the parameters' bytes in order: equal hashes mean bitwise equal models."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        # The array's own buffer, not a bytes copy of it; numpy has no bfloat16, so its bits as int16.
        h.update((t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy())
    return h.hexdigest()


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def peak_device_bytes() -> int:
    """Peak bytes torch allocated on this rank's current CUDA device; 0 where CUDA was never used."""
    return torch.cuda.max_memory_allocated() if torch.cuda.is_initialized() else 0


class RunResults:
    """Metrics of one run, kept on every rank's call but stored only on rank 0."""

    def __init__(self, path: str | Path, *, algorithm: str, config_json: str, comm: Comm, device: str = "cpu"):
        self.path = Path(path)
        self.algorithm = algorithm
        self.device = device  # the device type the ranks computed on: "cpu" or "cuda"
        self.config_json = config_json
        self.comm = comm
        self.started = now()
        self.metrics: dict[str, list[float]] = {"step": []}
        self.restarts: list[int] = []  # the step each resume of this run started after

    def log(self, step: int, **values: float) -> None:
        """Append one row; metrics not given in this row are NaN."""
        if self.comm.rank != 0:
            return
        n = len(self.metrics["step"])
        self.metrics["step"].append(step)
        for name, value in values.items():
            self.metrics.setdefault(name, [math.nan] * n).append(float(value))
        for column in self.metrics.values():
            if len(column) == n:
                column.append(math.nan)

    def last(self, name: str) -> float:
        column = [v for v in self.metrics.get(name, []) if not math.isnan(v)]
        return column[-1] if column else math.nan

    # -- checkpoint support: the history travels with the model, so a resumed file is whole.
    def state(self) -> dict[str, Any]:
        if self.comm.rank != 0:
            return {}
        tree = {f"metrics/{k}": np.asarray(v, dtype=np.float64) for k, v in self.metrics.items()}
        return {**tree, "restarts/step": np.asarray(self.restarts, dtype=np.int64)}

    def load_state(self, tree: dict[str, Any]) -> None:
        loaded = {k.split("/", 1)[1]: list(map(float, v)) for k, v in tree.items() if k.startswith("metrics/")}
        if loaded:
            self.metrics = loaded
        self.restarts = [int(s) for s in tree.get("restarts/step", [])]

    def _write(self, status: str, error: str, per_rank: list[dict] | None, final: dict[str, float]) -> None:
        with atomic_h5(self.path) as f:
            f.attrs.update(
                schema_version=SCHEMA_VERSION,
                algorithm=self.algorithm,
                world_size=self.comm.size,
                device=self.device,
                config=self.config_json,
                status=status,
                error=error,
                mpihybrid_version=__version__,
                mpi_library=MPI.Get_library_version().splitlines()[0].strip(),
                started=self.started,
                finished=now() if status != STATUS_RUNNING else "",
                restarts=len(self.restarts),
            )
            f.create_dataset("restarts/step", data=np.asarray(self.restarts, dtype=np.int64))
            m = f.create_group("metrics")
            for name, column in self.metrics.items():
                m.create_dataset(name, data=np.asarray(column, dtype=np.int64 if name == "step" else np.float64))
            fin = f.create_group("final")
            for name, value in final.items():
                fin.create_dataset(name, data=value)
            if per_rank is None:
                return
            for key in sorted({k for r in per_rank for k in r["values"]}):
                fin.create_dataset(key, data=np.array([r["values"].get(key, np.nan) for r in per_rank]))
            fin.create_dataset(
                "param_sha256", data=np.array([r["sha"] for r in per_rank], dtype=object), dtype=h5py.string_dtype()
            )
            mem = f.create_group("memory")
            for key in sorted({k for r in per_rank for k in r["memory"]}):
                mem.create_dataset(key, data=np.array([r["memory"].get(key, -1) for r in per_rank], dtype=np.int64))
            comm_group = f.create_group("comm")
            for kind in sorted({k for r in per_rank for k in r["comm"]}):
                g = comm_group.create_group(kind)
                rows = [r["comm"].get(kind, (0, 0, 0, 0.0)) for r in per_rank]
                for i, name in enumerate(("calls", "payload_bytes", "received_bytes")):
                    g.create_dataset(name, data=np.array([row[i] for row in rows], dtype=np.int64))
                g.create_dataset("seconds", data=np.array([row[3] for row in rows], dtype=np.float64))

    def flush(self) -> None:
        """Rank 0 rewrites the file with status 'running' (a crash leaves the history so far)."""
        if self.comm.rank == 0:
            self._write(STATUS_RUNNING, "", None, {})

    def write_failed(self, error: str) -> None:
        """Not collective: rank 0 records a failure it saw itself, e.g. just before an Abort."""
        if self.comm.rank == 0:
            self._write(STATUS_FAILED, error, None, {})

    def finish(
        self,
        *,
        status: str,
        params: Iterable[torch.Tensor],
        memory: dict[str, int] | None = None,
        per_rank: dict[str, float] | None = None,
        error: str = "",
    ) -> None:
        """Collective over the world: gather hashes, memory, comm totals and ``per_rank``
        values (written as /final/<name>, one entry per rank); rank 0 writes."""
        mine = {
            "sha": param_sha256(params),
            "values": per_rank or {},
            "memory": {"peak_rss_bytes": peak_rss_bytes(), "peak_device_bytes": peak_device_bytes(), **(memory or {})},
            "comm": {
                k: (t.calls, t.sent_bytes, t.received_bytes, t.seconds) for k, t in self.comm.stats.by_kind().items()
            },
        }
        per_rank = self.comm.mpi.gather(mine, root=0)
        if self.comm.rank == 0:
            final = {name: self.last(name) for name in self.metrics if name != "step"}
            self._write(status, error, per_rank, final)
